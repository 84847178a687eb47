"""Shared pieces of the policy-service tests: settings, apps on a temporary SQLite database,
and Dovecot request bodies copied from the protocol spec."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import httpx
from ja3svc.config.settings import PolicySettings, Settings

if TYPE_CHECKING:
    from testbed.netns import Endpoint

API_KEY = "dovecot-secret"
ADMIN = "admin-secret"
H = "8a9d5d0f12f7d43ee3af1c51d2998d99"  # Dovecot 2.4.4 ja3 from the spec's real example
DOVECOT_HEADERS = {"Content-Type": "application/json", "User-Agent": "dovecot/auth-policy-client"}

# Real bodies from ../shared/spec/dovecot-auth-policy.md.
REPORT_23 = (
    '{"conn":{"lip":"127.0.0.1","lport":"14993","real_rip":"127.0.0.1","real_rport":"49282",'
    '"rport":"49282","secured":"TLS"},"device_id":"","login":"alice","protocol":"imap",'
    '"pwhash":"0996","remote":"127.0.0.1","session_id":"zh7PdxBhgsB/AAAB","success":true,'
    '"policy_reject":false,"tls":true}'
)
REPORT_24_FAIL = (
    '{"attrs":{"ja3":"8a9d5d0f12f7d43ee3af1c51d2998d99"},"device_id":"","fail_type":"credentials",'
    '"login":"ivan","protocol":"imap","pwhash":"0c54","remote":"127.0.0.1",'
    '"session_id":"/FqFqBBhPMV/AAAB","success":false,"policy_reject":false,"tls":true}'
)


def allow_24(
    login: str = "ivan", session: str = "/FqFqBBhPMV/AAAB", ja3: str = H, remote: str = "127.0.0.1"
) -> str:
    """A 2.4 allow: the report body's attributes with fail_type "" and no report booleans."""
    return json.dumps(
        {
            "attrs": {"ja3": ja3},
            "device_id": "",
            "fail_type": "",
            "login": login,
            "protocol": "imap",
            "pwhash": "0c54",
            "remote": remote,
            "session_id": session,
            "tls": True,
        },
        separators=(",", ":"),
    )


def report_24(
    login: str, session: str, success: bool, ja3: str = H, remote: str = "127.0.0.1"
) -> str:
    body = json.loads(allow_24(login, session, ja3, remote))
    body["fail_type"] = "" if success else "credentials"
    body.pop("tls")
    body.update(success=success, policy_reject=False, tls=True)
    return json.dumps(body, separators=(",", ":"))


def make_settings(tmp_path: Path, **policy: Any) -> Settings:
    base: dict[str, Any] = {"api_keys": [API_KEY], "admin_token": ADMIN}
    base.update(policy)
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'policy.sqlite3'}",
        policy=PolicySettings(**base),
    )


class AppClient:
    """Synchronous client for an ASGI app with its lifespan running (like Starlette's
    TestClient, which now warns when used with httpx): an anyio portal thread runs the loop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __enter__(self) -> AppClient:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self._lifespan = self.portal.wrap_async_context_manager(
            self.app.router.lifespan_context(self.app)
        )
        self._lifespan.__enter__()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.portal.call(self.http.aclose)
        self._lifespan.__exit__(None, None, None)
        self._portal_cm.__exit__(None, None, None)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.http.request, method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def patch(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)


# One HTTP call run by the host's interpreter inside a network namespace: the end-to-end tests'
# services listen on that namespace's 127.0.0.1, which the test process cannot reach. The token
# goes as both the admin bearer token and Dovecot's API key.
_HTTP_CALL = """
import json, sys, urllib.error, urllib.request
method, url, token, body = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
    headers={"Authorization": "Bearer " + token, "X-API-Key": token,
             "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        status, text = resp.status, resp.read().decode()
except urllib.error.HTTPError as exc:
    status, text = exc.code, exc.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def http_in_namespace(
    endpoint: Endpoint, method: str, url: str, token: str, body: str = ""
) -> tuple[int, Any]:
    """Status and body (parsed when it is JSON) of ``method url`` made from ``endpoint``."""
    res: subprocess.CompletedProcess[str] = endpoint.run(
        [sys.executable, "-c", _HTTP_CALL, method, url, token, body], timeout=20
    )
    out = json.loads(res.stdout)
    try:
        return out["status"], json.loads(out["body"])
    except json.JSONDecodeError:
        return out["status"], out["body"]

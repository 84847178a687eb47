"""End to end: a real Dovecot 2.3 asks a real `ja3svc serve` process; imaplib logs in.

Dovecot runs from a private configuration in a temporary directory (own base_dir, 127.0.0.1 on
free ports, a self-signed certificate, a passwd-file with test users). The service runs as a
subprocess with a TOML config. Dovecot 2.3 sends no JA3, so the verdicts driven through it come
from per-account rules and the no-fingerprint rule; the JA3-by-hash path is driven with the
2.4 request bodies from the spec over HTTP against the same real server process.

Every process is killed in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.processes import free_port, stop, wait_port
from tests.support.api import ADMIN, API_KEY, H, allow_24, report_24
from tests.support.dovecot import dovecot_conf, prepare_dovecot_files

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="Dovecot is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the private Dovecot instance runs as root"),
]

PASSWORD = "secret"
USERS = ("alice", "bob", "carol", "dave")
REJECT_MSG = "Blocked by ja3svc test policy"
TARPIT = 3
ROOT = Path(__file__).resolve().parents[1]


SERVICE_TOML = """\
[policy]
api_keys = ["{key}"]
admin_token = "{admin}"
reject_message = "{msg}"
no_fingerprint_action = "allow"
reputation_tarpit_accounts = 3
reputation_reject_accounts = 4

[policy.user_actions]
bob = "reject"
carol = "tarpit:{tarpit}"
"""


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: Dovecot's unprivileged processes (dovecot, dovenull, nobody) must
    # reach these files, and pytest's base directory is private to root.
    d = Path(tempfile.mkdtemp(prefix="ja3svc-e2e-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        if not os.environ.get("JA3SVC_E2E_KEEP"):  # keep the logs when debugging
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def policy_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    conf = workdir / "ja3svc.toml"
    conf.write_text(SERVICE_TOML.format(key=API_KEY, admin=ADMIN, msg=REJECT_MSG, tarpit=TARPIT))
    env = {
        **os.environ,
        "JA3SVC_DATA_DIR": str(workdir / "data"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("JA3SVC_DATABASE_URL", None)
    log = open(workdir / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve",
         "--port", str(port), "--config", str(conf)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def dovecot(workdir: Path, policy_server: str) -> Iterator[dict[str, int]]:
    prepare_dovecot_files(workdir, USERS, PASSWORD)
    ports = {"imap": free_port(), "imaps": free_port()}
    policy_port = int(policy_server.rsplit(":", 1)[1])
    conf = workdir / "dovecot.conf"
    conf.write_text(dovecot_conf(workdir, policy_port, API_KEY, **ports))
    proc = subprocess.Popen(
        ["dovecot", "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "dovecot.stderr", "wb"),
    )
    try:
        wait_port(ports["imaps"], proc)
        wait_port(ports["imap"], proc)
        yield ports
    finally:
        stop(proc)


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def imap_login(ports: dict[str, int], mode: str, user: str, password: str = PASSWORD):
    """(ok, server text, seconds taken by LOGIN, client source port)."""
    if mode == "imaps":
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            "127.0.0.1", ports["imaps"], ssl_context=_context(), timeout=30
        )
    else:
        conn = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=30)
        conn.starttls(_context())
    sport = conn.sock.getsockname()[1]
    started = time.monotonic()
    try:
        conn.login(user, password)
        ok, text = True, ""
    except imaplib.IMAP4.error as exc:
        ok, text = False, str(exc)
    took = time.monotonic() - started
    try:
        conn.logout()
    except (imaplib.IMAP4.abort, OSError):
        pass
    return ok, text, took, sport


def decisions(server: str, username: str) -> list[dict]:
    r = httpx.get(
        f"{server}/api/v1/decisions",
        params={"username": username, "limit": 50},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def dovecot_log(workdir: Path) -> str:
    try:
        return (workdir / "dovecot.log").read_text(errors="replace")[-4000:]
    except OSError:
        return ""


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_allow_lets_login_through(dovecot, policy_server, workdir, mode):
    ok, text, _, sport = imap_login(dovecot, mode, "alice")
    assert ok, (text, dovecot_log(workdir))
    rows = decisions(policy_server, "alice")
    allows = [r for r in rows if r["command"].startswith("allow") and r["remote_port"] == sport]
    # Successful login: allow before auth, allow after auth, then report.
    assert sorted(r["command"] for r in allows) == ["allow/after", "allow/before"], rows
    assert all(r["status"] == 0 and r["rule"] == "no_fingerprint" for r in allows)


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_tarpit_delays_login(dovecot, policy_server, workdir, mode):
    _, _, baseline, _ = imap_login(dovecot, mode, "alice")
    ok, text, took, sport = imap_login(dovecot, mode, "carol")
    assert ok, (text, dovecot_log(workdir))
    # Generous bounds: the point is "about TARPIT seconds more", not a timing benchmark.
    assert TARPIT - 0.5 <= took - baseline <= TARPIT + 5, (took, baseline)
    rows = [r for r in decisions(policy_server, "carol") if r["remote_port"] == sport]
    before = [r for r in rows if r["command"] == "allow/before"]
    after = [r for r in rows if r["command"] == "allow/after"]
    assert before and before[0]["status"] == TARPIT and before[0]["rule"] == "user_override"
    # Dovecot ignores a positive status after auth; we answer 0 there.
    assert after and after[0]["status"] == 0 and after[0]["action"] == "tarpit"


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_reject_shows_message_to_client(dovecot, policy_server, workdir, mode):
    ok, text, _, sport = imap_login(dovecot, mode, "bob")
    assert not ok
    assert f"[ALERT] {REJECT_MSG}" in text, (text, dovecot_log(workdir))
    rows = [r for r in decisions(policy_server, "bob") if r["remote_port"] == sport]
    assert {r["command"] for r in rows} >= {"allow/before", "report"}
    deny = next(r for r in rows if r["command"] == "allow/before")
    assert deny["status"] == -1 and deny["rule"] == "user_override" and "bob" in deny["reason"]
    report = next(r for r in rows if r["command"] == "report")
    assert report["action"] == "policy_reject"


def test_wrong_password_is_reported(dovecot, policy_server):
    ok, _, _, sport = imap_login(dovecot, "imaps", "dave", "wrong")
    assert not ok
    rows = [r for r in decisions(policy_server, "dave") if r["remote_port"] == sport]
    assert [r["command"] for r in rows] == ["report", "allow/before"]
    assert rows[0]["action"] == "failure"


def test_ja3_by_hash_with_dovecot_24_bodies(policy_server):
    """2.4 sends attrs/ja3: label it, reject on it, learn from reports, tarpit by reputation."""
    dov = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    adm = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=policy_server, timeout=5) as c:
        post = c.post
        assert post(
            "/policy?command=allow", content=allow_24("erin", "h1"), headers=dov
        ).json() == {"status": 0}
        # Reputation: failures of the same hash across distinct accounts.
        other = "0123456789abcdef0123456789abcdef"
        for i in range(3):
            body = report_24(f"victim{i}", f"f{i}", False, ja3=other)
            assert post("/?command=report", content=body, headers=dov).json() == {"status": "ok"}
        deadline = time.monotonic() + 10
        for attempt in range(1000):
            # A new session each time: a repeated session id is the after-auth allow, which
            # never tarpits.
            body = allow_24("frank", f"poll{attempt}", ja3=other)
            got = post("/policy?command=allow", content=body, headers=dov).json()
            if got["status"] > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the report writes are batched off the response path
        assert got["status"] == 5, got
        # A deny label on the hash (as Dovecot's variant) rejects with the message.
        label = {"kind": "ja3_dovecot", "value": H, "action": "deny", "client_name": "hydra"}
        assert post("/api/v1/labels", json=label, headers=adm).status_code == 201
        got = post("/command/allow", content=allow_24("erin", "h2"), headers=dov).json()
        assert got == {"status": -1, "msg": REJECT_MSG}
        look = c.get(f"/api/v1/fingerprints/ja3_dovecot/{other}", headers=adm).json()
        assert look["failures"]["distinct_accounts"] == 3
        metrics = c.get("/metrics").text
        assert 'rule="label_deny"' in metrics and 'rule="reputation_tarpit"' in metrics
        assert c.get("/readyz").json()["status"] == "ready"


def test_service_logs_are_json_without_secrets(policy_server, workdir):
    text = (workdir / "serve.log").read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r.get("rule") == "user_override" for r in records)
    assert API_KEY not in text and ADMIN not in text
    assert '"pwhash"' not in text

"""Reputation cannot be turned against established users (the service, SQLite and PostgreSQL).

50 accounts log in successfully 5 times each with one client fingerprint from one network.
Then an attacker who copied that client's hello fails logins with it from another network, with
20 and then 1,000 throw-away accounts. No established user may be tarpitted or rejected; the
attacker's own attempts are.
"""

from __future__ import annotations

import json

import pytest
from ja3svc.api.app import create_app

from tests.conftest import BACKENDS
from tests.support.api import API_KEY, DOVECOT_HEADERS, AppClient, H, make_settings

AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
USERS = [f"user{i:02d}@example.org" for i in range(50)]


def _body(login: str, session: str, remote: str, report: bool | None = None) -> str:
    body: dict[str, object] = {
        "attrs": {"ja3": H},
        "device_id": "",
        "fail_type": "" if report in (None, True) else "credentials",
        "login": login,
        "protocol": "imap",
        "pwhash": "0c54",
        "remote": remote,
        "session_id": session,
    }
    if report is not None:
        body.update(success=report, policy_reject=False)
    body["tls"] = True
    return json.dumps(body, separators=(",", ":"))


def _allow(client: AppClient, login: str, session: str, remote: str) -> int:
    r = client.post("/policy?command=allow", content=_body(login, session, remote), headers=AUTH)
    assert r.status_code == 200, r.text
    return int(r.json()["status"])


def _report(client: AppClient, login: str, session: str, remote: str, success: bool) -> None:
    r = client.post(
        "/policy?command=report", content=_body(login, session, remote, success), headers=AUTH
    )
    assert r.status_code == 200, r.text


@pytest.fixture(params=BACKENDS)
def client(request, tmp_path):
    database = None
    if request.param == "postgresql":
        from ja3svc.store.database import Database

        database = Database.from_url(request.getfixturevalue("pg_migrated_url"))
    # No caches: every verdict is judged from what the database holds right then.
    settings = make_settings(tmp_path, label_cache_seconds=0.0, reputation_cache_seconds=0.0)
    with AppClient(create_app(settings, database=database)) as c:
        yield c


def _attack(client: AppClient, accounts: int, tag: str) -> list[int]:
    """Failed logins of ``accounts`` throw-away accounts from another network; the statuses of
    their first allows."""
    statuses = []
    for i in range(accounts):
        login, session = f"{tag}{i}@example.org", f"{tag}-{i}"
        remote = f"203.0.113.{i % 250 + 1}"
        statuses.append(_allow(client, login, session, remote))
        _report(client, login, session, remote, success=False)
    client.app.policy_service.writer.flush(10.0)
    return statuses


def test_failures_with_a_popular_fingerprint_do_not_lock_out_its_users(client):
    service = client.app.policy_service
    for n in range(5):
        for u, login in enumerate(USERS):
            session, remote = f"ok-{u}-{n}", f"192.0.2.{u + 1}"
            assert _allow(client, login, session, remote) == 0
            assert _allow(client, login, session, remote) == 0  # after-auth
            _report(client, login, session, remote, success=True)
    service.writer.flush(10.0)

    for accounts, tag in ((20, "spray"), (1000, "flood")):
        _attack(client, accounts, tag)
        # Every established user still logs in, and the audit log says why.
        for u, login in enumerate(USERS):
            assert _allow(client, login, f"again-{tag}-{u}", f"192.0.2.{u + 1}") == 0, login
        # The attacker's next attempts, from fresh throw-away accounts, are held up.
        attacker = [
            _allow(client, f"{tag}-next{i}@example.org", f"{tag}-next-{i}", "203.0.113.7")
            for i in range(5)
        ]
        # 20 or more failing accounts: reputation_reject (the default threshold).
        assert all(status == -1 for status in attacker), attacker

    r = client.get(
        "/api/v1/decisions?limit=5&username=user00@example.org",
        headers={"X-Admin-Token": "admin-secret"},
    )
    last = r.json()[0]
    assert last["rule"] == "established_fingerprint"
    assert "5 successful logins" in last["reason"] and "other accounts" in last["reason"]

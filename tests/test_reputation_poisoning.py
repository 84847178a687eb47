"""Reputation cannot be turned against established users (the service, SQLite and PostgreSQL).

50 accounts log in successfully 5 times each with one client fingerprint from one network.
Then an attacker who copied that client's hello fails logins with it from another network, with
5, 20 and then 1,000 throw-away accounts. No established user may be tarpitted or rejected, nor
may an account logging in with that client for the first time from any network but the
attacker's; the attacker's own attempts are held up (tarpit from 5 failed accounts, reject from
20). Failures spread over many networks count everywhere only on accounts that exist and only
while they outnumber the fingerprint's successful accounts.
"""

from __future__ import annotations

import json

import pytest
from ja3svc.api.app import create_app

from tests.support.api import API_KEY, DOVECOT_HEADERS, AppClient, H, make_settings

AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
USERS = [f"user{i:02d}@example.org" for i in range(50)]


def _body(
    login: str, session: str, remote: str, report: bool | None = None, fail: str = "credentials",
    ja3: str = H,
) -> str:
    body: dict[str, object] = {
        "attrs": {"ja3": ja3},
        "device_id": "",
        "fail_type": "" if report in (None, True) else fail,
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


def _allow(client: AppClient, login: str, session: str, remote: str, ja3: str = H) -> int:
    r = client.post(
        "/policy?command=allow", content=_body(login, session, remote, ja3=ja3), headers=AUTH
    )
    assert r.status_code == 200, r.text
    return int(r.json()["status"])


def _report(
    client: AppClient, login: str, session: str, remote: str, success: bool,
    fail: str = "credentials", ja3: str = H,
) -> None:
    body = _body(login, session, remote, success, fail, ja3)
    r = client.post("/policy?command=report", content=body, headers=AUTH)
    assert r.status_code == 200, r.text


@pytest.fixture
def client(database, tmp_path):
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

    # 5, then 20, then 1,020 failed accounts from 203.0.113.0/24 in all.
    for accounts, tag, held_up in ((5, "probe", 5), (15, "spray", -1), (1000, "flood", -1)):
        _attack(client, accounts, tag)
        # Every established user still logs in, and the audit log says why.
        for u, login in enumerate(USERS):
            assert _allow(client, login, f"again-{tag}-{u}", f"192.0.2.{u + 1}") == 0, login
        # Accounts using that client for the first time, from the users' network and from a
        # third one, are judged as if the attack had not happened.
        for i, remote in enumerate(("192.0.2.200", "198.51.100.9", "2001:db8:1:2::9")):
            login = f"newcomer-{tag}-{i}@example.org"
            assert _allow(client, login, f"new-{tag}-{i}", remote) == 0, remote
        # The attacker's next attempts, from fresh throw-away accounts on its network, are held
        # up: tarpit from 5 failed accounts, reject from 20 (the default thresholds).
        attacker = [
            _allow(client, f"{tag}-next{i}@example.org", f"{tag}-next-{i}", f"203.0.113.{i + 7}")
            for i in range(5)
        ]
        assert all(status == held_up for status in attacker), (tag, attacker)

    r = client.get(
        "/api/v1/decisions?limit=5&username=user00@example.org",
        headers={"X-Admin-Token": "admin-secret"},
    )
    last = r.json()[0]
    assert last["rule"] == "established_fingerprint"
    assert "5 successful logins" in last["reason"] and "other accounts" in last["reason"]
    r = client.get(
        "/api/v1/decisions?limit=1&username=flood-next0@example.org",
        headers={"X-Admin-Token": "admin-secret"},
    )
    last = r.json()[0]
    assert last["rule"] == "reputation_reject"
    assert "failed logins of 1020 accounts from 203.0.113.0/24" in last["reason"]


def test_failures_from_many_networks_count_everywhere_on_existing_accounts_only(client):
    """A rare client (a spraying tool's hello) failing on 30 existing accounts from 6 networks
    is held up everywhere; 300 made-up login names from 10 networks hold up only the networks
    they came from; and a client with more successful accounts than failed ones is not."""
    tool, popular = "1" * 32, "2" * 32

    def spray(ja3: str, accounts: int, networks: int, fail: str, tag: str) -> None:
        for i in range(accounts):
            login, session = f"{tag}{i}@example.org", f"{tag}-{i}"
            remote = f"10.{i % networks}.0.{i % 200 + 1}"
            _allow(client, login, session, remote, ja3)
            _report(client, login, session, remote, False, fail, ja3)
        client.app.policy_service.writer.flush(10.0)

    # Made-up names (Dovecot's fail_type "account") from 10 networks.
    spray(tool, 300, 10, "account", "ghost")
    assert _allow(client, "someone@example.org", "s1", "198.51.100.1", tool) == 0
    assert _allow(client, "someone@example.org", "s2", "10.3.0.250", tool) == -1  # a sprayer's
    # Wrong passwords on existing accounts from 6 networks: the tool is held up everywhere.
    spray(tool, 30, 6, "credentials", "real")
    assert _allow(client, "someone@example.org", "s3", "198.51.100.1", tool) == -1

    # A popular client: 40 accounts log in with it; 30 existing accounts fail with it from 6
    # networks. Fewer failed than successful accounts: not held up elsewhere.
    for u in range(40):
        login, session, remote = f"fan{u}@example.org", f"fan-{u}", f"192.0.2.{u + 1}"
        _allow(client, login, session, remote, popular)
        _report(client, login, session, remote, True, ja3=popular)
    spray(popular, 30, 6, "credentials", "guess")
    assert _allow(client, "someone@example.org", "s4", "198.51.100.1", popular) == 0
    # 20 more failed accounts make them outnumber the successful ones.
    spray(popular, 50, 6, "credentials", "guess")
    assert _allow(client, "someone@example.org", "s5", "198.51.100.1", popular) == -1
    r = client.get(
        "/api/v1/decisions?limit=1&username=someone@example.org",
        headers={"X-Admin-Token": "admin-secret"},
    )
    reason = r.json()[0]["reason"]
    assert "50 existing accounts from 6 networks" in reason, reason
    assert "against 40 accounts that logged in with it" in reason, reason

"""The verdict path's reads on the real PostgreSQL: asked on the event loop (no thread pool),
answered from the database when it is healthy, and degraded within the deadline when it is not
(a read stuck behind a lock is cut off, the circuit opens, and the next read after it works on
a new connection)."""

from __future__ import annotations

import time

import psycopg
import pytest
from ja3svc.api.app import create_app
from ja3svc.config.settings import PolicySettings, Settings
from ja3svc.store.database import Database
from sqlalchemy.engine import make_url

from tests.support.api import ADMIN, API_KEY, DOVECOT_HEADERS, AppClient, allow_24, report_24
from tests.support.database import empty_tables

AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
DENIED = "0123456789abcdef0123456789abcdef"


def _metric(client: AppClient, line_start: str) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    )


def _allow(client: AppClient, body: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    r = client.post("/policy?command=allow", content=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - t0


@pytest.mark.postgres
def test_reads_come_from_postgresql_and_a_stuck_one_degrades_within_the_deadline(
    pg_migrated_url: str, tmp_path
):
    db = Database.from_url(pg_migrated_url)
    empty_tables(db)
    db.dispose()
    settings = Settings(
        data_dir=tmp_path,
        database_url=pg_migrated_url,
        policy=PolicySettings(
            api_keys=[API_KEY], admin_token=ADMIN, db_timeout_seconds=0.3,
            label_cache_seconds=0.0, reputation_cache_seconds=0.0,
        ),
    )  # fmt: skip
    client = AppClient(create_app(settings)).__enter__()
    try:
        service = client.app.state.service
        assert service.store.reads_async
        # A label written after the service started (no cache holds it): only a database
        # read can deny this hash.
        r = client.post(
            "/api/v1/labels",
            json={"kind": "ja3_dovecot", "value": DENIED, "action": "deny"},
            headers=ADMIN_H,
        )
        assert r.status_code == 201, r.text
        verdict, _ = _allow(client, allow_24(login="alice", session="s1", ja3=DENIED))
        assert verdict["status"] == -1
        # The account's history is read too: a learned fingerprint after a success.
        client.post("/policy?command=report", content=report_24("bob", "s2", True), headers=AUTH)
        service.writer.flush(5.0)
        service.forget_history("bob")
        verdict, _ = _allow(client, allow_24(login="bob", session="s3"))
        assert verdict["status"] == 0
        assert _metric(client, "ja3svc_policy_degraded_total") == 0

        # Every read of an account's history now waits behind this lock.
        url = make_url(pg_migrated_url)
        with psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database
        ) as locker:
            locker.execute("LOCK TABLE user_fingerprints IN ACCESS EXCLUSIVE MODE")
            verdict, took = _allow(client, allow_24(login="carol", session="s4"))
            # Answered from the cache (degraded) after the 0.3 s deadline, not after the lock.
            assert verdict["status"] == 0
            assert 0.25 < took < 1.5, took
            assert _metric(client, 'ja3svc_policy_degraded_total{reason="timeout"}') == 1
            # The circuit is open: the next allow does not even try.
            verdict, took = _allow(client, allow_24(login="dave", session="s5"))
            assert took < 0.25, took
            assert _metric(client, 'ja3svc_policy_degraded_total{reason="circuit_open"}') == 1
            locker.rollback()

        # Once the circuit closes, reads work again, on a connection opened for them (the one
        # cut off by the deadline was closed).
        time.sleep(5.2)
        verdict, _ = _allow(client, allow_24(login="erin", session="s6", ja3=DENIED))
        assert verdict["status"] == -1
        assert _metric(client, "ja3svc_policy_degraded_total") == 2
    finally:
        client.__exit__(None, None, None)

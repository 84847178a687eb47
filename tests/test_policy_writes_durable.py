"""Policy writes are not lost: one bad report costs no other write, and a PostgreSQL outage
under load costs no report (the queue keeps them until the database is back)."""

from __future__ import annotations

import threading
import time

import pytest
from ja3svc.api.app import create_app
from ja3svc.api.writer import BatchWriter
from ja3svc.store.database import Database
from ja3svc.store.policy_store import DecisionRecord, PolicyStore
from sqlalchemy import text

from tests.support.api import API_KEY, DOVECOT_HEADERS, AppClient, H, make_settings, report_24
from tests.support.database import postgres_stopped

AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}


def _report(login: str, session: str) -> str:
    body = report_24(login, session, False, remote="192.0.2.1")
    return body.replace("\\\\u", "\\u")  # a hostile login's escape stays one escape


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "x\\udfffy"])
def test_one_poisoned_report_loses_no_other_write(database, tmp_path, bad):
    with AppClient(create_app(make_settings(tmp_path), database=database)) as client:
        for i in range(100):
            body = _report(f"user{i}@example.org", f"s{i}")
            assert client.post("/policy?command=report", content=body, headers=AUTH).json() == {
                "status": "ok"
            }
            if i == 50:
                r = client.post(
                    "/policy?command=report", content=_report(bad, "poison"), headers=AUTH
                )
                assert r.status_code == 400 and "login" in r.json()["reason"]
        assert client.app.policy_service.writer.flush(10.0)
    assert _count(database, "auth_failures") == 100
    assert _count(database, "decisions") == 100


def test_a_row_the_database_refuses_is_dropped_alone(database):
    """Past the door (a caller of the writer): the batch is split and only the bad row lost."""
    store = PolicyStore.from_database(database)
    dropped: list[int] = []
    writer = BatchWriter(store, on_drop=dropped.append)
    now = time.time()

    def record(name: str) -> DecisionRecord:
        return DecisionRecord(now, "report", name, "192.0.2.1", None, H, 0, "failure", "report",
                              "report: failure", ())  # fmt: skip

    for i in range(20):
        writer.decision(record(f"user{i}"))
        if i == 10:
            writer.decision(record("bad\ud800"))
    assert writer.flush(10.0)
    assert dropped == [1]
    assert _count(database, "decisions") == 20


@pytest.mark.postgres
def test_a_20_s_postgresql_stop_under_load_loses_no_report(pg_migrated_url, tmp_path):
    """Run only under `flock /tmp/ja3svc-fullsuite.lock` (it stops the shared server)."""
    db = Database.from_url(pg_migrated_url)
    failures0, decisions0 = _count(db, "auth_failures"), _count(db, "decisions")
    sent = 0
    stop = threading.Event()
    with AppClient(create_app(make_settings(tmp_path), database=db)) as client:

        def load() -> None:
            nonlocal sent
            while not stop.is_set() and sent < 20_000:
                body = _report(f"user{sent}@example.org", f"s{sent}")
                r = client.post("/policy?command=report", content=body, headers=AUTH)
                assert r.json() == {"status": "ok"}
                sent += 1
                time.sleep(0.005)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            time.sleep(2)
            with postgres_stopped():
                time.sleep(20)
            time.sleep(3)
        finally:
            stop.set()
            loader.join(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not client.app.policy_service.writer.flush(5.0):
            pass
        metrics = client.get("/metrics").text
    assert sent > 1000
    assert _count(db, "auth_failures") - failures0 == sent
    assert _count(db, "decisions") - decisions0 == sent
    retried = [
        line for line in metrics.splitlines() if line.startswith("ja3svc_http_policy_write_retries")
    ]
    assert retried and float(retried[0].rsplit(" ", 1)[1]) > 0
    db.dispose()

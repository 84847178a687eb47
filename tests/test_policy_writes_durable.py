"""Policy writes are not lost: one bad report costs no other write, and a PostgreSQL outage
under load costs no report, even across a restart of the service (they are spooled to disk
until the database is back)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ja3svc.api.app import create_app
from ja3svc.api.writer import BatchWriter
from ja3svc.store.database import Database
from ja3svc.store.policy_store import DecisionRecord, PolicyStore
from sqlalchemy import text

from testbed.processes import free_port, stop, wait_port
from tests.support.api import API_KEY, DOVECOT_HEADERS, AppClient, H, make_settings, report_24
from tests.support.database import postgres_stopped

ROOT = Path(__file__).resolve().parents[1]

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


def test_reports_still_queued_at_shutdown_are_written(database, tmp_path):
    """The service's shutdown writes what its writer still holds (on PostgreSQL the loop awaits
    it: flush_async), without anyone flushing before."""
    with AppClient(create_app(make_settings(tmp_path), database=database)) as client:
        for i in range(300):
            body = _report(f"user{i}@example.org", f"s{i}")
            r = client.post("/policy?command=report", content=body, headers=AUTH)
            assert r.json() == {"status": "ok"}
        queued = len(client.app.policy_service.writer._items)
    assert _count(database, "auth_failures") == 300
    assert _count(database, "decisions") == 300
    assert queued > 0  # the last reports were still queued when the service stopped


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
    counters = {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in metrics.splitlines())
        if name.startswith("ja3svc_http_policy_writes_")
    }
    # Spooled during the outage, and every spooled write read back.
    spooled = counters["ja3svc_http_policy_writes_spooled_total"]
    assert spooled > 0 and counters["ja3svc_http_policy_writes_replayed_total"] == spooled
    db.dispose()


def _serve(tmp: Path, url: str) -> tuple[subprocess.Popen[bytes], int]:
    conf = tmp / "serve.toml"
    conf.write_text(f'database_url = "{url}"\n[policy]\napi_keys = ["{API_KEY}"]\n')
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(port),
         "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"serve-{port}.log", "wb"), cwd=ROOT,
        env={**os.environ, "JA3SVC_DATA_DIR": str(tmp)},
    )  # fmt: skip
    wait_port(port, proc, timeout=60)
    return proc, port


def _send_reports(port: int, first: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {**AUTH, "Content-Type": "application/json"}
    try:
        for i in range(first, first + n):
            body = _report(f"user{i}@example.org", f"r{i}")
            conn.request("POST", "/policy?command=report", body=body, headers=headers)
            res = conn.getresponse()
            assert (res.status, json.loads(res.read())) == (200, {"status": "ok"})
    finally:
        conn.close()


def _metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text_ = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text_.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.postgres
def test_reports_survive_a_restart_of_the_service_during_an_outage(pg_admin_url, tmp_path):
    """Run only under `flock /tmp/ja3svc-fullsuite.lock` (it stops the shared server).

    A real `ja3svc serve` on PostgreSQL takes 100 reports; PostgreSQL stops; it answers 300
    more, is stopped (SIGTERM) and started again while the database is still down, and answers
    200 more. PostgreSQL comes back: every one of the 600 reports is in the database, once, and
    the spool directory is empty."""
    from tests.support.database import fresh_pg_database

    spool = tmp_path / "spool" / "policy"
    with fresh_pg_database(pg_admin_url) as url:
        db = Database.from_url(url, upgrade=True)
        proc, port = _serve(tmp_path, url)
        second = None
        try:
            _send_reports(port, 0, 100)
            deadline = time.monotonic() + 30
            while _count(db, "auth_failures") < 100 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _count(db, "auth_failures") == 100
            with postgres_stopped():
                _send_reports(port, 100, 300)
                stop(proc)  # SIGTERM: uvicorn's graceful shutdown, then the signal's status
                files = list(spool.glob("*.jsonl"))
                lines = sum(len(f.read_text().splitlines()) for f in files)
                assert lines == 2 * 300, (files, lines)  # a failure and an audit row per report
                second, port = _serve(tmp_path, url)
                _send_reports(port, 400, 200)
                time.sleep(0.5)  # a tick: the new reports are spooled too
                assert _metric(port, "ja3svc_http_policy_writes_spooled_total") == 2 * 200
            deadline = time.monotonic() + 60
            while _count(db, "auth_failures") < 600 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _count(db, "auth_failures") == 600
            assert _count(db, "decisions") == 600
            with db.engine.connect() as conn:
                users = conn.execute(
                    text("SELECT count(DISTINCT username) FROM auth_failures")
                ).scalar()
            assert users == 600
            assert _metric(port, "ja3svc_http_policy_writes_replayed_total") == 2 * 500
            assert not list(spool.glob("*.jsonl"))
        finally:
            stop(proc)
            if second is not None:
                stop(second)
            db.dispose()


@pytest.mark.postgres
def test_a_batch_being_written_when_the_service_stops_is_spooled(pg_migrated_url, tmp_path):
    """The service stops while a PostgreSQL batch is still being written (its shutdown flush
    timed out: here another session holds the table locked): that batch is spooled with what
    is queued behind it, and the next writer stores all of it."""
    import asyncio

    import psycopg

    db = Database.from_url(pg_migrated_url)  # one database for the session's tests: count by name

    def _stored(db: Database) -> int:
        with db.engine.connect() as conn:
            sql = "SELECT count(*) FROM decisions WHERE username LIKE 'inflight%'"
            return int(conn.execute(text(sql)).scalar() or 0)

    store = PolicyStore.from_database(db)
    spool = tmp_path / "spool"
    writer = BatchWriter(store, spool_dir=spool, batch=8)
    now = time.time()

    def record(name: str) -> DecisionRecord:
        return DecisionRecord(now, "report", name, "192.0.2.1", None, H, 0, "failure", "report",
                              "report: failure", ())  # fmt: skip

    locker = psycopg.connect(pg_migrated_url.replace("postgresql+psycopg://", "postgresql://"))
    locker.execute("LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE")

    async def serve_and_stop() -> tuple[bool, int]:
        writer.start()
        for i in range(20):
            writer.decision(record(f"inflight{i}"))
        in_flight = False
        for _ in range(100):  # at most 5 s: until the first batch waits on the lock
            await asyncio.sleep(0.05)
            if writer._task is not None and len(writer._items) == 12:
                in_flight = True
                break
        writer.stop()
        return in_flight, len(writer._items)

    try:
        in_flight, left = asyncio.run(serve_and_stop())
    finally:
        locker.rollback()
        locker.close()
    assert in_flight and left == 0  # a batch was being written; nothing stayed in memory
    assert _stored(db) == 0
    later = BatchWriter(PolicyStore.from_database(db), spool_dir=spool)
    assert later.flush(10.0)
    assert _stored(db) == 20
    db.dispose()

"""Bounded SQLite files: the WAL is truncated by the service's checkpoints and capped by
journal_size_limit, and the service itself deletes decisions past store.retention_days."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ja3svc.api import app as app_module
from ja3svc.api.app import create_app
from ja3svc.store.database import SQLITE_JOURNAL_SIZE_LIMIT, Database
from ja3svc.store.policy_store import DecisionRecord, PolicyStore

from tests.support.api import AppClient, make_settings


def _decisions(n: int, ts: float) -> list[DecisionRecord]:
    reason = "default: no rule matched " + "x" * 200
    return [
        DecisionRecord(ts + i * 1e-3, "allow/before", f"user{i}", "192.0.2.1", 1234,
                       "8a9d5d0f12f7d43ee3af1c51d2998d99", 0, "allow", "default", reason, ())
        for i in range(n)
    ]  # fmt: skip


def test_checkpoint_truncates_the_wal(tmp_path: Path):
    path = tmp_path / "wal.sqlite3"
    db = Database.from_url(f"sqlite:///{path}")
    store = PolicyStore.from_database(db)
    wal = Path(f"{path}-wal")
    with db.engine.connect() as conn:
        limit = conn.exec_driver_sql("PRAGMA journal_size_limit").scalar()
    assert limit == SQLITE_JOURNAL_SIZE_LIMIT
    for _ in range(10):
        store.write_batch([], [], _decisions(5_000, time.time()))
    assert wal.stat().st_size > 5 << 20  # ~12 MB of audit rows went through the WAL
    store.checkpoint()
    assert wal.stat().st_size == 0
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM decisions").fetchone()[0] == 50_000
    store.close()
    db.dispose()


def test_the_service_deletes_decisions_past_retention(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(app_module, "RETENTION_FIRST_SECONDS", 0.2)
    settings = make_settings(tmp_path)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"retention_days": 1})}
    )
    db = Database.from_settings(settings)
    store = PolicyStore.from_database(db)
    now = time.time()
    store.write_batch([], [], _decisions(10, now - 3 * 86400) + _decisions(7, now))
    with AppClient(create_app(settings, database=db)):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sqlite3.connect(tmp_path / "policy.sqlite3") as check:
                left = check.execute("SELECT count(*) FROM decisions").fetchone()[0]
            if left == 7:
                break
            time.sleep(0.1)
    assert left == 7

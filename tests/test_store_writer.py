"""SightingWriter: batching, aggregates, idempotent re-storing, spooling through outages,
concurrent writer processes, retention."""

from __future__ import annotations

import json
import multiprocessing
import time

import psycopg
import pytest
from ja3svc.store.database import Database
from ja3svc.store.models import AuthFailure, Decision, DovecotHash, Fingerprint, Sighting
from ja3svc.store.retention import prune
from ja3svc.store.sighting_writer import SightingWriter
from sqlalchemy import func, select

from ja3svc.record import HelloRecord
from tests.support.database import postgres_stopped, synthetic_record
from tests.support.records import assert_keyword_constructor

# Nothing listens on port 1: a real connection failure, no mock.
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def _count(db: Database, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def _fingerprint(db: Database, kind: str, value: str) -> Fingerprint:
    with db.session() as s:
        return s.scalars(
            select(Fingerprint).where(Fingerprint.kind == kind, Fingerprint.value == value)
        ).one()


def test_decision_record_keyword_constructor():
    from ja3svc.store.policy_store import DecisionRecord

    assert_keyword_constructor(DecisionRecord)


def test_sightings_and_aggregates(database, make_record):
    records = [make_record(n, client=n % 3) for n in range(30)]
    with SightingWriter(database, sensor="file:a.pcap", batch_size=7) as w:
        for r in records:
            w.add(HelloRecord.from_dict(r))
    assert (w.stored, w.duplicates, w.spooled) == (30, 0, 0)
    assert _count(database, Sighting) == 30

    client0 = [r for r in records if r["ja3_hash"] == records[0]["ja3_hash"]]
    fp = _fingerprint(database, "ja3", records[0]["ja3_hash"])
    assert fp.times_seen == len(client0) == 10
    assert fp.first_seen == min(r["ts"] for r in client0)
    assert fp.last_seen == max(r["ts"] for r in client0)
    assert fp.full_string == records[0]["ja3"]
    # Every kind of the hello is aggregated, JA4 with its raw form as the full string.
    ja4 = _fingerprint(database, "ja4", records[0]["ja4"])
    assert ja4.times_seen == 10 and ja4.full_string == records[0]["ja4_r"]
    assert _fingerprint(database, "ja3_dovecot", records[0]["ja3_dovecot_hash"]).times_seen == 10
    assert _fingerprint(database, "ja3n", records[0]["ja3n_hash"]).times_seen == 10

    with database.session() as s:
        row = s.scalars(select(Sighting).where(Sighting.ts == records[4]["ts"])).one()
    assert (row.sensor, row.src, row.sport, row.dport, row.hello_index) == (
        "file:a.pcap",
        records[4]["src"],
        records[4]["sport"],
        993,
        1,
    )
    assert json.loads(row.alpn) == ["imap"] and row.ja3_hash == records[4]["ja3_hash"]


def test_storing_the_same_capture_twice_changes_nothing(database, make_record):
    records = [make_record(n, client=n % 4) for n in range(50)]
    with SightingWriter(database, sensor="file:x.pcap", batch_size=16) as w:
        for r in records:
            w.add(HelloRecord.from_dict(r))
    before = _fingerprint(database, "ja3", records[0]["ja3_hash"])
    # Different batch boundaries, and a duplicate inside one batch.
    with SightingWriter(database, sensor="file:x.pcap", batch_size=100) as w2:
        for r in [*records, records[3]]:
            w2.add(HelloRecord.from_dict(r))
    assert (w2.stored, w2.duplicates) == (0, 51)
    assert _count(database, Sighting) == 50
    after = _fingerprint(database, "ja3", records[0]["ja3_hash"])
    assert (after.times_seen, after.first_seen, after.last_seen) == (
        before.times_seen,
        before.first_seen,
        before.last_seen,
    )
    # The same hellos from another sensor are other sightings and do count.
    with SightingWriter(database, sensor="mx2:eth0") as w3:
        for r in records:
            w3.add(HelloRecord.from_dict(r))
    assert w3.stored == 50
    assert _fingerprint(database, "ja3", records[0]["ja3_hash"]).times_seen == 2 * before.times_seen


def test_a_new_hello_twice_in_one_batch_is_stored_and_counted_once(database, make_record):
    records = [make_record(n, client=n % 4) for n in range(20)]
    with SightingWriter(database, sensor="file:x.pcap", batch_size=100) as w:
        for r in [*records, records[3], records[3]]:
            w.add(HelloRecord.from_dict(r))
    assert (w.stored, w.duplicates) == (20, 2)
    assert _count(database, Sighting) == 20
    # Five hellos of each client stack, the repeated one included once.
    assert _fingerprint(database, "ja3", records[3]["ja3_hash"]).times_seen == 5
    with database.session() as s:
        (dovecot,) = s.scalars(
            select(DovecotHash).where(DovecotHash.ja3_hash == records[3]["ja3_hash"])
        ).all()
    assert dovecot.times_seen == 5


def test_server_hello_and_odd_wire_values(database):
    server = {
        "ts": 1_700_000_001.5,
        "src": "192.0.2.10",
        "sport": 993,
        "dst": "198.51.100.7",
        "dport": 50000,
        "transport": "tcp",
        "hello": "server",
        "index": 1,
        "sni": None,
        "alpn": [],
        "tls_version": "TLS 1.3",
        "hello_retry_request": False,
        "ja3s": "771,4865,43-51",
        "ja3s_hash": "f4febc55ea12b31ae17cfb7e614afda8",
    }
    odd_client = {
        "ts": 1_700_000_001.0,
        "src": "198.51.100.7",
        "sport": 50000,
        "dst": "192.0.2.10",
        "dport": 993,
        "transport": "tcp",
        "hello": "client",
        "index": 2,
        # A hostile SNI: too long for the column and with a NUL PostgreSQL refuses in text.
        "sni": "a\x00b" + "x" * 400,
        "alpn": ["h2", "http/1.1"],
        "tls_version": "TLS 1.2",
        "ja3": "771,47,,,",
        "ja3_hash": "1bd5d6d0e2e3c4f5a6b7c8d9e0f1a2b3",
    }
    with SightingWriter(database, sensor="s") as w:
        w.add(HelloRecord.from_dict(server))
        w.add(HelloRecord.from_dict(odd_client))
    assert w.stored == 2
    assert _fingerprint(database, "ja3s", server["ja3s_hash"]).full_string == server["ja3s"]
    with database.session() as s:
        sni = s.scalar(select(Sighting.sni).where(Sighting.hello == "client"))
    assert sni.startswith("a\\x00b") and len(sni) == 255


def test_a_spool_file_of_an_earlier_version_is_replayed(database, make_record, tmp_path):
    """Before rows were spooled, a spool line held the record itself: still replayed."""
    spool = tmp_path / "spool"
    spool.mkdir()
    records = [make_record(n) for n in range(3)]
    (spool / "mx1_eth0.1234.abcdef01.jsonl").write_text(
        "".join(json.dumps({"sensor": "mx1:eth0", "record": r}) + "\n" for r in records)
    )
    w = SightingWriter(database, sensor="other", spool_dir=spool)
    assert (w.replayed, w.stored) == (3, 3)
    w.close()
    assert not list(spool.glob("*.jsonl"))
    assert _fingerprint(database, "ja3", records[0]["ja3_hash"]).times_seen == 3
    with database.session() as s:
        assert set(s.scalars(select(Sighting.sensor))) == {"mx1:eth0"}


def test_unreachable_database_spools_then_replays_in_order(database, make_record, tmp_path):
    spool = tmp_path / "spool"
    down = Database.from_url(UNREACHABLE_PG)
    records = [make_record(n) for n in range(25)]
    w = SightingWriter(down, sensor="mx1:eth0", batch_size=10, spool_dir=spool, retry_interval=60)
    for r in records:
        w.add(HelloRecord.from_dict(r))
    stats = w.close()
    assert (stats.stored, stats.spooled) == (0, 25)
    (spool_file,) = spool.glob("*.jsonl")
    lines = [json.loads(line) for line in spool_file.read_text().splitlines()]
    assert [ln["record"]["ts"] for ln in lines] == [r["ts"] for r in records]
    assert {ln["sensor"] for ln in lines} == {"mx1:eth0"}
    down.dispose()

    # The next writer on this spool directory stores the backlog first.
    w2 = SightingWriter(database, sensor="mx1:eth0", spool_dir=spool)
    assert w2.replayed == 25 and w2.stored == 25
    assert not list(spool.glob("*.jsonl"))
    w2.close()
    assert _count(database, Sighting) == 25
    assert _fingerprint(database, "ja3", records[0]["ja3_hash"]).times_seen == 25


def test_without_a_spool_directory_errors_propagate(make_record):
    down = Database.from_url(UNREACHABLE_PG)
    w = SightingWriter(down, sensor="s", batch_size=1)
    w.add(HelloRecord.from_dict(make_record(1)))
    # Written in the background: the driver's error surfaces at the next call.
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        w.flush()
    w.close()
    down.dispose()


@pytest.mark.postgres
def test_outage_of_the_real_postgresql_loses_nothing(pg_migrated_url, make_record, tmp_path):
    """Stop the local server in the middle of a run, start it again: every sighting arrives."""
    db = Database.from_url(pg_migrated_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE sightings, fingerprints")
    spool = tmp_path / "spool"
    records = [make_record(n) for n in range(300)]
    # retry_interval=0: try the database on every flush, so replay starts as soon as it is back.
    w = SightingWriter(db, sensor="outage", batch_size=50, spool_dir=spool, retry_interval=0)
    for r in records[:100]:
        w.add(HelloRecord.from_dict(r))
    w.flush()
    assert w.stored == 100
    with postgres_stopped():
        for r in records[100:200]:
            w.add(HelloRecord.from_dict(r))
        w.flush()
        assert w.spooled == 100 and w.stored == 100
        assert len(list(spool.glob("*.jsonl"))) == 1
        # A writer that ends during the outage leaves its spool for the next one.
        w_other = SightingWriter(db, sensor="outage-2", batch_size=20, spool_dir=spool)
        for r in records[:30]:
            w_other.add(HelloRecord.from_dict(r))
        assert w_other.close().spooled == 30
    for r in records[200:]:
        w.add(HelloRecord.from_dict(r))
    stats = w.close()
    assert stats.replayed == 100 and stats.stored == 300
    late = SightingWriter(db, sensor="outage-3", spool_dir=spool)
    assert late.close().replayed == 30
    assert not list(spool.glob("*.jsonl"))
    assert _count(db, Sighting) == 330
    assert _fingerprint(db, "ja3", records[0]["ja3_hash"]).times_seen == 330
    db.dispose()


def _write_in_process(url: str, sensor: str, n: int, start, counts, slot: int) -> None:
    """Child process: wait for the start signal, then store n records as ``sensor``."""
    db = Database.from_url(url)
    start.wait(30)
    with SightingWriter(db, sensor=sensor, batch_size=100) as w:
        for i in range(n):
            w.add(HelloRecord.from_dict(synthetic_record(i, client=i % 5)))
    counts[slot] = w.stored
    db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("same_sensor", [False, True], ids=["two-sensors", "same-capture"])
def test_two_writer_processes_lose_no_count(pg_migrated_url, same_sensor):
    db = Database.from_url(pg_migrated_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE sightings, fingerprints")
    ctx = multiprocessing.get_context("spawn")
    start, manager = ctx.Event(), ctx.Manager()
    counts = manager.dict()
    n = 2000
    sensors = ["file:same.pcap"] * 2 if same_sensor else ["mx1:eth0", "mx2:eth0"]
    procs = [
        ctx.Process(target=_write_in_process, args=(pg_migrated_url, s, n, start, counts, i))
        for i, s in enumerate(sensors)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # both connected and waiting: maximise the overlap
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    expected = n if same_sensor else 2 * n
    assert _count(db, Sighting) == expected
    with db.session() as s:
        totals = {
            kind: int(total)
            for kind, total in s.execute(
                select(Fingerprint.kind, func.sum(Fingerprint.times_seen)).group_by(
                    Fingerprint.kind
                )
            )
        }
    assert totals == {
        "ja3": expected,
        "ja3n": expected,
        "ja4": expected,
        "ja3_dovecot": expected,
    }
    # Each sighting was stored by exactly one of the two writers.
    assert sum(counts.values()) == expected
    manager.shutdown()
    db.dispose()


def test_retention_prunes_events_but_keeps_aggregates(database, make_record):
    now = 1_700_000_000.0 + 100 * 86400
    with SightingWriter(database, sensor="s") as w:
        w.add(HelloRecord.from_dict(make_record(0, ts0=now - 95 * 86400)))  # old
        w.add(HelloRecord.from_dict(make_record(1, ts0=now - 10 * 86400)))  # recent
        # old, and its client not seen since
        w.add(HelloRecord.from_dict(make_record(2, client=7, ts0=now - 95 * 86400)))
    with database.session() as s:
        s.add_all(
            [
                AuthFailure(ts=now - 91 * 86400, kind="ja3", value="a" * 32, username="u"),
                AuthFailure(ts=now - 1, kind="ja3", value="a" * 32, username="u"),
                Decision(ts=now - 200 * 86400, command="allow", status=0, action="allow"),
            ]
        )
    deleted = prune(database, 90, now=now)
    # The Dovecot-hash index keeps what was seen within the period.
    assert deleted == {"sightings": 2, "auth_failures": 1, "decisions": 1, "dovecot_hashes": 1}
    assert _count(database, Sighting) == 1
    record = make_record(0)
    assert _fingerprint(database, "ja3", record["ja3_hash"]).times_seen == 2


class _Serialised:
    """Stands in for a HelloRecord whose ``as_dict()`` is given (for rows the database refuses)."""

    def __init__(self, d):
        self.d = d

    def as_dict(self):
        return self.d


def test_a_refused_batch_is_reported_and_the_writer_goes_on(database, make_record, tmp_path):
    import sqlite3

    bad = {**make_record(1), "hello": "bogus"}  # violates the hello CHECK constraint
    w = SightingWriter(database, sensor="s", batch_size=1, spool_dir=tmp_path / "spool")
    w.add(_Serialised(bad))  # a HelloRecord cannot be bogus: hand the writer its JSON shape
    # The driver's own error: the writer works on driver connections.
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError), match="hello"):
        w.flush()
    w.add(HelloRecord.from_dict(make_record(2)))
    assert w.close().stored == 1
    # Not an outage: nothing spooled that would be refused again on every replay.
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_the_writer_columns_are_the_sightings_table_columns():
    from ja3svc.store.sighting_writer import SIGHTING_COLUMNS

    assert set(SIGHTING_COLUMNS) == {
        c.name for c in Sighting.__table__.columns if not c.primary_key
    }


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///relative/ja3svc.sqlite3",
        "sqlite:////var/lib/ja3svc/ja3svc.sqlite3",
        "postgresql+psycopg://ja3svc:s3cr%40t@db.example:6543/fp?sslmode=require",
        "postgres://ja3svc@db.example/fp",
    ],
)
def test_target_parse_agrees_with_sqlalchemy(url):
    """The driver-level URL reading of `pcap --store` finds what SQLAlchemy's does."""
    from ja3svc.store.database import create_engine_for
    from ja3svc.store.dbapi import Target

    fast = Target.parse(url)
    engine = create_engine_for(url) if url.startswith("postgres") else None
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(url)  # no directory made for a file URL
    full = Target.of_engine(engine)
    assert fast is not None and fast.backend == full.backend
    assert "s3cr" not in fast.display and fast.display == full.display
    if fast.pg:
        import psycopg.conninfo

        assert psycopg.conninfo.conninfo_to_dict(fast.args[0]) == {
            k: str(v) for k, v in full.kwargs.items()
        }
    else:
        assert fast.args == full.args


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro"])
def test_target_parse_leaves_unusual_urls_to_sqlalchemy(url):
    from ja3svc.store.dbapi import Target

    assert Target.parse(url) is None


@pytest.mark.postgres
def test_a_connection_the_server_dropped_while_idle_is_replaced_not_spooled(
    pg_migrated_url, make_record, tmp_path
):
    """The writer keeps its connection between batches; when the server ends it meanwhile
    (a restart, an idle timeout), the next batch goes through a new one: no outage, nothing
    spooled, no warning."""
    db = Database.from_url(pg_migrated_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE sightings, fingerprints")
    spool = tmp_path / "spool"
    w = SightingWriter(db, sensor="idle-drop", batch_size=10, spool_dir=spool, retry_interval=60)
    records = [make_record(n) for n in range(20)]
    for r in records[:10]:
        w.add(HelloRecord.from_dict(r))
    w.flush()
    conninfo = pg_migrated_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert ended >= 1  # the writer's own connection among them
    for r in records[10:]:
        w.add(HelloRecord.from_dict(r))
    stats = w.close()
    assert (stats.stored, stats.spooled) == (20, 0)
    assert not spool.exists() or not list(spool.glob("*.jsonl"))
    assert _fingerprint(db, "ja3", records[0]["ja3_hash"]).times_seen == 20
    db.dispose()

"""Batched, idempotent, outage-proof writes of hello sightings and fingerprint aggregates.

Used by ``ja3svc pcap --store`` and the capture worker::

    w = SightingWriter(db, sensor="file:capture.pcap", spool_dir=settings.resolved_spool_dir())
    for record in engine.feed_frame(...):   # HelloRecord objects
        w.add(record)
    stats = w.close()

One transaction per batch: the sightings go in with ``INSERT ... ON CONFLICT DO NOTHING
RETURNING`` on their uniqueness key, and only the rows that came back (new sightings) are added
to the fingerprint aggregates, with an atomic upsert (``times_seen = times_seen + excluded``).
Storing the same capture twice therefore changes nothing, and concurrent writers on PostgreSQL
lose no count: the database, not the writer, does the arithmetic.

When the database is unreachable the batch is appended to a spool file and replayed, in order,
by the next flush that reaches the database (and by any writer starting with the same spool
directory), so nothing is lost.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ja3svc.store.database import Database
from ja3svc.store.models import (
    DOVECOT_PROFILE_COLUMNS,
    FINGERPRINT_FIELDS,
    Base,
    DovecotHash,
    Fingerprint,
    Sighting,
)
from ja3svc.store.spool import Spool, SpoolItem, replay_file
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ja3svc.record import HelloRecord

log = logging.getLogger(__name__)

_SIGHTINGS = Sighting.__table__
_FINGERPRINTS = Fingerprint.__table__
_DOVECOT_HASHES = DovecotHash.__table__
KEY_COLUMNS = ("sensor", "ts", "src", "sport", "dst", "dport", "hello", "hello_index")
# PostgreSQL error codes worth an immediate retry: the transaction lost a race, nothing is down.
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_RETRIES = 3


@dataclass
class WriterStats:
    stored: int = 0  # sightings newly inserted (directly or from the spool)
    duplicates: int = 0  # sightings already in the database (re-stored capture)
    spooled: int = 0  # sightings written to the spool because the database was unreachable
    replayed: int = 0  # sightings read back from spool files and written

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def is_outage(exc: BaseException) -> bool:
    """Errors that mean "the database is not there right now", as opposed to a bad statement."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _clip(value: Any, limit: int) -> str | None:
    # Hello fields come from the wire: keep them within the column sizes, and without the NUL
    # characters PostgreSQL refuses in text, so one odd hello cannot fail a whole batch.
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if len(s) <= limit and "\x00" not in s:  # the usual case, checked at C speed
        return s
    return s.replace("\x00", "\\x00")[:limit]


# The columns of a sighting row, in the order ``sighting_row`` gives them.
ROW_COLUMNS = (
    "sensor", "ts", "src", "sport", "dst", "dport", "hello", "hello_index", "transport", "sni",
    "alpn", "tls_version", "ja3_hash", "ja3n_hash", "ja4", "ja3_dovecot_hash", "ja3s_hash",
    "ja3_dovecot_hashes",
)  # fmt: skip
# The uniqueness key is the row's first columns, so ``row[:_KEY_LEN]`` is its key.
_KEY_LEN = len(KEY_COLUMNS)
assert ROW_COLUMNS[:_KEY_LEN] == KEY_COLUMNS
assert set(ROW_COLUMNS) == {c.name for c in _SIGHTINGS.columns if not c.primary_key}


def sighting_row(sensor: str, r: dict[str, Any]) -> tuple[Any, ...]:
    """Map a ``HelloRecord.as_dict()`` record to a row of the sightings table (``ROW_COLUMNS``)."""
    alpn = r.get("alpn")
    return (
        _clip(sensor, 200),
        float(r["ts"]),
        _clip(r["src"], 45),
        int(r["sport"]),
        _clip(r["dst"], 45),
        int(r["dport"]),
        r["hello"],
        int(r.get("index") or 1),
        _clip(r.get("transport") or "tcp", 8),
        _clip(r.get("sni"), 255),
        None if alpn is None else _alpn_json(tuple(alpn)),
        _clip(r.get("tls_version"), 16),
        _clip(r.get("ja3_hash"), 32),
        _clip(r.get("ja3n_hash"), 32),
        _clip(r.get("ja4"), 64),
        _clip(r.get("ja3_dovecot_hash"), 32),
        _clip(r.get("ja3s_hash"), 32),
        _dovecot_hashes_json(r.get("ja3_dovecot_hashes")),
    )


# A capture repeats a few ALPN lists and, per client stack, one set of Dovecot hashes: their
# JSON is made once (json.dumps per row was a third of the storing path's Python time).
@functools.lru_cache(maxsize=1024)
def _alpn_json(alpn: tuple[Any, ...]) -> str:
    return json.dumps(list(alpn))


@functools.lru_cache(maxsize=16384)
def _hashes_json(items: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps({p: _clip(h, 32) for p, h in items}, separators=(",", ":"))


def _dovecot_hashes_json(by_profile: Any) -> str | None:
    if not isinstance(by_profile, dict) or not by_profile:
        return None
    return _hashes_json(tuple(sorted((str(p), h) for p, h in by_profile.items())))


def _dovecot_key(record: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """``(openssl30, openssl32, ja3_hash, ja4)`` of a client hello record; None when the record
    lacks any of them (server hellos, records from before profiles were kept)."""
    by_profile = record.get("ja3_dovecot_hashes")
    if not isinstance(by_profile, dict):
        return None
    hashes = [by_profile.get(p) for p in DOVECOT_PROFILE_COLUMNS]
    ja3, ja4 = record.get("ja3_hash"), record.get("ja4")
    if not (all(hashes) and ja3 and ja4 and record.get("ja3n_hash")):
        return None
    return (str(hashes[0])[:32], str(hashes[1])[:32], str(ja3)[:32], str(ja4)[:64])


@functools.cache
def _pg_unnest_insert(table_name: str, conflict: str) -> str:
    """``INSERT ... SELECT * FROM unnest(%(col)s::type[], ...) ON CONFLICT ...`` for a table.

    On PostgreSQL a batch of aggregates goes in as one array per column: a short statement
    that psycopg and the server prepare once, instead of a multi-row VALUES list with thousands
    of parameters that psycopg re-parses in Python for every batch (5x slower, measured).
    """
    table = Base.metadata.tables[table_name]
    cols = [c for c in table.columns if not c.primary_key]
    dialect = postgresql.dialect()
    # %(name)b: binary parameters; text-format arrays cost a regex per element in psycopg.
    arrays = ", ".join(f"%({c.name})b::{c.type.compile(dialect=dialect)}[]" for c in cols)
    names = ", ".join(c.name for c in cols)
    return f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) {conflict}"


def _columns(rows: list[dict[str, Any]], table: Any) -> dict[str, list[Any]]:
    return {c.name: [r[c.name] for r in rows] for c in table.columns if not c.primary_key}


# The sightings go in through a session-local staging table: loaded in bulk (COPY on
# PostgreSQL, the driver's C executemany on SQLite: no SQL compiled per row), then moved with
# one INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING, which tells which are new.
_LOAD_TABLE = "sightings_load"
_LOAD_NAMES = ", ".join(ROW_COLUMNS)
_KEY_NAMES = ", ".join(KEY_COLUMNS)
# WHERE true: SQLite cannot otherwise tell the upsert's ON CONFLICT from a join's ON.
# ORDER BY the key: the lock order, so two writers storing the same capture cannot deadlock.
_MOVE_SQL = (
    f"INSERT INTO sightings ({_LOAD_NAMES}) SELECT {_LOAD_NAMES} FROM {_LOAD_TABLE} "
    f"WHERE true ORDER BY {_KEY_NAMES} ON CONFLICT ({_KEY_NAMES}) DO NOTHING "
    f"RETURNING {_KEY_NAMES}"
)


def _insert_sightings(conn: Connection, rows: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """Insert rows (tuples in ``ROW_COLUMNS`` order), skipping those already stored; return
    the keys of the new ones."""
    dbapi = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        # ON COMMIT DELETE ROWS: the table is empty again at the start of the next batch,
        # and IF NOT EXISTS creates it once per pooled connection.
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_LOAD_TABLE} ON COMMIT DELETE ROWS AS "
            f"SELECT {_LOAD_NAMES} FROM sightings WITH NO DATA"
        )
        with dbapi.cursor() as cur:  # type: ignore[union-attr]
            with cur.copy(f"COPY {_LOAD_TABLE} ({_LOAD_NAMES}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_LOAD_TABLE} AS "
            f"SELECT {_LOAD_NAMES} FROM sightings WHERE 0"
        )
        conn.exec_driver_sql(f"DELETE FROM {_LOAD_TABLE}")
        cur = dbapi.cursor()  # type: ignore[union-attr]
        try:
            marks = ", ".join("?" * len(ROW_COLUMNS))
            cur.executemany(f"INSERT INTO {_LOAD_TABLE} ({_LOAD_NAMES}) VALUES ({marks})", rows)
        finally:
            cur.close()
    return {tuple(r) for r in conn.exec_driver_sql(_MOVE_SQL)}


def write_batch(conn: Connection, items: Iterable[SpoolItem]) -> tuple[int, int]:
    """Insert one batch in the caller's transaction; return (new sightings, duplicates)."""
    rows: dict[tuple[Any, ...], tuple[tuple[Any, ...], dict[str, Any]]] = {}
    total = 0
    for sensor, record in items:
        row = sighting_row(sensor, record)
        rows.setdefault(row[:_KEY_LEN], (row, record))
        total += 1
    if not rows:
        return 0, 0
    new_keys = _insert_sightings(conn, [row for row, _ in rows.values()])

    aggregates: dict[tuple[str, str], list[Any]] = {}
    dovecot: dict[tuple[str, str, str, str], list[Any]] = {}
    for key, (row, record) in rows.items():
        if key not in new_keys:
            continue
        ts = row[1]
        dkey = _dovecot_key(record)
        if dkey is not None:
            dagg = dovecot.get(dkey)
            if dagg is None:
                dovecot[dkey] = [str(record["ja3n_hash"])[:32], ts, ts, 1]
            else:
                dagg[1], dagg[2], dagg[3] = min(dagg[1], ts), max(dagg[2], ts), dagg[3] + 1
        for kind, (value_key, string_key) in FINGERPRINT_FIELDS.items():
            value = record.get(value_key)
            if not value:
                continue
            agg = aggregates.get((kind, value))
            if agg is None:
                aggregates[(kind, value)] = [record.get(string_key), ts, ts, 1]
            else:
                agg[1], agg[2], agg[3] = min(agg[1], ts), max(agg[2], ts), agg[3] + 1
    if aggregates:
        _upsert_fingerprints(conn, aggregates)
    if dovecot:
        _upsert_dovecot_hashes(conn, dovecot)
    return len(new_keys), total - len(new_keys)


# Aggregates: the database does the sums (times_seen + excluded), so concurrent writers lose no
# count. SQLite's min()/max() with two arguments are PostgreSQL's LEAST/GREATEST.
def _upsert_sql(table: str, key: str, extra: str, conn: Connection) -> str:
    pg = conn.dialect.name == "postgresql"
    least, greatest = ("LEAST", "GREATEST") if pg else ("min", "max")
    return (
        f"ON CONFLICT ({key}) DO UPDATE SET "
        f"times_seen = {table}.times_seen + excluded.times_seen, "
        f"first_seen = {least}({table}.first_seen, excluded.first_seen), "
        f"last_seen = {greatest}({table}.last_seen, excluded.last_seen){extra}"
    )


def _upsert(conn: Connection, table: str, key: str, extra: str, rows: list[dict[str, Any]]) -> None:
    """One upsert of every row (sorted by the caller: a consistent row-lock order across
    concurrent writers, so no deadlocks). PostgreSQL gets one array per column; SQLite the
    driver's executemany, with no SQL compiled per row."""
    conflict = _upsert_sql(table, key, extra, conn)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_pg_unnest_insert(table, conflict), _columns(rows, _TABLES[table]))
        return
    names = list(rows[0])
    marks = ", ".join("?" * len(names))
    conn.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}) {conflict}",
        [tuple(r.values()) for r in rows],
    )


_TABLES = {"fingerprints": _FINGERPRINTS, "dovecot_hashes": _DOVECOT_HASHES}


def _upsert_dovecot_hashes(
    conn: Connection, rows: dict[tuple[str, str, str, str], list[Any]]
) -> None:
    """Add the batch's hellos to the Dovecot-hash index (same arithmetic as the aggregates)."""
    params = [
        {
            "openssl30": h30,
            "openssl32": h32,
            "ja3_hash": ja3,
            "ja3n_hash": ja3n,
            "ja4": ja4,
            "first_seen": first,
            "last_seen": last,
            "times_seen": count,
        }
        for (h30, h32, ja3, ja4), (ja3n, first, last, count) in sorted(rows.items())
    ]
    _upsert(conn, _DOVECOT_HASHES.name, "openssl30, openssl32, ja3_hash, ja4", "", params)


def _upsert_fingerprints(conn: Connection, aggregates: dict[tuple[str, str], list[Any]]) -> None:
    """Add the batch's counts to the fingerprint aggregates in one statement."""
    params = [
        {
            "kind": kind,
            "value": value,
            "full_string": full,
            "first_seen": first,
            "last_seen": last,
            "times_seen": count,
        }
        for (kind, value), (full, first, last, count) in sorted(aggregates.items())
    ]
    extra = ", full_string = COALESCE(fingerprints.full_string, excluded.full_string)"
    _upsert(conn, _FINGERPRINTS.name, "kind, value", extra, params)


class SightingWriter:
    """Buffers records and writes them in batches; see the module docstring.

    Batches are written by a background thread, so that the database's work (SQLite's C code,
    PostgreSQL's round trips; both release the GIL) overlaps with the caller's packet parsing.
    At most two full batches wait for it: a slow database slows ``add`` down instead of
    filling memory. Counters are up to date after ``flush()`` and ``close()``; an error that is
    not an outage is raised by the next ``add``, ``flush`` or ``close``.
    """

    def __init__(
        self,
        db: Database,
        sensor: str,
        batch_size: int = 500,
        spool_dir: Path | str | None = None,
        *,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.sensor = sensor
        self.batch_size = batch_size
        self.stats = WriterStats()
        self._pending: list[SpoolItem] = []
        self._spool = Spool(Path(spool_dir), sensor) if spool_dir is not None else None
        self._retry_interval = retry_interval
        self._clock = clock
        self._retry_after = 0.0
        self._closed = False
        self._error: BaseException | None = None
        if self._spool is not None:
            # Leftovers of earlier runs (ours or another writer's that died) go in first.
            self._replay(self._spool.files(), blocking=False)
        # Items: (batch, final); None stops the thread.
        self._queue: queue.Queue[tuple[list[SpoolItem], bool] | None] = queue.Queue(maxsize=2)
        self._worker = threading.Thread(
            target=self._work, name=f"sighting-writer[{sensor}]", daemon=True
        )
        self._worker.start()

    # Counters as attributes too, for callers that print them.
    @property
    def stored(self) -> int:
        return self.stats.stored

    @property
    def duplicates(self) -> int:
        return self.stats.duplicates

    @property
    def spooled(self) -> int:
        return self.stats.spooled

    @property
    def replayed(self) -> int:
        return self.stats.replayed

    def add(self, record: HelloRecord) -> None:
        if self._closed:
            raise RuntimeError("SightingWriter is closed")
        self._raise_error()
        # Serialised here, at the edge: the spool and the batch writer take the JSON shape.
        self._pending.append((self.sensor, record.as_dict()))
        if len(self._pending) >= self.batch_size:
            self._submit(final=False)

    def add_dicts(self, records: list[dict[str, Any]]) -> None:
        """Like ``add`` for records already in ``HelloRecord.as_dict()`` shape (what the Rust
        engine hands over), a whole list per call: no Python object per record is built."""
        if self._closed:
            raise RuntimeError("SightingWriter is closed")
        self._raise_error()
        sensor = self.sensor
        self._pending.extend([(sensor, d) for d in records])
        if len(self._pending) >= self.batch_size:
            self._submit(final=False)

    def flush(self) -> None:
        """Write (or spool) everything added so far, and wait until that is done."""
        self._submit(final=False)
        self._queue.join()
        self._raise_error()

    def close(self) -> WriterStats:
        if not self._closed:
            self._closed = True
            # final: one more attempt even inside the retry interval, the process may exit.
            self._submit(final=True)
            self._queue.put(None)
            self._worker.join()
            if self._spool is not None and self._spool.has_data():
                log.warning(
                    "database still unreachable: %s keeps the unsaved sightings; they are "
                    "stored by the next writer using this spool directory",
                    self._spool.path,
                )
            self._raise_error()
        return self.stats

    def __enter__(self) -> SightingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background thread ----------------------------------------------------------------------

    def _submit(self, *, final: bool) -> None:
        batch, self._pending = self._pending, []
        self._queue.put((batch, final))

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            batch, final = item
            try:
                if final:
                    self._retry_after = 0.0
                self._write_or_spool(batch)
            except BaseException as exc:
                # Not an outage (those are spooled): a batch the database refuses would be
                # refused again on every replay, so it is not spooled; the caller's thread
                # gets the error (_raise_error), as it would from a direct write.
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write_or_spool(self, batch: list[SpoolItem]) -> None:
        spool = self._spool
        if spool is not None and (
            self._clock() < self._retry_after  # database known down: do not wait on it
            or (spool.has_data() and not self._replay([spool.path], blocking=True))
        ):
            # Behind what is already spooled, so the order is kept.
            self._to_spool(batch)
            return
        if not batch:
            return
        try:
            self._write(batch)
        except DBAPIError as exc:
            if spool is None or not is_outage(exc):
                raise
            self._note_outage(exc)
            self._to_spool(batch)

    # -- internals ------------------------------------------------------------------------------

    def _write(self, batch: list[SpoolItem]) -> None:
        for attempt in range(_RETRIES):
            try:
                with self.db.write_engine.begin() as conn:
                    stored, dups = write_batch(conn, batch)
                break
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate not in _RETRY_SQLSTATES or attempt == _RETRIES - 1:
                    raise
        self.stats.stored += stored
        self.stats.duplicates += dups

    def _replay(self, paths: list[Path], *, blocking: bool) -> bool:
        """Replay spool files; False (and a retry pause) if the database is still down."""
        for path in paths:
            try:
                n = replay_file(path, self._write, self.batch_size, blocking=blocking)
            except DBAPIError as exc:
                if not is_outage(exc):
                    raise
                self._note_outage(exc)
                return False
            if n:
                self.stats.replayed += n
                log.info("replayed %d spooled sightings from %s", n, path)
        return True

    def _to_spool(self, batch: list[SpoolItem]) -> None:
        assert self._spool is not None
        self._spool.append(batch)
        self.stats.spooled += len(batch)

    def _note_outage(self, exc: DBAPIError) -> None:
        self._retry_after = self._clock() + self._retry_interval
        log.warning(
            "database unreachable (%s); spooling to %s, retrying in %.0f s",
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
            self._spool.path if self._spool else "-",
            self._retry_interval,
        )

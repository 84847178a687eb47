"""Batched, idempotent, outage-proof writes of hello sightings and fingerprint aggregates.

Used by ``ja3svc pcap --store`` and the capture worker::

    w = SightingWriter(db, sensor="file:capture.pcap", spool_dir=settings.resolved_spool_dir())
    for record in engine.feed_frame(...):   # HelloRecord objects
        w.add(record)
    w.add_rows(rows)                         # or rows the Rust engine built (ROW_COLUMNS)
    stats = w.close()

A hello becomes one row (``ROW_COLUMNS``): its sightings-table columns, clipped and sanitised for
the columns, plus what the aggregates need. ``sighting_row`` builds it from a record (the
reference); the Rust engine builds the same rows itself (``store_row`` in native/engine).

One transaction per batch, and the database does the work: the rows go in bulk into a
session-local staging table, the sightings not already stored (on their uniqueness key) move
into the sightings table, and only those are added to the fingerprint and Dovecot-hash
aggregates, with atomic upserts (``times_seen = times_seen + excluded.times_seen``). Storing
the same capture twice therefore changes nothing, and concurrent writers on PostgreSQL lose no
count (there ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` says which rows are new; SQLite's
writer holds the write lock from BEGIN).

``db`` is a ``Database`` or a ``ja3svc.store.dbapi.Target``: the writer holds one
connection of the driver itself (sqlite3, psycopg), opened on first use and again after an
outage, so `pcap --store` into a database at the schema's head never imports SQLAlchemy. Its
errors are the driver's.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ja3svc.store.dbapi import Target
from ja3svc.store.spool import Spool, SpoolItem, replay_file

from ja3svc.record import HelloRecord
from ja3svc.vocabulary import DOVECOT_PROFILE_COLUMNS, FINGERPRINT_FIELDS

if TYPE_CHECKING:
    from ja3svc.store.database import Database

log = logging.getLogger(__name__)

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


def _clip(value: Any, limit: int) -> str | None:
    # Hello fields come from the wire: keep them within the column sizes, and without the NUL
    # characters PostgreSQL refuses in text, so one odd hello cannot fail a whole batch.
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if len(s) <= limit and "\x00" not in s:  # the usual case, checked at C speed
        return s
    return s.replace("\x00", "\\x00")[:limit]


# The columns of a row, in the order ``sighting_row`` gives them (and the Rust engine's
# ``ja3svc._native.STORE_COLUMNS``): the sightings table's, then what the database needs for
# the aggregates: each fingerprint's full string, and the two Dovecot hashes of the
# ``dovecot_hashes`` key (None unless that key is complete).
SIGHTING_COLUMNS = (
    "sensor", "ts", "src", "sport", "dst", "dport", "hello", "hello_index", "transport", "sni",
    "alpn", "tls_version", "ja3_hash", "ja3n_hash", "ja4", "ja3_dovecot_hash", "ja3s_hash",
    "ja3_dovecot_hashes",
)  # fmt: skip
FULL_STRING_COLUMNS = tuple(string_key for _, string_key in FINGERPRINT_FIELDS.values())
DOVECOT_KEY_COLUMNS = ("dovecot_openssl30", "dovecot_openssl32")
ROW_COLUMNS = SIGHTING_COLUMNS + FULL_STRING_COLUMNS + DOVECOT_KEY_COLUMNS
Row = tuple[Any, ...]
assert SIGHTING_COLUMNS[: len(KEY_COLUMNS)] == KEY_COLUMNS
assert {v for v, _ in FINGERPRINT_FIELDS.values()} <= set(SIGHTING_COLUMNS)


def sighting_row(sensor: str, r: dict[str, Any]) -> Row:
    """The row (``ROW_COLUMNS``) of a ``HelloRecord.as_dict()`` record: the reference the Rust
    engine's ``store_row`` is a port of (tests/test_store_differential.py compares them)."""
    alpn = r.get("alpn")
    ja3_hash, ja3n_hash, ja4 = (
        _clip(r.get("ja3_hash"), 32),
        _clip(r.get("ja3n_hash"), 32),
        _clip(r.get("ja4"), 64),
    )
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
        ja3_hash,
        ja3n_hash,
        ja4,
        _clip(r.get("ja3_dovecot_hash"), 32),
        _clip(r.get("ja3s_hash"), 32),
        _dovecot_hashes_json(r.get("ja3_dovecot_hashes")),
        *(r.get(k) for k in FULL_STRING_COLUMNS),
        *_dovecot_key(r.get("ja3_dovecot_hashes"), ja3_hash, ja3n_hash, ja4),
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


_NO_DOVECOT_KEY = (None, None)


def _dovecot_key(by_profile: Any, ja3: str | None, ja3n: str | None, ja4: str | None) -> Row:
    """The OpenSSL 3.0 and 3.2 hashes of a client hello's ``dovecot_hashes`` row, or two Nones
    when the record lacks any part of that key (server hellos, records from before profiles
    were kept)."""
    if not isinstance(by_profile, dict):
        return _NO_DOVECOT_KEY
    hashes = [by_profile.get(p) for p in DOVECOT_PROFILE_COLUMNS]
    if not (all(hashes) and ja3 and ja4 and ja3n):
        return _NO_DOVECOT_KEY
    return (_clip(hashes[0], 32), _clip(hashes[1], 32))


# --- the batch, in SQL ---------------------------------------------------------------------
#
# A batch goes in bulk into a session-local staging table (COPY on PostgreSQL, the driver's C
# executemany on SQLite: no SQL compiled and no Python work per row), and the database does the
# rest: the new sightings move into the table, and only those are added to the aggregates.

_STAGE = "sightings_stage"
_SIGHTING_NAMES = ", ".join(SIGHTING_COLUMNS)
_ROW_NAMES = ", ".join(ROW_COLUMNS)
_KEY_NAMES = ", ".join(KEY_COLUMNS)


def _stage_sql(pg: bool) -> str:
    """The staging table: the sightings' columns with their types (read from the table, so
    the models are not needed), text for the rest; on PostgreSQL emptied by each commit."""
    extra = ", ".join(
        f"CAST(NULL AS TEXT) AS {c}" for c in FULL_STRING_COLUMNS + DOVECOT_KEY_COLUMNS
    )
    select = f"SELECT {_SIGHTING_NAMES}, {extra} FROM sightings"
    if pg:
        return f"CREATE TEMP TABLE {_STAGE} ON COMMIT DELETE ROWS AS {select} WITH NO DATA"
    return f"CREATE TEMP TABLE {_STAGE} AS {select} WHERE false"


def _aggregates_sql(rows: str, pg: bool) -> tuple[str, str]:
    """The two upserts that add the new sightings in ``rows`` (a table or CTE with
    ``ROW_COLUMNS``) to the fingerprint and Dovecot-hash aggregates.

    The database does the arithmetic (``times_seen + excluded.times_seen``), so concurrent
    writers lose no count; on PostgreSQL rows go in sorted by their key, a consistent row-lock
    order across writers, so they do not deadlock (SQLite's writer holds the database's one
    write lock: a sort there would be spent for nothing). ``WHERE true``: SQLite cannot
    otherwise tell the upsert's ON CONFLICT from a join's ON. SQLite's two-argument
    min()/max() are LEAST/GREATEST.
    """
    least, greatest = ("LEAST", "GREATEST") if pg else ("min", "max")

    def upsert(table: str, key: str, extra: str = "") -> str:
        return (
            f"ON CONFLICT ({key}) DO UPDATE SET "
            f"times_seen = {table}.times_seen + excluded.times_seen, "
            f"first_seen = {least}({table}.first_seen, excluded.first_seen), "
            f"last_seen = {greatest}({table}.last_seen, excluded.last_seen){extra}"
        )

    # Grouped kind by kind (each group's sort is small); hashes are functions of their
    # strings, so min() of a group's strings is its string.
    per_kind = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, {value} AS value, min({string}) AS full_string, "
        f"min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS times_seen FROM {rows} "
        f"WHERE {value} <> '' GROUP BY {value}"
        for kind, (value, string) in FINGERPRINT_FIELDS.items()
    )
    fingerprints = (
        "INSERT INTO fingerprints (kind, value, full_string, first_seen, last_seen, times_seen) "
        f"SELECT * FROM ({per_kind}) AS f WHERE true{' ORDER BY kind, value' if pg else ''} "
        + upsert(
            "fingerprints",
            "kind, value",
            ", full_string = COALESCE(fingerprints.full_string, excluded.full_string)",
        )
    )
    key = "dovecot_openssl30, dovecot_openssl32, ja3_hash, ja4"
    dovecot = (
        "INSERT INTO dovecot_hashes (openssl30, openssl32, ja3_hash, ja4, ja3n_hash, "
        "first_seen, last_seen, times_seen) "
        f"SELECT {key}, min(ja3n_hash), min(ts), max(ts), count(*) FROM {rows} "
        f"WHERE dovecot_openssl30 IS NOT NULL GROUP BY {key} ORDER BY {key} "
        + upsert("dovecot_hashes", "openssl30, openssl32, ja3_hash, ja4")
    )
    return fingerprints, dovecot


@functools.cache
def _pg_sql() -> tuple[str, str, str]:
    """PostgreSQL: the staging table (its rows numbered in load order), and one statement
    that moves the batch: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` says which sightings
    are new even while another writer stores the same ones, and the aggregates are computed
    from exactly those, in the same statement."""
    create = (
        f"{_stage_sql(pg=True)}; "
        f"ALTER TABLE {_STAGE} ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY"
    )
    join = " AND ".join(f"s.{c} = n.{c}" for c in KEY_COLUMNS)
    fingerprints, dovecot = _aggregates_sql("fresh", pg=True)
    move = (
        # A key twice in one batch: the first copy counts, as the first copy is stored.
        f"WITH batch AS (SELECT DISTINCT ON ({_KEY_NAMES}) * FROM {_STAGE} "
        f"ORDER BY {_KEY_NAMES}, seq), "
        f"new AS (INSERT INTO sightings ({_SIGHTING_NAMES}) SELECT {_SIGHTING_NAMES} FROM batch "
        f"ORDER BY {_KEY_NAMES} ON CONFLICT ({_KEY_NAMES}) DO NOTHING RETURNING {_KEY_NAMES}), "
        f"fresh AS (SELECT s.* FROM batch s JOIN new n ON {join}), "
        f"fp AS ({fingerprints}), dv AS ({dovecot}) "
        "SELECT count(*) FROM new"
    )
    return create, f"COPY {_STAGE} ({_ROW_NAMES}) FROM STDIN", move


def _marks(n: int) -> str:
    return ", ".join("?" * n)


@functools.cache
def _sqlite_sql() -> tuple[str, ...]:
    """SQLite: the writer holds the database's write lock from BEGIN (``BEGIN IMMEDIATE``),
    so what is not in the sightings table now is new: staged rows already stored are deleted,
    the rest moved, and the aggregates computed from them."""
    match = " AND ".join(f"s.{c} = {_STAGE}.{c}" for c in KEY_COLUMNS)
    return (
        _stage_sql(pg=False),
        f"INSERT INTO {_STAGE} ({_ROW_NAMES}) VALUES ({_marks(len(ROW_COLUMNS))})",
        f"DELETE FROM {_STAGE} WHERE EXISTS (SELECT 1 FROM sightings s WHERE {match})",
        # A key twice in one batch: its first copy is stored, in load order (the staging
        # table's rowid order: no sort), and the conflict target names the key, so a row that
        # breaks another constraint still fails the batch...
        f"INSERT INTO sightings ({_SIGHTING_NAMES}) SELECT {_SIGHTING_NAMES} FROM {_STAGE} "
        f"WHERE true ORDER BY rowid ON CONFLICT ({_KEY_NAMES}) DO NOTHING",
        # ... and only that copy counts.
        f"DELETE FROM {_STAGE} WHERE rowid NOT IN "
        f"(SELECT min(rowid) FROM {_STAGE} GROUP BY {_KEY_NAMES})",
        *_aggregates_sql(_STAGE, pg=False),
    )


def write_batch(conn: Any, rows: list[Row], *, pg: bool, staged: bool) -> tuple[int, int]:
    """Insert one batch of rows (``ROW_COLUMNS``) through a driver connection (sqlite3 or
    psycopg), in the transaction the caller began (on SQLite with ``BEGIN IMMEDIATE``) and
    commits; ``staged``: this connection already has the staging table. Returns (new
    sightings, duplicates)."""
    if not rows:
        return 0, 0
    cur = conn.cursor()
    try:
        if pg:
            create, copy_sql, move = _pg_sql()
            # The batch's sorts (dedup, join, groups) fit in memory, instead of going to disk.
            cur.execute("SET LOCAL work_mem = '64MB'")
            if not staged:
                cur.execute(create)
            with cur.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(move)
            new = int(cur.fetchone()[0])
        else:
            create, load, drop_stored, move, drop_copies, *aggregates = _sqlite_sql()
            if not staged:
                cur.execute(create)
            cur.execute(f"DELETE FROM {_STAGE}")
            cur.executemany(load, rows)
            staged_rows = len(rows) - cur.execute(drop_stored).rowcount
            new = cur.execute(move).rowcount
            if new < staged_rows:
                cur.execute(drop_copies)
            for sql in aggregates:
                cur.execute(sql)
    finally:
        cur.close()
    return new, len(rows) - new


def _from_spool(sensor: str, record: dict[str, Any]) -> Row:
    """The row of a spool line: spooled as ``{column: value}`` (readable, and independent of
    the column order); a line of an earlier version holds the record itself."""
    if "hello_index" in record:
        return tuple(record.get(c) for c in ROW_COLUMNS)
    return sighting_row(sensor, record)


class _Link:
    """The writer's one driver connection: opened on first use, and again after an outage."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.pg = target.pg
        self.error, self.outage = target.errors()
        self._conn: Any = None
        self._staged = False  # the staging table exists on this connection

    def write(self, rows: list[Row]) -> tuple[int, int]:
        """One batch in one transaction, retried when PostgreSQL reports a lost race, and
        once on a new connection when the one kept from an earlier batch has gone (a server
        restart or an idle timeout while the writer waited: not an outage if a new connection
        works). A retry after a commit whose answer was lost stores nothing twice: the batch's
        sightings are then all there, so none is new and no count is added."""
        replaced = False
        failures = 0
        while True:
            kept = self._conn is not None
            if not kept:
                self._conn, self._staged = self.target.connect(), False
            conn = self._conn
            try:
                if not self.pg:
                    conn.execute("BEGIN IMMEDIATE")
                result = write_batch(conn, rows, pg=self.pg, staged=self._staged)
                self._staged = True
                conn.commit()
                return result
            except self.error as exc:
                self._abandon(exc)
                # (SQLite's file does not go away: its outage is a lock held too long.)
                if self.pg and kept and not replaced and self.is_outage(exc):
                    replaced = True
                    continue
                failures += 1
                if getattr(exc, "sqlstate", None) not in _RETRY_SQLSTATES or failures == _RETRIES:
                    raise

    def is_outage(self, exc: BaseException) -> bool:
        """Errors that mean "the database is not there right now", as opposed to a bad
        statement (which would fail again on every replay)."""
        return isinstance(exc, self.outage)

    def _abandon(self, exc: BaseException) -> None:
        try:
            self._conn.rollback()
        except self.error:
            pass
        if self.is_outage(exc):  # reconnect next time: a server restart kills the connection
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except self.error:
                pass


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
        db: Database | Target,
        sensor: str,
        batch_size: int = 500,
        spool_dir: Path | str | None = None,
        *,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``db``: an open ``Database``, or where to connect (a ``Target``: no SQLAlchemy)."""
        self.target = db if isinstance(db, Target) else Target.of_engine(db.engine)
        self._link = _Link(self.target)
        self.sensor = sensor
        self.batch_size = batch_size
        self.stats = WriterStats()
        self._pending: list[Row] = []
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
        self._queue: queue.Queue[tuple[list[Row], bool] | None] = queue.Queue(maxsize=2)
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
        self.add_rows([sighting_row(self.sensor, record.as_dict())])

    def add_rows(self, rows: list[Row]) -> None:
        """Like ``add`` for rows already built (``ROW_COLUMNS``, the sensor this writer's): what
        the Rust engine hands over, a chunk of a capture per call."""
        if self._closed:
            raise RuntimeError("SightingWriter is closed")
        self._raise_error()
        self._pending.extend(rows)
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
            self._link.close()
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

    def _write_or_spool(self, batch: list[Row]) -> None:
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
        except self._link.error as exc:
            if spool is None or not self._link.is_outage(exc):
                raise
            self._note_outage(exc)
            self._to_spool(batch)

    # -- internals ------------------------------------------------------------------------------

    def _write(self, batch: list[Row]) -> None:
        stored, dups = self._link.write(batch)
        self.stats.stored += stored
        self.stats.duplicates += dups

    def _replay(self, paths: list[Path], *, blocking: bool) -> bool:
        """Replay spool files; False (and a retry pause) if the database is still down."""
        for path in paths:
            try:
                n = replay_file(path, self._write_spooled, self.batch_size, blocking=blocking)
            except self._link.error as exc:
                if not self._link.is_outage(exc):
                    raise
                self._note_outage(exc)
                return False
            if n:
                self.stats.replayed += n
                log.info("replayed %d spooled sightings from %s", n, path)
        return True

    def _write_spooled(self, items: list[SpoolItem]) -> None:
        self._write([_from_spool(sensor, record) for sensor, record in items])

    def _to_spool(self, batch: list[Row]) -> None:
        assert self._spool is not None
        self._spool.append([(row[0], dict(zip(ROW_COLUMNS, row, strict=True))) for row in batch])
        self.stats.spooled += len(batch)

    def _note_outage(self, exc: BaseException) -> None:
        self._retry_after = self._clock() + self._retry_interval
        log.warning(
            "database unreachable (%s); spooling to %s, retrying in %.0f s",
            (str(exc).strip().splitlines() or [type(exc).__name__])[0],
            self._spool.path if self._spool else "-",
            self._retry_interval,
        )

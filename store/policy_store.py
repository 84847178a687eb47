"""Queries of the policy service on the fingerprint database.

Each query is written once, as SQLAlchemy Core statements (``_labels``, ``_history``,
``_equivalents``, ``_reputation``, ``_write``); the reads are generators of what to ask
(``Reads``), so that the reads one allow needs go to the database together. They are run by
one of three backends, chosen by ``store.database.sqlite_file`` (the one place that decides
what counts as a local SQLite file) and the engine's dialect:

- ``_DriverBackend`` (a SQLite file): the statements compiled once per shape to SQLite's text,
  executed straight on the driver by the event loop itself (see that class for why);
- ``_PgBackend`` (PostgreSQL): compiled once to PostgreSQL's text; the verdict path's reads
  awaited on the event loop through psycopg's asynchronous connections, under the
  service's deadline (Dovecot gives up after 2 s: a slow or dead database degrades verdicts
  instead of blocking), and the writer's batches awaited on the event loop too, on a
  connection of their own (see that class for what the profile said);
- ``_CoreBackend`` (in-memory SQLite, tests): SQLAlchemy connections.

The admin API's methods below use ORM sessions: they are not on the request path.
"""
from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple, Protocol, TypeVar

import psycopg
from ja3svc.store import queries
from ja3svc.store.database import PG_CONNECT_TIMEOUT_S, SQLITE_BUSY_TIMEOUT_S, sqlite_file
from ja3svc.store.models import (
    FINGERPRINT_KINDS,
    AuthFailure,
    Decision,
    DovecotHash,
    Fingerprint,
    Label,
    UserFingerprint,
)
from ja3svc.store.queries import UNBOUNDED, Page, id_window_page, label_dict
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.visitors import replacement_traverse

from ja3svc.policy.facts import (
    NETWORK_ONLY_FAIL_TYPES,
    UNCOUNTED_FAIL_TYPES,
    LabelFact,
    Reputation,
    UserHistory,
    dovecot_hash_history,
)
from ja3svc.vocabulary import FingerprintKey as Ref
from ja3svc.vocabulary import check_label

T = TypeVar("T")

# The sqlite3 driver binds int, float and str directly but sends None through its adaptation
# protocol, which looks ``__adapt__`` up on a type and raises (and drops) an AttributeError per
# value: two per audit row. An adapter for None is found first and changes nothing (None still
# binds as NULL); it is module-wide, and so harmless for every other user of sqlite3.
sqlite3.register_adapter(type(None), lambda value: value)


# One failed login to record: (ts, username, fingerprint, remote network or "", Dovecot's
# fail_type or "").
Failure = tuple[float, str, Ref, str, str]


class StoreBusy(Exception):
    """Another connection holds SQLite's write lock; nothing was written (``wait=False``)."""


_LABEL_COLUMNS = (
    Label.kind,
    Label.value,
    Label.action,
    Label.client_name,
    Label.category,
    Label.tarpit_seconds,
    Label.source,
    Label.confidence,
)


def label_fact(row: Label | Row[Any]) -> LabelFact:
    """A label as the verdict engine sees it, from an ORM object or a Core row of its columns."""
    return LabelFact(
        kind=row.kind,
        value=row.value,
        action=row.action,
        client_name=row.client_name or "",
        category=row.category or "",
        tarpit_seconds=row.tarpit_seconds,
        source=row.source,
        confidence=row.confidence,
    )


class DecisionRecord(NamedTuple):
    """One audit-log row, built on the request path and written in batches (a named tuple:
    one is built per Dovecot request, see ja3svc.policy.facts)."""

    ts: float
    command: str
    username: str
    remote_ip: str
    remote_port: int | None
    ja3_hash: str
    status: int
    action: str
    rule: str
    reason: str
    labels: tuple[LabelFact, ...]

    @classmethod
    def of(
        cls,
        *,
        ts: float,
        command: str,
        username: str,
        remote_ip: str,
        remote_port: int | None,
        ja3_hash: str,
        status: int,
        action: str,
        rule: str,
        reason: str,
        labels: tuple[LabelFact, ...],
    ) -> DecisionRecord:
        """The keyword constructor of the request path, without the dict a keyword call to the
        class costs (see ja3svc.policy.facts)."""
        return tuple.__new__(
            cls,
            (ts, command, username, remote_ip, remote_port, ja3_hash, status, action, rule,
             reason, labels),
        )  # fmt: skip


# Ids one decisions page reads at most (see PolicyStore.decision_page), and how far a decision's
# id may stray from time order (batched writers of several workers).
DECISION_SCAN = 100_000
_ID_TIME_MARGIN = 300.0
VERDICTS = ("allow", "tarpit", "reject")
REPORT_OUTCOMES = ("success", "failure", "policy_reject")


@dataclass(frozen=True)
class DecisionFilter:
    """What a decisions listing is narrowed to; every field None means "any".

    ``action`` is a verdict (allow, tarpit, reject; log-only verdicts as ``log:reject`` ...) or
    a report outcome (success, failure, policy_reject); ``fingerprint`` is the hash Dovecot
    sent (``ja3_hash``); ``command`` is ``allow`` (both stages), ``allow/before``,
    ``allow/after`` or ``report``.
    """

    since: float | None = None
    until: float | None = None
    username: str | None = None
    fingerprint: str | None = None
    action: str | None = None
    rule: str | None = None
    command: str | None = None

    def conditions(self) -> list[Any]:
        out: list[Any] = []
        if self.since is not None:
            out.append(Decision.ts >= self.since)
        if self.until is not None:
            out.append(Decision.ts <= self.until)
        if self.username:
            out.append(Decision.username == self.username)
        if self.fingerprint:
            out.append(Decision.ja3_hash == self.fingerprint.lower())
        if self.action:
            out.append(Decision.action == self.action)
        if self.rule:
            out.append(Decision.rule == self.rule)
        if self.command == "allow":
            out.append(Decision.command.in_(("allow/before", "allow/after")))
        elif self.command:
            out.append(Decision.command == self.command)
        return out


def decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "ts": d.ts,
        "command": d.command,
        "username": d.username,
        "remote_ip": d.remote_ip,
        "remote_port": d.remote_port,
        "ja3_hash": d.ja3_hash,
        "status": d.status,
        "action": d.action,
        "rule": d.rule,
        "reason": d.reason,
        "labels": json.loads(d.labels) if d.labels else [],
    }


class AllowFacts(NamedTuple):
    """What one allow needs from the database, asked together (see ``allow_facts_reads``)."""

    labels: dict[Ref, tuple[LabelFact, ...]]
    history: UserHistory | None
    reputation: Reputation | None
    # Dovecot's hash's equivalents (``dovecot_equivalents``); None: not asked.
    equivalents: tuple[Ref, ...] | None = None


class PolicyStore:
    def __init__(self, engine: Engine, write_engine: Engine | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # On SQLite the store's write engine takes the write lock at BEGIN (see
        # store.database); read-then-write transactions must use it to avoid SQLITE_BUSY.
        self.write_engine = write_engine or engine
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._backend: _Backend
        if sqlite_file(engine.url) is not None:
            self._backend = _DriverBackend(engine)
        elif engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            self._backend = _PgBackend(engine)
        else:
            self._backend = _CoreBackend(engine, self.write_engine)

    @classmethod
    def from_database(cls, db: Any) -> PolicyStore:
        """From a ``store.database.Database`` (kept loose: it only needs two engines)."""
        return cls(db.engine, getattr(db, "write_engine", None))

    def session(self) -> Session:
        return self._sessions()

    def write_session(self) -> Session:
        return self._write_sessions()

    # --- verdict path ---------------------------------------------------------------------
    #
    # Each read exists as ``*_reads`` (what to ask, not yet asked: the service runs it with
    # ``run`` or ``run_async``, whichever ``reads_async`` says) and as a plain call.

    def run(self, reads: Reads[T]) -> T:
        """``reads`` asked now, on this thread."""
        return self._backend.read(lambda run: _drive(run, reads))

    async def run_async(self, reads: Reads[T]) -> T:
        """``reads`` asked on the running event loop (only where ``reads_async``)."""
        return await self._backend.read_async(reads)

    @property
    def reads_async(self) -> bool:
        """True for PostgreSQL: the verdict path's reads are asked on the event loop with
        ``run_async`` (see ``_PgBackend``); elsewhere they are local and quick (``run``)."""
        return self._backend.asynchronous

    def actionable_labels(self, limit: int) -> list[LabelFact]:
        """Labels that change verdicts, newest first: the outage cache is preloaded with them."""
        with self.session() as s:
            stmt = (
                select(Label)
                .where(Label.action != "none")
                .order_by(Label.updated_at.desc())
                .limit(limit)
            )
            return [label_fact(r) for r in s.scalars(stmt)]

    def user_history(self, username: str) -> UserHistory:
        return self.run(_history(username))

    def dovecot_equivalents(self, dovecot_hash: str) -> tuple[Ref, ...]:
        """The other fingerprints of the hellos a capture saw giving ``dovecot_hash`` under
        any OpenSSL profile: their Dovecot hash under every profile, JA3, JA3N and JA4 (empty
        when no capture saw such a hello). At most ``EQUIVALENT_HELLOS`` hellos. (The service
        asks for them with the rest of an allow's facts: ``allow_facts_reads``.)"""
        return self.run(_equivalents(dovecot_hash))

    def reputation(
        self, refs: Sequence[Ref], network: str, window: int, now: float, min_accounts: int = 1
    ) -> Reputation:
        return self.run(_reputation(refs, network, window, now, min_accounts))

    def allow_facts_reads(
        self,
        label_refs: Sequence[Ref],
        username: str | None,
        identity_refs: Sequence[Ref],
        network: str,
        window: int,
        now: float,
        min_accounts: int = 1,
        equivalents_of: str = "",
    ) -> Reads[AllowFacts]:
        """Labels of ``label_refs``, the history of ``username`` (None: not needed), the
        reputation of ``identity_refs`` (empty: not needed) seen from ``network`` and the
        equivalents of the Dovecot hash ``equivalents_of`` ("": not needed) with their labels;
        the reads go to the database together (one call on one connection, see
        ``_together``), then one more when the successful accounts must be counted
        (``min_accounts``: see ``_reputation``) or equivalents were found."""
        labels, history, rep, equivalents = yield from _together(
            _labels(label_refs) if label_refs else None,
            _history(username) if username else None,
            _reputation(identity_refs, network, window, now, min_accounts)
            if identity_refs
            else None,
            _equivalents(equivalents_of) if equivalents_of else None,
        )
        labels = labels or {}
        if equivalents:
            labels.update((yield from _labels(r for r in equivalents if r not in labels)))
        return AllowFacts(labels, history, rep, equivalents)

    def close(self) -> None:
        """Close the connections the driver backends hold (the engines stay usable)."""
        self._backend.close()

    @property
    def writes_inline(self) -> bool:
        """True for a SQLite file: a read or a batch takes micro- to milliseconds, so the event
        loop runs them itself, writing without waiting for another process's lock
        (``write_batch(wait=False)``)."""
        return self._backend.inline

    @property
    def writes_async(self) -> bool:
        """True for PostgreSQL: the writer awaits its batches on its event loop
        (``write_batch_async``; see ``_PgBackend``). Neither this nor ``writes_inline``: a
        database whose writes block (SQLAlchemy's, tests), written from a thread."""
        return self._backend.asynchronous

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (SQLite; nothing elsewhere). For the writer,
        whose inline connection leaves checkpoints to this call, made off the event loop."""
        if self._backend.inline:
            with self.engine.connect() as conn:
                # TRUNCATE: fold everything in and cut the WAL file to zero, so that it cannot
                # grow without bound under a steady stream of writes (PASSIVE never resets it
                # while writers keep appending). It waits for the writers of the moment, briefly:
                # the event loop's writes never wait for the lock (they stay queued), and a
                # checkpoint that finds the database busy is simply retried next time.
                conn.exec_driver_sql("PRAGMA busy_timeout=250")
                try:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")

    # --- report path (batched by the writer) ------------------------------------------------

    def write_batch(
        self,
        successes: Sequence[tuple[float, str, Ref]],
        failures: Sequence[Failure],
        decisions: Sequence[DecisionRecord],
        wait: bool = True,
    ) -> None:
        """One transaction per batch, a few multi-row statements: ORM units of work, and then
        per-row binding, were the bottleneck (see ``_DriverBackend``).

        On a SQLite file ``wait=False`` raises :class:`StoreBusy` at once, writing nothing,
        when another connection holds the write lock, and leaves checkpoints to
        :meth:`checkpoint`."""
        merged = _merge_successes(successes)
        if merged or failures or decisions:
            self._backend.write(
                lambda run, dialect: _write(run, dialect, merged, failures, decisions), wait
            )

    async def write_batch_async(
        self,
        successes: Sequence[tuple[float, str, Ref]],
        failures: Sequence[Failure],
        decisions: Sequence[DecisionRecord],
    ) -> None:
        """``write_batch`` awaited on the running event loop (only where ``writes_async``):
        the same statements, in one transaction."""
        merged = _merge_successes(successes)
        if merged or failures or decisions:
            inserts = _Inserts()
            _write(inserts, "postgresql", merged, failures, decisions)
            await self._backend.write_async(inserts.statements)

    # --- admin API --------------------------------------------------------------------------

    def decisions(
        self, limit: int = 100, username: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` decisions of ``username`` since ``since`` (see ``decision_page``
        for every filter and paging)."""
        return self.decision_page(DecisionFilter(since=since, username=username), limit).rows

    def decision_page(
        self, filters: DecisionFilter, limit: int = 100, before: int | None = None
    ) -> Page:
        """Decisions matching ``filters``, newest first, with ids below ``before``.

        At most ``DECISION_SCAN`` ids are read per call (see ``queries.id_window_page``). Time
        bounds become id bounds through the ``ts`` index (ids follow time to within the
        writers' batches; the margin covers them), and the exact ``ts`` condition is applied
        as well.
        """
        with self.session() as s:
            ceiling = floor = None
            if filters.until is not None:
                ceiling = s.scalar(
                    select(Decision.id)
                    .where(Decision.ts <= filters.until + _ID_TIME_MARGIN)
                    .order_by(Decision.ts.desc())
                    .limit(1)
                )
                if ceiling is None:
                    return Page([], None, None)
            if filters.since is not None:
                low = s.scalar(
                    select(Decision.id)
                    .where(Decision.ts >= filters.since - _ID_TIME_MARGIN)
                    .order_by(Decision.ts)
                    .limit(1)
                )
                if low is None:
                    return Page([], None, None)
                floor = low - 1
            # Account and fingerprint have (column, id) indexes that answer newest first by
            # themselves; verdict and rule filters read DECISION_SCAN ids per page.
            indexed = bool(filters.username or filters.fingerprint)
            page = id_window_page(
                s, Decision, filters.conditions(), limit, before,
                UNBOUNDED if indexed else DECISION_SCAN, floor or 0, ceiling,
            )  # fmt: skip
            return page._replace(rows=[decision_dict(d) for d in page.rows])

    # --- the read API (store.queries), for the admin API and the console ---------------------

    def lookup(
        self, kind: str, value: str, now: float | None = None, window: int = 3600
    ) -> dict[str, Any]:
        with self.session() as s:
            return queries.lookup(s, kind, value, window=window, now=now)

    def search(self, q: str, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self.session() as s:
            return queries.search(s, q, kinds=[kind] if kind else None, limit=limit)

    def top(self, kind: str = "ja3", limit: int = 20, by: str = "seen") -> list[dict[str, Any]]:
        with self.session() as s:
            return queries.top(s, kinds=[kind], by=by, limit=limit)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        with self.session() as s:
            return {
                name: int(s.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in (
                    ("fingerprints", Fingerprint),
                    ("labels", Label),
                    ("user_fingerprints", UserFingerprint),
                    ("auth_failures", AuthFailure),
                    ("decisions", Decision),
                )
            }

    def get_label(self, label_id: int) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(Label, label_id)
            return label_dict(row) if row else None

    def upsert_label(self, fields: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Create or replace the label of (kind, value, source)."""
        now = time.time() if now is None else now
        fields = _checked(fields)
        with self.write_session() as s, s.begin():
            row = s.scalars(
                select(Label).where(
                    Label.kind == fields["kind"],
                    Label.value == fields["value"],
                    Label.source == fields["source"],
                )
            ).one_or_none()
            if row is None:
                row = Label(created_at=now, **fields)
                s.add(row)
            else:
                for key, val in fields.items():
                    setattr(row, key, val)
            row.updated_at = now
            s.flush()
            return label_dict(row)

    def update_label(
        self, label_id: int, fields: dict[str, Any], now: float | None = None
    ) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        with self.write_session() as s, s.begin():
            row = s.get(Label, label_id)
            if row is None:
                return None
            _checked({**label_dict(row), **fields})
            for key, val in fields.items():
                setattr(row, key, val)
            row.updated_at = now
            s.flush()
            return label_dict(row)

    def delete_label(self, label_id: int) -> dict[str, Any] | None:
        with self.write_session() as s, s.begin():
            row = s.get(Label, label_id)
            if row is None:
                return None
            found = label_dict(row)
            s.execute(delete(Label).where(Label.id == label_id))
            return found

    def ping(self) -> None:
        with self.session() as s:
            s.execute(select(1))


def reputation_in(
    session: Session, refs: Sequence[Ref], window: int, now: float, network: str = ""
) -> Reputation:
    """The reputation the verdict path computes for ``refs`` (from ``network``; "": the counts
    that do not depend on it), read in ``session``, successful accounts always counted."""
    return _drive(_CoreRun(session), _reputation(refs, network, window, now, 0))


def _merge_successes(
    successes: Sequence[tuple[float, str, Ref]],
) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    merged: dict[tuple[str, str, str], tuple[float, float, int]] = {}
    for ts, user, (kind, value) in successes:
        key = (user, kind, value)
        first, last, n = merged.get(key, (ts, ts, 0))
        merged[key] = (min(first, ts), max(last, ts), n + 1)
    return merged


# --- the queries, each written once ---------------------------------------------------------
#
# Every statement names its binds p0, p1, ... in the order of one flat parameter list, so all
# backends take the same list: SQLAlchemy as a dict, the drivers positionally.

_SQLITE_DIALECT = sqlite.dialect(paramstyle="qmark")
# PostgreSQL's own placeholders ($1, $2 ...), sent as they are by psycopg's RawCursor: its
# default %s placeholders are rewritten by a Python parser on every statement of over 50
# parameters (a batch of writes: 17% of the service's GIL samples, profiled). The base
# dialect: the psycopg one writes a cast after every placeholder, needless with the driver's
# own typing. psycopg prepares a statement the server has seen a few times (prepare_threshold).
_PG_DIALECT = PGDialect(paramstyle="numeric_dollar")

# A statement's text for a driver, and the order of the parameters in it (None: as given).
_Text = tuple[str, tuple[int, ...] | None]


class _Query:
    """A Core statement with binds ``p0..pN-1``, and its SQLite and PostgreSQL text (compiled
    on first use)."""

    __slots__ = ("_postgresql", "_sqlite", "names", "stmt")

    def __init__(self, stmt: Executable, n_params: int) -> None:
        self.stmt = stmt
        self.names = tuple(f"p{i}" for i in range(n_params))
        self._sqlite: _Text | None = None
        self._postgresql: _Text | None = None

    def _compile(self, dialect: Any) -> _Text:
        # for_executemany: no implicit RETURNING of the new row's id, which no caller reads.
        compiled = self.stmt.compile(dialect=dialect, for_executemany=True)
        positions = compiled.positiontup or []
        if sorted(positions) != sorted(self.names):
            raise AssertionError(f"binds {positions} are not {self.names}")
        order = tuple(int(name[1:]) for name in positions)
        return compiled.string, None if order == tuple(range(len(order))) else order

    def sqlite(self) -> _Text:
        if self._sqlite is None:
            self._sqlite = self._compile(_SQLITE_DIALECT)
        return self._sqlite

    def postgresql(self) -> _Text:
        if self._postgresql is None:
            self._postgresql = self._compile(_PG_DIALECT)
        return self._postgresql

    def text(self, dialect: str) -> _Text:
        return self.sqlite() if dialect == "sqlite" else self.postgresql()


# One read of a query function: a statement and its parameters.
_Read = tuple[_Query, Sequence[object]]
_Rows = Sequence[Sequence[Any]]
# What the database is asked, not yet asked: a generator that yields lists of reads (sent
# together: one call on one connection), is sent their rows, and returns its answer. Written once,
# it runs on every backend, synchronously (``_drive``) or on the event loop (``_drive_async``).
Reads = Generator[list[_Read], list[_Rows], T]


def _one(query: _Query, params: Sequence[object]) -> Generator[list[_Read], list[_Rows], _Rows]:
    """The rows of one read (``rows = yield from _one(...)``)."""
    return (yield [(query, params)])[0]


def _together(*reads: Reads[Any] | None) -> Reads[list[Any]]:
    """Several ``Reads`` side by side (None: not needed, answers None): each round asks the
    next reads of every one still running at once."""
    results: list[Any] = [None] * len(reads)
    pending: dict[int, list[_Read]] = {}
    for i, gen in enumerate(reads):
        if gen is not None:
            try:
                pending[i] = next(gen)
            except StopIteration as done:
                results[i] = done.value
    while pending:
        order = list(pending)
        answers = yield [read for i in order for read in pending[i]]
        at = 0
        for i in order:
            n = len(pending.pop(i))
            try:
                pending[i] = reads[i].send(answers[at : at + n])  # type: ignore[union-attr]
            except StopIteration as done:
                results[i] = done.value
            at += n
    return results


class _Run(Protocol):
    """One connection: the backends' common interface for the queries."""

    def rows_many(self, reads: Sequence[_Read]) -> list[_Rows]:
        """The rows of every read, in order."""
        ...

    def insert_rows(self, query: _Query, rows: Sequence[tuple[object, ...]]) -> None:
        """``query`` (a one-row INSERT) for every row, in one or a few statements."""
        ...


def _drive(run: _Run, reads: Reads[T]) -> T:
    """``reads`` asked on ``run``, round after round."""
    try:
        batch = next(reads)
        while True:
            batch = reads.send(run.rows_many(batch))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _p(i: int) -> Any:
    return bindparam(f"p{i}")


def _pairs(kind: Any, value: Any, n: int) -> Any:
    # OR of (kind, value) pairs, not a row-value IN: SQLite answers the IN form with a full
    # scan (126 ms at 1M labels, measured) but each OR term with the unique index.
    return or_(*((kind == _p(2 * i)) & (value == _p(2 * i + 1)) for i in range(n)))


@functools.lru_cache(maxsize=32)
def _labels_query(n: int) -> _Query:
    return _Query(select(*_LABEL_COLUMNS).where(_pairs(Label.kind, Label.value, n)), 2 * n)


_HISTORY = _Query(
    select(
        UserFingerprint.kind,
        UserFingerprint.value,
        UserFingerprint.successes,
        UserFingerprint.first_seen,
    ).where(UserFingerprint.username == _p(0)),
    1,
)

# A Dovecot hash shared by more hellos than this (a GREASE-free, permutation-free client seen
# with many SNI/ALPN variants) is matched through its most recent ones only.
EQUIVALENT_HELLOS = 32
_D = DovecotHash
_EQUIVALENTS = _Query(
    select(_D.openssl30, _D.openssl32, _D.ja3_hash, _D.ja3n_hash, _D.ja4)
    .where(or_(_D.openssl30 == _p(0), _D.openssl32 == _p(1)))
    .order_by(_D.last_seen.desc())
    # Bound, offset included: SQLite's compiler adds an OFFSET bind to any LIMIT.
    .limit(_p(2))
    .offset(_p(3)),
    4,
)


_A = AuthFailure
# Failure types that count nowhere, and that count on their own network only (see
# ja3svc.policy.facts). NULL: no type given (Dovecot 2.3, rows from before revision 0005).
# The types are SQL literals, not binds: every statement's binds are p0..pN (see _Query).
def _not_of(types: tuple[str, ...]) -> Any:
    quoted = [literal_column("'" + t.replace("'", "''") + "'") for t in types]
    return or_(_A.fail_type.is_(None), _A.fail_type.not_in(quoted))


_COUNTED_ON_NETWORK = _not_of(UNCOUNTED_FAIL_TYPES)
_COUNTED_EVERYWHERE = _not_of(UNCOUNTED_FAIL_TYPES + NETWORK_ONLY_FAIL_TYPES)


@functools.lru_cache(maxsize=32)
def _reputation_query(n: int) -> _Query:
    """Failures with any of ``n`` refs since p(2n), counted per scope for network p(2n+1)."""
    distinct = func.count(func.distinct(_A.username))
    stmt = select(
        distinct,
        func.count(),
        func.count(func.distinct(
            case((and_(_A.network == _p(2 * n + 1), _COUNTED_ON_NETWORK), _A.username))
        )),
        func.count(func.distinct(case((_COUNTED_EVERYWHERE, _A.username)))),
        func.count(func.distinct(case((_COUNTED_EVERYWHERE, _A.network)))),
    ).where(_pairs(_A.kind, _A.value, n), _A.ts >= _p(2 * n))  # fmt: skip
    return _Query(stmt, 2 * n + 2)


@functools.lru_cache(maxsize=32)
def _succeeded_query(n: int) -> _Query:
    """Distinct accounts with a successful login with any of ``n`` refs since p(2n)."""
    stmt = select(func.count(func.distinct(UserFingerprint.username))).where(
        _pairs(UserFingerprint.kind, UserFingerprint.value, n),
        UserFingerprint.last_seen >= _p(2 * n),
    )
    return _Query(stmt, 2 * n + 1)


def _labels(refs: Iterable[Ref]) -> Reads[dict[Ref, tuple[LabelFact, ...]]]:
    wanted = [r for r in set(refs) if r[0] in FINGERPRINT_KINDS]
    if not wanted:
        return {}
    found: dict[Ref, list[LabelFact]] = {r: [] for r in wanted}
    params = [x for ref in wanted for x in ref]
    for kind, value, action, client, category, tarpit, source, conf in (
        yield from _one(_labels_query(len(wanted)), params)
    ):
        found[(kind, value)].append(
            LabelFact(kind, value, action, client or "", category or "", tarpit, source, conf)
        )
    return {r: tuple(v) for r, v in found.items()}


def _history(username: str) -> Reads[UserHistory]:
    rows = yield from _one(_HISTORY, (username,))
    single, recent = dovecot_hash_history(rows)  # type: ignore[arg-type]
    return UserHistory(
        frozenset((r[0], r[1]) for r in rows), sum(r[2] for r in rows), single, recent
    )


def _equivalents(dovecot_hash: str) -> Reads[tuple[Ref, ...]]:
    refs: dict[Ref, None] = {}
    for h30, h32, ja3, ja3n, ja4 in (
        yield from _one(_EQUIVALENTS, (dovecot_hash, dovecot_hash, EQUIVALENT_HELLOS, 0))
    ):
        for ref in (
            ("ja3_dovecot", h30), ("ja3_dovecot", h32), ("ja3", ja3), ("ja3n", ja3n), ("ja4", ja4)
        ):  # fmt: skip
            refs[ref] = None
    refs.pop(("ja3_dovecot", dovecot_hash), None)
    return tuple(refs)


def _reputation(
    refs: Sequence[Ref], network: str, window: int, now: float, min_accounts: int
) -> Reads[Reputation]:
    """The counts of ``Reputation`` for ``refs`` as seen from ``network``. Successful accounts
    are counted only when ``min_accounts`` (the lowest threshold that applies) or more failed
    accounts count everywhere: below that no verdict depends on them, and a popular
    fingerprint's accounts are the longest count of the three."""
    if not refs:
        return Reputation(window_seconds=window, network=network)
    params: list[object] = [x for ref in refs for x in ref]
    params.append(now - window)
    accounts, failures, on_network, counted, networks = (
        yield from _one(_reputation_query(len(refs)), [*params, network])
    )[0]
    succeeded = 0
    if counted and counted >= min_accounts:
        succeeded = (yield from _one(_succeeded_query(len(refs)), params))[0][0]
    return Reputation(
        int(accounts), int(failures), window, network, int(on_network), int(counted),
        int(networks), int(succeeded),
    )  # fmt: skip


# The columns each write fills, in the order of the tuples ``_write`` builds.
_WRITES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "user_fingerprints": (
        UserFingerprint,
        ("username", "kind", "value", "first_seen", "last_seen", "successes"),
    ),
    "auth_failures": (AuthFailure, ("ts", "kind", "value", "username", "network", "fail_type")),
    "decisions": (
        Decision,
        (
            "ts",
            "command",
            "username",
            "remote_ip",
            "remote_port",
            "ja3_hash",
            "status",
            "action",
            "rule",
            "reason",
            "labels",
        ),
    ),
}
# 999 bound parameters is the limit of SQLite builds before 3.32; the widest row has 11. A power
# of two: see _DriverRun.insert_rows.
_ROWS_PER_STATEMENT = 64


@functools.lru_cache(maxsize=8)
def _insert_query(dialect: str, table: str) -> _Query:
    """The one-row INSERT (an upsert for user_fingerprints) of ``table`` for ``dialect``."""
    model, columns = _WRITES[table]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ins = insert(model).values({c: _p(j) for j, c in enumerate(columns)})
    if table == "user_fingerprints":
        # SQLite's max() with two arguments is the scalar GREATEST.
        later = func.max if dialect == "sqlite" else func.greatest
        ins = ins.on_conflict_do_update(
            index_elements=["username", "kind", "value"],
            set_={
                "last_seen": later(UserFingerprint.last_seen, ins.excluded.last_seen),
                "successes": UserFingerprint.successes + ins.excluded.successes,
            },
        )
    return _Query(ins, len(columns))


def _write(
    run: _Run,
    dialect: str,
    merged: dict[tuple[str, str, str], tuple[float, float, int]],
    failures: Sequence[Failure],
    decisions: Sequence[DecisionRecord],
) -> None:
    # Keys are unique within each list (successes are merged): an upsert touching one row
    # twice in a statement fails.
    if merged:
        rows = [(u, k, v, f, la, n) for (u, k, v), (f, la, n) in merged.items()]
        run.insert_rows(_insert_query(dialect, "user_fingerprints"), rows)
    if failures:
        rows = [(ts, k, v, u, net or None, ft or None) for ts, u, (k, v), net, ft in failures]
        run.insert_rows(_insert_query(dialect, "auth_failures"), rows)
    if decisions:
        rows = [_decision_tuple(d) for d in decisions]
        run.insert_rows(_insert_query(dialect, "decisions"), rows)


def _decision_tuple(d: DecisionRecord) -> tuple[object, ...]:
    # In the order of _WRITES["decisions"].
    return (
        d.ts,
        d.command,
        d.username[:320] or None,
        d.remote_ip[:45] or None,
        d.remote_port,
        d.ja3_hash or None,
        d.status,
        d.action,
        d.rule,
        d.reason,
        _labels_json(d.labels) if d.labels else None,
    )


def _labels_json(labels: tuple[LabelFact, ...]) -> str:
    return json.dumps(
        [
            {
                "kind": lb.kind,
                "value": lb.value,
                "action": lb.action,
                "source": lb.source,
                "client_name": lb.client_name,
            }
            for lb in labels
        ]
    )


# --- the two ways of running them -----------------------------------------------------------


class _Backend(Protocol):
    inline: bool
    asynchronous: bool

    def read(self, work: Callable[[_Run], T]) -> T: ...

    async def read_async(self, reads: Reads[T]) -> T: ...

    def write(self, work: Callable[[_Run, str], None], wait: bool) -> None: ...

    async def write_async(self, statements: Sequence[tuple[str, list[object]]]) -> None: ...

    def close(self) -> None: ...


class _CoreRun:
    __slots__ = ("conn",)

    def __init__(self, conn: Connection | Session) -> None:
        self.conn = conn

    def _result(self, query: _Query, params: Sequence[object]) -> Any:
        return self.conn.execute(query.stmt, dict(zip(query.names, params, strict=True)))

    def rows_many(self, reads: Sequence[_Read]) -> list[_Rows]:
        return [self._result(query, params).all() for query, params in reads]

    def insert_rows(self, query: _Query, rows: Sequence[tuple[object, ...]]) -> None:
        # executemany: SQLAlchemy sends it as multi-row VALUES batches ("insertmanyvalues").
        self.conn.execute(query.stmt, [dict(zip(query.names, r, strict=True)) for r in rows])


class _NoAsyncReads:
    asynchronous = False

    async def read_async(self, reads: Reads[T]) -> T:
        raise NotImplementedError("this backend's reads are synchronous (see reads_async)")

    async def write_async(self, statements: Sequence[tuple[str, list[object]]]) -> None:
        raise NotImplementedError("this backend's writes are synchronous (see writes_async)")


class _Inserts:
    """A batch's INSERTs collected as PostgreSQL statements, to be awaited
    (``_PgBackend.write_async``): ``_write`` builds them as it does for a connection."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements: list[tuple[str, list[object]]] = []

    def rows_many(self, reads: Sequence[_Read]) -> list[_Rows]:
        raise NotImplementedError("INSERTs only")

    def insert_rows(self, query: _Query, rows: Sequence[tuple[object, ...]]) -> None:
        self.statements.extend(_values_statements(query, "postgresql", rows))


class _CoreBackend(_NoAsyncReads):
    """SQLAlchemy connections from the engines' pools, one per call."""

    inline = False

    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self._engine = engine
        self._write_engine = write_engine

    def read(self, work: Callable[[_Run], T]) -> T:
        with self._engine.connect() as conn:
            return work(_CoreRun(conn))

    def write(self, work: Callable[[_Run, str], None], wait: bool) -> None:
        with self._write_engine.begin() as conn:
            work(_CoreRun(conn), conn.dialect.name)

    def close(self) -> None:
        pass


class _DriverRun:
    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # a sqlite3 connection or cursor

    def _cursor(self, query: _Query, params: Sequence[object]) -> Any:
        sql, order = query.sqlite()
        return self.conn.execute(sql, params if order is None else [params[i] for i in order])

    def rows_many(self, reads: Sequence[_Read]) -> list[_Rows]:
        return [self._cursor(query, params).fetchall() for query, params in reads]

    def insert_rows(self, query: _Query, rows: Sequence[tuple[object, ...]]) -> None:
        for sql, params in _values_statements(query, "sqlite", rows):
            self.conn.execute(sql, params)


def _values_statements(
    query: _Query, dialect: str, rows: Sequence[tuple[object, ...]]
) -> Iterable[tuple[str, list[object]]]:
    """Multi-row VALUES statements made from the one-row INSERT ``query`` for ``rows``: of
    ``_ROWS_PER_STATEMENT`` rows and then the powers of two the rest is made of, a few shapes
    per table, which the drivers keep prepared (sqlite3's statement cache; psycopg's
    ``prepare_threshold``). One statement per batch size made SQLite parse and plan a new
    statement of up to a thousand parameters for nearly every batch (~3,500 instructions per
    request)."""
    head, tail, width = _values_parts(query, dialect)
    lo, n = 0, len(rows)
    while lo < n:
        size = min(_ROWS_PER_STATEMENT, 1 << ((n - lo).bit_length() - 1))
        yield (
            _values_sql(head, tail, size, width, dialect),
            list(chain.from_iterable(rows[lo : lo + size])),
        )
        lo += size


def _placeholders(dialect: str, first: int, width: int) -> str:
    """``width`` placeholders, numbered from ``first`` (0-based) where the dialect numbers."""
    if dialect == "sqlite":
        return ", ".join("?" * width)
    return ", ".join(f"${i}" for i in range(first + 1, first + width + 1))


@functools.lru_cache(maxsize=16)
def _values_parts(query: _Query, dialect: str) -> tuple[str, str, int]:
    """(text before the VALUES group, text after it, columns) of a one-row INSERT."""
    sql, order = query.text(dialect)
    width = len(query.names)
    group = "VALUES (" + _placeholders(dialect, 0, width) + ")"
    head, found, tail = sql.partition(group)
    if not found or order is not None:
        raise AssertionError(f"not a one-row INSERT in column order: {sql}")
    return head + "VALUES ", tail, width


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, tail: str, rows: int, width: int, dialect: str) -> str:
    groups = ["(" + _placeholders(dialect, r * width, width) + ")" for r in range(rows)]
    return head + ", ".join(groups) + tail


class _DriverBackend(_NoAsyncReads):
    """A SQLite file: the statements' SQLite text as plain driver calls on one connection per
    thread.

    A file SQLite database answers the verdict path's three indexed reads in ~20 us each
    through the driver, while SQLAlchemy spent ~0.8 ms per allow building, caching and
    compiling the statements and checking a connection out of the pool (profiled: 31% of the
    service's samples). The connections come from the engine's pool (so they get its PRAGMAs
    and autocommit mode, see store.database) and are kept checked out: each statement is its
    own read transaction on a WAL snapshot, so a held connection still sees every commit and
    never blocks a writer.

    Writes matter as much as reads. They ran in a writer thread that competed with the event
    loop for the GIL: each time the loop released it for a syscall, a busy writer kept it for up
    to the switch interval (5 ms). SQLAlchemy's per-row parameter processing kept that thread
    busy long enough to show as 16% of samples in the loop's socket writes, so rows are bound by
    the driver; and not through ``executemany``, which releases and retakes the GIL around every
    row's ``sqlite3_step`` (a few hundred hand-offs per batch; measured: peak 4,600 req/s with
    no writes, 3,300 with them). Multi-row ``VALUES`` statements make that a handful. The event
    loop now writes SQLite batches itself (api.writer), with ``wait=False``.
    """

    inline = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _conn(self) -> Any:
        """The driver's connection of this thread (its pool wrapper is kept in ``_all``)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            fairy = self._engine.raw_connection()
            conn = fairy.dbapi_connection
            self._local.conn = conn
            self._local.fairy = fairy
            with self._lock:
                self._all.append(fairy)
        return conn

    def _drop(self) -> None:
        # After an error the connection may be unusable (file gone, disk I/O error): reopen.
        fairy = getattr(self._local, "fairy", None)
        self._local.conn = self._local.fairy = None
        if fairy is not None:
            with self._lock:
                if fairy in self._all:
                    self._all.remove(fairy)
            try:
                fairy.invalidate()
            except Exception:  # already broken; nothing more to release
                pass

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing at shutdown: nothing to do about a failure
                pass

    def read(self, work: Callable[[_Run], T]) -> T:
        try:
            # Connection.execute: a cursor per statement, made in C (cheaper than one kept
            # through the pool's wrapper). One read transaction for the reads of one call: one
            # WAL snapshot, and its shared-memory locks are taken once instead of per statement.
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                return work(_DriverRun(conn))
            finally:
                conn.execute("COMMIT")
        except Exception:
            self._drop()
            raise

    def write(self, work: Callable[[_Run, str], None], wait: bool) -> None:
        try:
            conn = self._conn()
            cur = conn.cursor()
            try:
                # IMMEDIATE: take the write lock up front (see store.database); the busy timeout
                # then queues us behind a capture's batch instead of failing. Without waiting
                # (the event loop's own writes): no busy timeout, and no automatic checkpoint
                # on COMMIT, which would copy pages and fsync on the loop.
                if wait:
                    cur.execute("BEGIN IMMEDIATE")
                else:
                    cur.execute("PRAGMA wal_autocheckpoint=0")
                    cur.execute("PRAGMA busy_timeout=0")
                    try:
                        cur.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        raise StoreBusy(str(exc)) from exc
                    finally:
                        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
                try:
                    work(_DriverRun(cur), "sqlite")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                cur.close()
        except StoreBusy:
            raise  # nothing wrong with the connection; the caller retries
        except Exception:
            self._drop()
            raise


def _pg_args(reads: Sequence[_Read]) -> list[tuple[str, Sequence[object]]]:
    out = []
    for query, params in reads:
        sql, order = query.postgresql()
        out.append((sql, params if order is None else [params[i] for i in order]))
    return out


def _renumbered(stmt: Any, offset: int) -> Any:
    """``stmt`` with its binds ``p<i>`` renamed ``p<i + offset>``."""

    def rename(element: Any, **kw: Any) -> Any:
        if isinstance(element, BindParameter):
            return bindparam(f"p{int(element.key[1:]) + offset}")
        return None

    opts: dict[str, Any] = {}
    return replacement_traverse(stmt, opts, rename)


@functools.lru_cache(maxsize=256)
def _together_query(queries: tuple[_Query, ...]) -> _Query:
    """One statement asking all of ``queries`` (with their parameters one after the other):
    a single row whose column i holds query i's rows as a JSON array of arrays (NULL for no
    rows). Built from the queries' own Core statements, so each query still exists once; the
    few shapes an allow makes are kept (and prepared by psycopg once the server has seen them
    a few times)."""
    columns = []
    offset = 0
    for query in queries:
        sub = _renumbered(query.stmt, offset).subquery()
        # json_agg keeps the order of its input, the subquery's ORDER BY (the equivalents').
        rows = select(func.json_agg(func.json_build_array(*sub.c))).select_from(sub)
        columns.append(rows.scalar_subquery())
        offset += len(query.names)
    return _Query(select(*columns), offset)


async def _drive_async(conn: Any, reads: Reads[T]) -> T:
    """``reads`` asked on the psycopg AsyncConnection ``conn``, each round in one statement.

    What psycopg costs in Python per statement (sending, preparing, describing, fetching) was
    most of an allow's CPU on the event loop, the resource one worker runs out of: the four
    reads of an allow that misses the caches are asked as one statement (``_together_query``;
    their rows come back as JSON, parsed by the driver in C). Not in psycopg's pipeline mode
    either: profiled under the soak at 1,500 req/s (py-spy, GIL samples of the event loop), the
    reads took 59% of the samples in pipeline mode (34% in psycopg's pipeline communication
    alone) and 23% one statement at a time."""
    try:
        batch = next(reads)
        while True:
            if len(batch) == 1:
                ((sql, params),) = _pg_args(batch)
                rows = [await (await conn.execute(sql, params)).fetchall()]
            else:
                query = _together_query(tuple([q for q, _ in batch]))
                ((sql, params),) = _pg_args([(query, [x for _, p in batch for x in p])])
                row = await (await conn.execute(sql, params)).fetchone()
                rows = [found or [] for found in row]
            batch = reads.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class _PgBackend:
    """PostgreSQL through the driver (psycopg), with the statements' PostgreSQL text.

    Profiled at 2,000 req/s through SQLAlchemy connections in a pool of query threads, an
    allow cost ten round trips (the pool's pre-ping, BEGIN, each read, and the ROLLBACK that
    returned the connection, twice: Dovecot's equivalents, then the facts); the threads spent
    58% of their samples waiting for those answers and the service saturated at ~800 req/s.
    With the driver in those threads instead, the hop itself (submitting to the pool, chaining
    the futures back, the GIL hand-offs) was the largest cost left on the event loop.

    So the verdict path's reads run on the event loop (``read_async``): a few psycopg
    AsyncConnections in autocommit mode (no BEGIN, no ROLLBACK, no ping: a connection that
    failed is closed, with the idle ones, and the next read opens another), everything one
    allow needs asked in one statement on one connection (``_together``, made one statement
    by ``_together_query``; not in pipeline mode: see ``_drive_async``), statements the server
    has seen a few times prepared (psycopg's ``prepare_threshold``). Each round is one
    snapshot; rounds are separate ones: the facts only grow, and reading them milliseconds
    apart changes no verdict. The service
    bounds every read with its deadline; a read cut off by it closes its connection.

    The writer's batches (``write_async``) are one transaction of multi-row INSERTs, awaited on
    the event loop as well, on an AsyncConnection of their own (a batch never makes a verdict's
    read wait for a connection). They were written by a thread: profiled at 2,000 req/s
    (py-spy), that thread held 19% of the samples, and 38% of the event loop's were at its
    socket writes (``transport.write``, psycopg's ``send_query_prepared``) waiting to take the
    GIL back from it, up to the 5 ms switch interval each time. Reads and writes outside the
    service (admin, scripts: ``read``, ``write``) go through SQLAlchemy, as every other admin
    query does.
    """

    inline = False
    asynchronous = True
    POOL = 4  # connections for the verdict path's reads: PostgreSQL pools are small

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams.pop("context", None)  # SQLAlchemy's adapters: the driver's own are enough here
        self._params = {"connect_timeout": PG_CONNECT_TIMEOUT_S, **cparams, "autocommit": True}
        self._cargs = cargs
        # The event loop's connections: idle ones, and a slot per connection in use or idle.
        self._idle: list[Any] = []
        self._slots: asyncio.Semaphore | None = None
        # The writer's connection, and the loop it was opened on (a writer started outside the
        # service, in scripts and tests, runs on loops of its own).
        self._writer: Any = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None

    # --- the verdict path's reads, on the event loop ---

    async def read_async(self, reads: Reads[T]) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.POOL)
        async with self._slots:
            if self._idle:
                conn = self._idle.pop()
            else:
                conn = await psycopg.AsyncConnection.connect(
                    *self._cargs, **self._params, cursor_factory=psycopg.AsyncRawCursor
                )
            done = False
            try:
                result = await _drive_async(conn, reads)
                done = True
                return result
            finally:
                if done:
                    self._idle.append(conn)
                else:
                    # Failed or cut off by the deadline: the connection's state is unknown. The
                    # idle ones most likely share the fate of a lost server: close them too.
                    _close_async(conn)
                    idle, self._idle = self._idle, []
                    for other in idle:
                        _close_async(other)

    # --- reads off the verdict path ---

    def read(self, work: Callable[[_Run], T]) -> T:
        with self._engine.connect() as conn:
            return work(_CoreRun(conn))

    def write(self, work: Callable[[_Run, str], None], wait: bool) -> None:
        with self._engine.begin() as conn:
            work(_CoreRun(conn), "postgresql")

    # --- the writer's batches, on the event loop ---

    async def write_async(self, statements: Sequence[tuple[str, list[object]]]) -> None:
        loop = asyncio.get_running_loop()
        conn = self._writer
        if conn is not None and (self._writer_loop is not loop or conn.closed):
            _close_async(conn)
            conn = self._writer = None
        if conn is None:
            conn = await psycopg.AsyncConnection.connect(
                *self._cargs, **self._params, cursor_factory=psycopg.AsyncRawCursor
            )
            self._writer, self._writer_loop = conn, loop
        try:
            async with conn.transaction():
                for sql, params in statements:
                    await conn.execute(sql, params)
        except BaseException as exc:
            # A row the server refused leaves the connection idle and usable; a lost server, or
            # a write cut off half-way (cancelled), does not: open another next time.
            healthy = (
                isinstance(exc, Exception)
                and not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
                and not conn.closed
                and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            )
            if not healthy:
                _close_async(conn)
                self._writer = None
            raise

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _close_async(conn)
        if self._writer is not None:
            _close_async(self._writer)
            self._writer = None


def _close_async(conn: Any) -> None:
    """Close a psycopg AsyncConnection without awaiting (its ``close`` never suspends either:
    it finishes the libpq connection, which is what this does)."""
    try:
        conn.pgconn.finish()
    except Exception:  # already broken; nothing more to release
        pass


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with the value in canonical form; InvalidLabel (a ValueError: the admin API's
    422 with the reason) for what ``check_label`` refuses, before the database sees it."""
    value = check_label(
        fields.get("kind"),  # type: ignore[arg-type]
        fields.get("value") or "",
        action=fields.get("action"),
        client_name=fields.get("client_name"),
        category=fields.get("category"),
        source=fields.get("source"),
        confidence=fields.get("confidence"),
        tarpit_seconds=fields.get("tarpit_seconds"),
    )
    return {**fields, "value": value}

"""Driver connections without SQLAlchemy, for the sighting writer and `ja3svc pcap --store`.

The writer runs its own SQL on one connection, so SQLAlchemy's engine, pool and ORM give it
nothing, and importing them (0.2 s) costs more than the whole `pcap --store` of a small
capture, and about half of the 1.5x budget of a large one. So the writer talks to the driver
(Python's sqlite3, psycopg) directly, as the policy service's hot path already does. The
connection set-up is this module's, and ``Database``'s engine uses the same
(``sqlite_setup``, the timeouts), so both see a database the same way.

A ``Target`` is read from a URL string here (``Target.parse``) or from SQLAlchemy's parsed URL
(``Target.of_engine``) when a ``Database`` is already open.
"""

from __future__ import annotations

import ast
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ja3svc import migrations

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# A writer waiting for another process's SQLite write lock: long enough to ride out a large
# batch or a migration, short enough that a wedged process is noticed.
SQLITE_BUSY_TIMEOUT_S = 30
# Bytes the WAL file is cut back to after a checkpoint (see sqlite_setup).
SQLITE_JOURNAL_SIZE_LIMIT = 64 << 20
# The sighting writer's connection folds the WAL into the database every this many pages
# (16 MB of 4 KiB pages) instead of SQLite's 1,000: a capture's batches rewrite the same index
# pages, which every checkpoint copied again. Measured on the benchmark capture (alternating
# runs, median): 1,000 pages 0.88 s, 4,096 0.84 s, and no better above, where the checkpoint
# left for the connection's close grows (0.1 s at 64 MB). The policy service checkpoints on
# its own schedule (PolicyStore.checkpoint).
SQLITE_WRITER_CHECKPOINT_PAGES = 4096
# An unreachable PostgreSQL must not stall a capture for minutes: fail fast and spool.
PG_CONNECT_TIMEOUT_S = 5
VERSION_TABLE = "alembic_version"  # Alembic's default; migrations/env.py keeps it

_PG_SCHEME = "postgresql+psycopg://"  # what normalize_url makes of every PostgreSQL spelling
_SQLITE_SCHEMES = ("sqlite+pysqlite:///", "sqlite:///")


def normalize_url(url: str) -> str:
    """Accept the URL spellings people paste and pick the driver we ship (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_setup(conn: sqlite3.Connection) -> None:
    """What every SQLite connection of ours sets (the writer's, and ``Database``'s engine's)."""
    conn.isolation_level = None  # transactions are begun explicitly (BEGIN IMMEDIATE to write)
    # WAL: readers (the policy service) never block on the capture's writes.
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only a power loss can lose the
    # last commits, which a re-run of the capture restores idempotently.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    # After a checkpoint that resets the WAL, SQLite truncates the file to this size: without it
    # the WAL keeps the largest size it ever reached (2.33 GB after 10 minutes of load).
    conn.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}")
    # The sighting writer's staging table and the sorts of its aggregates: in memory, not in a
    # temporary file (a batch is a few MB).
    conn.execute("PRAGMA temp_store=MEMORY")


@dataclass(frozen=True)
class Target:
    """Where a driver connection goes: a SQLite file or a PostgreSQL server."""

    backend: str  # "sqlite" or "postgresql"
    display: str  # for messages: the URL without its password
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def pg(self) -> bool:
        return self.backend == "postgresql"

    @classmethod
    def parse(cls, url: str) -> Target | None:
        """The target of the common URLs, read without SQLAlchemy: a SQLite file
        (``sqlite:///PATH``, no query string) or PostgreSQL (``postgres[ql][+psycopg]://``, which
        libpq reads itself). None for anything else: SQLAlchemy's parser then decides."""
        url = normalize_url(url)
        for scheme in _SQLITE_SCHEMES:
            if url.startswith(scheme):
                path = url[len(scheme) :]
                if not path or "?" in path or path == ":memory:":
                    return None
                return cls("sqlite", url, (unquote(path),))
        if not url.startswith(_PG_SCHEME):
            return None
        rest = url[len(_PG_SCHEME) :]
        userinfo, _, hostpart = rest.rpartition("@")
        shown = f"{userinfo.partition(':')[0]}:***@{hostpart}" if ":" in userinfo else rest
        return cls("postgresql", _PG_SCHEME + shown, ("postgresql://" + rest,))

    @classmethod
    def of_engine(cls, engine: Engine) -> Target:
        """The target of an open engine (any URL SQLAlchemy reads; its dialect is SQLite or
        PostgreSQL: ``create_engine_for`` refuses the others)."""
        backend = engine.dialect.name
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        display = engine.url.render_as_string(hide_password=True)
        if backend == "sqlite":
            database = engine.url.database
            if not database or database == ":memory:":
                raise ValueError("sightings cannot be stored in an in-memory SQLite database")
            return cls("sqlite", display, (database,))
        kwargs.pop("context", None)  # SQLAlchemy's adapters: the driver's own are enough here
        return cls("postgresql", display, tuple(args), dict(kwargs))

    def connect(self) -> Any:
        """A new driver connection for the sighting writer, set up as ours are (transactions
        begun explicitly)."""
        if not self.pg:
            conn = sqlite3.connect(
                self.args[0], timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
            )
            try:
                sqlite_setup(conn)
                conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WRITER_CHECKPOINT_PAGES}")
            except BaseException:
                conn.close()
                raise
            return conn
        import psycopg

        return psycopg.connect(
            *self.args, **{"connect_timeout": PG_CONNECT_TIMEOUT_S, **self.kwargs}
        )

    def errors(self) -> tuple[type[Exception], tuple[type[Exception], ...]]:
        """(any error of the driver, the errors that mean "the database is not there now":
        on PostgreSQL InterfaceError too, "the connection is closed")."""
        if not self.pg:
            return sqlite3.Error, (sqlite3.OperationalError,)
        import psycopg

        return psycopg.Error, (psycopg.OperationalError, psycopg.InterfaceError)


def schema_revision(conn: Any, pg: bool) -> str | None:
    """The revision stamped in the database (None for an empty one), read through a driver
    connection (in the caller's transaction, if any)."""
    cur = conn.cursor()
    try:
        if pg:
            cur.execute(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL")
        else:
            cur.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                (VERSION_TABLE,),
            )
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")
        rows = [r[0] for r in cur.fetchall()]
    finally:
        cur.close()
    if len(rows) > 1:
        raise RuntimeError(f"the database is at several revisions: {sorted(rows)}")
    return rows[0] if rows else None


# --- the migrations' head, without Alembic -------------------------------------------------
#
# Importing Alembic takes longer (0.15-0.25 s) than a `pcap --store` of a small capture, which
# only needs to know that the schema is at the head. So the head is read from the scripts'
# ``revision`` and ``down_revision`` assignments; tests/test_migrations.py checks that this
# agrees with Alembic's own answer.


def script_location() -> Path:
    # The package directory itself (env.py, script.py.mako, versions/), found through the
    # imported package so that a non-editable install finds its installed copy. __path__
    # rather than __file__: an editable install made before the package had an __init__.py
    # presents it as a namespace package, whose __file__ is None.
    for entry in migrations.__path__:
        if (Path(entry) / "env.py").is_file():
            return Path(entry).resolve()
    raise RuntimeError(f"Alembic scripts not found in {list(migrations.__path__)}")


def _assigned(path: Path) -> dict[str, object]:
    """The module-level ``revision`` and ``down_revision`` of a migration script."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            value = node.value  # type: ignore[attr-defined]  # an Assign or AnnAssign here
            found[target.id] = ast.literal_eval(value) if value is not None else None
    return found


def head_revision() -> str | None:
    """The one revision no script names as its ``down_revision`` (None without scripts)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (script_location() / "versions").glob("*.py"):
        found = _assigned(path)
        if isinstance(found.get("revision"), str):
            revisions.add(str(found["revision"]))
            down = found.get("down_revision")
            parents.update([down] if isinstance(down, str) else down or ())  # type: ignore[arg-type]
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"the migration scripts have several heads: {sorted(heads)}")
    return next(iter(heads), None)

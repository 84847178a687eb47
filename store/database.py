"""The database handle every process shares: engine and sessions built from the settings.

``Database.from_settings(settings)`` is the one way in. With the default settings it opens (and
creates, and migrates to head) the SQLite file ``ja3svc.sqlite3`` in the per-user data directory,
so a single mail host has nothing to set up. A PostgreSQL URL is used as given and is only
checked, not migrated, unless ``store.auto_upgrade`` says so: several sensors and API replicas
share it, and one explicit ``ja3svc db upgrade`` is the safe way to change a shared schema.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ja3svc.store import migrate
from ja3svc.store.dbapi import (
    PG_CONNECT_TIMEOUT_S,
    SQLITE_BUSY_TIMEOUT_S,
    SQLITE_JOURNAL_SIZE_LIMIT,
    normalize_url,
    sqlite_setup,
)
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:  # only annotations: `pcap --store` unconfigured does not load pydantic
    from ja3svc.config.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "PG_CONNECT_TIMEOUT_S", "SQLITE_BUSY_TIMEOUT_S", "SQLITE_JOURNAL_SIZE_LIMIT", "Database",
    "DatabaseUnavailable", "SchemaOutOfDate", "create_engine_for", "normalize_url", "sqlite_file",
]  # fmt: skip


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached (or answered with an error to a trivial query)."""


class SchemaOutOfDate(RuntimeError):
    """The schema is not at the migrations' head and automatic upgrade is off."""


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory SQLite database or another backend.

    The one test of "a local SQLite file" (the store's driver path, the service's inline
    queries and writes, the migration lock, the files handed to a capture's user)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """Engine with the per-dialect settings the store relies on (see comments inside)."""
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            # An in-memory database lives and dies with its one connection.
            kwargs.setdefault("poolclass", StaticPool)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _install_sqlite_transactions(engine)
        return engine
    if backend == "postgresql":
        # pre_ping: after a server restart the pooled connections are dead; test before use
        # instead of failing the first batch after every outage.
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
            **kwargs,
        )
    # Refused here, with the reason, rather than as a missing driver module's traceback.
    raise ArgumentError(f"ja3svc stores its data in SQLite or PostgreSQL, not {backend}")


def _install_sqlite_transactions(engine: Engine) -> None:
    """Real transactions on SQLite, and ``BEGIN IMMEDIATE`` where a transaction will write.

    Python's sqlite3 driver starts transactions lazily and never for DDL; we take over so that
    migrations are atomic. A deferred transaction that reads and then writes fails at once with
    SQLITE_BUSY when another process committed in between (WAL snapshots), whatever the busy
    timeout; writers therefore ask for ``sqlite_immediate`` and queue on the write lock instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        sqlite_setup(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus a session factory; cheap to pass around, one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Engine whose transactions take SQLite's write lock up front (no-op elsewhere).
        self.write_engine = engine.execution_options(sqlite_immediate=True)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @classmethod
    def from_settings(cls, settings: Settings, *, upgrade: bool | None = None) -> Database:
        """Open the configured database, migrating it first where that is safe (see module doc).

        ``upgrade`` overrides ``settings.store.auto_upgrade``; None there means "SQLite only".
        """
        return cls.from_url(
            settings.resolved_database_url(),
            upgrade=settings.store.auto_upgrade if upgrade is None else upgrade,
        )

    @classmethod
    def from_url(cls, url: str, *, upgrade: bool | None = None) -> Database:
        db = cls(create_engine_for(url))
        if upgrade is None:
            upgrade = db.dialect == "sqlite"
        if upgrade:
            db.upgrade_on_first_use()
        return db

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session committed on success and rolled back on error.

        ``write=True`` on SQLite takes the write lock at BEGIN (see _install_sqlite_transactions);
        use it for transactions that read and then write.
        """
        factory = self._write_sessions if write else self._sessions
        with factory() as session, session.begin():
            yield session

    def check(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise DatabaseUnavailable(f"database {self.url} unreachable: {exc.orig}") from exc

    def current_revision(self) -> str | None:
        return migrate.current_revision(self.engine)

    def is_at_head(self) -> bool:
        return self.current_revision() == migrate.head_revision()

    def require_head(self) -> None:
        """Raise SchemaOutOfDate with the command that fixes it."""
        current, head = self.current_revision(), migrate.head_revision()
        if current != head:
            raise SchemaOutOfDate(
                f"database {self.url} is at revision {current or 'none (empty)'}, "
                f"the code needs {head}: run `ja3svc db upgrade`"
            )

    def upgrade(self, revision: str = "head") -> None:
        migrate.upgrade(self.write_engine, revision)

    def downgrade(self, revision: str) -> None:
        migrate.downgrade(self.write_engine, revision)

    def upgrade_on_first_use(self) -> None:
        """Migrate to head unless already there; safe when several processes start at once."""
        if self.is_at_head():
            return
        path = sqlite_file(self.engine.url)
        if path is None:
            self.upgrade()
            return
        # Alembic reads the current revision before its transaction starts, so two processes
        # starting on a fresh file could both try to create the tables: serialise them.
        with open(path.with_name(path.name + ".migrate-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_at_head():
                log.info("migrating %s to %s", path, migrate.head_revision())
                self.upgrade()

    def dispose(self) -> None:
        self.engine.dispose()

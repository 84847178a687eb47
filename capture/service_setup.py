"""Start-up steps shared by ``ja3svc capture`` and ``ja3svc serve --capture``.

Both open the capture sockets while privileged, then need the same sequence before the first
packet is parsed: open the database (and the sighting writer) while the interpreter's own files
are certainly readable, hand the files the worker will write to the unprivileged user, drop to
that user, and check that the spool is still writable. Keeping the sequence in one place keeps
the two deployments' privilege handling identical.

Every failure is raised as ``SetupError`` (or ``PrivilegeError``) with a one-line message, so the
commands can print it and exit 1 without a traceback.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ja3svc.capture.privileges import PrivilegeError, ProcessIdentity, drop_privileges

if TYPE_CHECKING:
    from ja3svc.capture.live_source import LiveSource
    from ja3svc.capture.worker import CaptureWorker
    from ja3svc.config.settings import Settings
    from ja3svc.store.database import Database

__all__ = [
    "PreparedCapture",
    "SetupError",
    "check_writable",
    "hand_over_files",
    "open_database",
    "prepare_capture",
]

log = logging.getLogger("ja3svc.capture")


class SetupError(RuntimeError):
    """The database or the spool is unusable; the message is one line for stderr."""


@dataclass
class PreparedCapture:
    database: Database
    worker: CaptureWorker
    identity: ProcessIdentity


def prepare_capture(
    settings: Settings,
    source: LiveSource,
    user: str | None,
    *,
    sensor: str | None = None,
    before_drop: Callable[[Database, CaptureWorker], None] | None = None,
) -> PreparedCapture:
    """Database, worker, file hand-over and privilege drop, in that order (see module doc).

    ``before_drop(database, worker)`` runs just before the drop: whatever it builds can still
    import modules from places only the starting user can read (a Python under /root, where
    the unprivileged user cannot follow). ``source`` must already be open. On failure the
    source is left open: the caller owns it.
    """
    from ja3svc.capture.live_engine import EngineUnavailable
    from ja3svc.capture.worker import CaptureWorker

    # Database and writer first: SQLAlchemy loads the dialect and driver modules on the first
    # connection, and the writer replays leftover spool files. The pooled connection stays
    # usable after the drop.
    database = open_database(settings)
    try:
        try:
            worker = CaptureWorker.from_settings(settings, source, database, sensor=sensor)
        except EngineUnavailable as exc:
            raise SetupError(str(exc)) from None
        if user and os.geteuid() == 0:
            hand_over_files(settings, database, user)
        if before_drop is not None:
            before_drop(database, worker)
        identity = drop_privileges(user)
        check_writable(settings.resolved_spool_dir())
    except BaseException:
        database.dispose()
        raise
    return PreparedCapture(database, worker, identity)


def check_writable(directory: Path) -> None:
    """Fail at start, not at the first database outage, if the spool cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SetupError(
            f"spool directory {directory} not writable as uid {os.getuid()}: "
            f"{exc.strerror} (set JA3SVC_DATA_DIR or store.spool_dir to a directory this "
            "user can write, e.g. systemd's StateDirectory)"
        ) from None


def hand_over_files(settings: Settings, database: Database, user: str) -> None:
    """Give ``user`` the files it will write: the spool and a SQLite database (with -wal/-shm).

    Only the spool directory and the SQLite file with its directory are changed; PostgreSQL
    needs nothing here.
    """
    from ja3svc.store.database import sqlite_file

    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise PrivilegeError(f"no such user: {user}") from None
    paths: list[Path] = []
    spool = settings.resolved_spool_dir()
    spool.mkdir(parents=True, exist_ok=True)
    paths.append(spool)
    paths.extend(spool.iterdir())
    path = sqlite_file(database.engine.url)
    if path is not None:
        paths.append(path.parent)
        for suffix in ("", "-wal", "-shm", ".migrate-lock"):
            candidate = path.with_name(path.name + suffix)
            if candidate.exists():
                paths.append(candidate)
    for path in paths:
        try:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        except OSError as exc:
            raise PrivilegeError(f"cannot give {path} to {user}: {exc.strerror}") from None


def open_database(settings: Any) -> Database:
    """The configured database, checked and at the migrations' head; errors as one-liners."""
    from ja3svc.store.database import Database, DatabaseUnavailable, SchemaOutOfDate
    from ja3svc.store.dbapi import Target
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        db = Database.from_settings(settings)
        try:
            Target.of_engine(db.engine)  # where the sighting writer can connect (not in memory)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        try:
            db.check()
        except DatabaseUnavailable as exc:
            if db.dialect == "sqlite":
                raise
            # A network database that is down (restarting, not yet up at boot): capture
            # anyway. The writer spools every batch it cannot store and replays the spool once
            # the database answers, as it does for an outage that starts later.
            log.warning(
                "database unreachable at start: capturing, batches go to the spool",
                extra={"fields": {"error": str(exc).splitlines()[0][:300]}},
            )
            return db
        db.require_head()
        return db
    except (DatabaseUnavailable, SchemaOutOfDate, ArgumentError) as exc:
        raise SetupError(str(exc)) from None
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise SetupError(f"database error: {first}") from None
    except OSError as exc:
        raise SetupError(
            f"cannot open the database: {exc.filename or ''} {exc.strerror or exc} "
            "(with --user, the data directory must be writable by that user, or use "
            "--database-url)"
        ) from None

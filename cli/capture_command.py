"""``ja3svc capture --interface IFACE ...``: fingerprint live traffic into the database.

Order of operations, and why:
1. settings, then the capture sockets (needs root or CAP_NET_RAW);
2. the database and the writer, still privileged (modules load, the first connection opens);
   started as root with ``--user``, the spool and a SQLite file are handed to that user;
3. drop to ``--user`` and clear every capability, before any packet is parsed;
4. capture until SIGINT/SIGTERM, then flush what is queued and exit 0.
A missing interface, a missing privilege, a bad filter or an unusable database is one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from cli.main import EXIT_OK, EXIT_USAGE

log = logging.getLogger("ja3svc.capture")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "capture",
        help="fingerprint live traffic on network interfaces and store the sightings",
        description="Capture the client side of TLS and STARTTLS connections on one or more "
        "interfaces (AF_PACKET; needs root or CAP_NET_RAW to start), fingerprint every "
        "ClientHello and store it in the fingerprint database, in batches, until SIGINT/SIGTERM.",
    )
    p.add_argument(
        "-i", "--interface", action="append", dest="interfaces", metavar="IFACE",
        help="interface to capture on; repeat for several (default: capture.interfaces)",
    )  # fmt: skip
    p.add_argument(
        "-f", "--filter", dest="bpf_filter", metavar="BPF",
        help="libpcap filter replacing the default (TCP to the capture.ports, client side)",
    )  # fmt: skip
    p.add_argument(
        "-u", "--user", metavar="USER",
        help="unprivileged user to switch to once the sockets are open (default: capture.user)",
    )  # fmt: skip
    p.add_argument("--sensor", metavar="NAME", help="sensor name stored with each sighting")
    p.add_argument(
        "--database-url", metavar="URL",
        help="database URL (default: settings, else the SQLite file in the data directory)",
    )  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="TOML settings file (else $JA3SVC_CONFIG)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"ja3svc capture: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from api.logs import configure
    from capture.live_source import CaptureOpenError
    from capture.privileges import PrivilegeError, drop_privileges
    from capture.worker import CaptureWorker, open_source
    from ja3svc.settings import load_settings

    configure(args.log_level)
    overrides = {"database_url": args.database_url} if args.database_url else {}
    try:
        settings = load_settings(args.config, **overrides)
    except (OSError, ValueError, ValidationError) as exc:
        return _fail(f"bad settings: {exc}")
    interfaces = args.interfaces or settings.capture.interfaces
    if not interfaces:
        return _fail("no interface: give --interface IFACE (or set capture.interfaces)")
    try:
        source = open_source(settings.capture, interfaces, args.bpf_filter)
    except (CaptureOpenError, ValueError) as exc:
        return _fail(str(exc))
    user = args.user or settings.capture.user or None
    try:
        # Database and writer first, while the interpreter's own files are certainly
        # readable: SQLAlchemy loads the dialect and driver modules on the first connection,
        # and the writer replays leftover spool files. The pooled connection stays usable.
        database = _open_database(settings)
        worker = CaptureWorker.from_settings(settings, source, database, sensor=args.sensor)
        if user and os.geteuid() == 0:
            _hand_over_files(settings, database, user)
        identity = drop_privileges(user)
        _check_writable(settings.resolved_spool_dir())
    except (PrivilegeError, _DatabaseError) as exc:
        source.close()
        return _fail(str(exc))

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
        worker.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    log.info(
        "capture started",
        extra={
            "fields": {
                "interfaces": source.interfaces,
                "filter": source.bpf_filter,
                "snaplen": source.snaplen,
                "modes": source.modes,
                "uid": identity.uid,
                "gid": identity.gid,
                "database": database.url,
                "sensor": worker.writer.sensor if worker.writer else None,
            }
        },
    )
    try:
        worker.run()
    except CaptureOpenError as exc:  # the interface went away while capturing
        return _fail(str(exc))
    finally:
        database.dispose()
    return EXIT_OK


class _DatabaseError(RuntimeError):
    pass


def _check_writable(directory: Path) -> None:
    """Fail at start, not at the first database outage, if the spool cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise _DatabaseError(
            f"spool directory {directory} not writable as uid {os.getuid()}: "
            f"{exc.strerror} (set JA3SVC_DATA_DIR or store.spool_dir to a directory this "
            "user can write, e.g. systemd's StateDirectory)"
        ) from None


def _hand_over_files(settings: Any, database: Any, user: str) -> None:
    """Give ``user`` the files it will write: the spool and a SQLite database (with -wal/-shm).

    Only the spool directory and the SQLite file with its directory are changed; PostgreSQL
    needs nothing here.
    """
    from capture.privileges import PrivilegeError

    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise PrivilegeError(f"no such user: {user}") from None
    paths: list[Path] = []
    spool = settings.resolved_spool_dir()
    spool.mkdir(parents=True, exist_ok=True)
    paths.append(spool)
    paths.extend(spool.iterdir())
    db_file = database.engine.url.database if database.dialect == "sqlite" else None
    if db_file and db_file != ":memory:":
        path = Path(db_file)
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


def _open_database(settings: Any) -> Any:
    """The database as the unprivileged user, with the store's errors made one-liners."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from store.database import Database, DatabaseUnavailable, SchemaOutOfDate

    try:
        db = Database.from_settings(settings)
        db.check()
        db.require_head()
        return db
    except (DatabaseUnavailable, SchemaOutOfDate, ArgumentError) as exc:
        raise _DatabaseError(str(exc)) from None
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise _DatabaseError(f"database error: {first}") from None
    except OSError as exc:
        raise _DatabaseError(
            f"cannot open the database: {exc.filename or ''} {exc.strerror or exc} "
            "(with --user, the data directory must be writable by that user, or use "
            "--database-url)"
        ) from None

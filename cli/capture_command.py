"""``ja3svc capture --interface IFACE ...``: fingerprint live traffic into the database.

Order of operations, and why:
1. settings, then the capture sockets (needs root or CAP_NET_RAW);
2. drop to ``--user`` and clear every capability, before any packet is parsed;
3. open the database as that user (a SQLite file and the spool are then owned by it);
4. capture until SIGINT/SIGTERM, then flush what is queued and exit 0.
A missing interface, a missing privilege, a bad filter or an unusable database is one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
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
    try:
        identity = drop_privileges(args.user or settings.capture.user or None)
        database = _open_database(settings)
        worker = CaptureWorker.from_settings(settings, source, database, sensor=args.sensor)
    except PrivilegeError as exc:
        source.close()
        return _fail(str(exc))
    except _DatabaseError as exc:
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

"""``ja3svc capture --interface IFACE ...``: fingerprint live traffic into the database.

Order of operations, and why:
1. settings, then the capture sockets (needs root or CAP_NET_RAW);
2. the database and the writer, still privileged (modules load, the first connection opens);
   started as root with ``--user``, the spool and a SQLite file are handed to that user;
3. drop to ``--user`` and clear every capability, before any packet is parsed
   (steps 2-3 are ``capture.service_setup.prepare_capture``, shared with ``serve --capture``);
4. capture until SIGINT/SIGTERM, then flush what is queued and exit 0.
A missing interface, a missing privilege, a bad filter or an unusable database is one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from types import FrameType
from typing import Any

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE

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
    from ja3svc.api.logs import configure
    from ja3svc.capture.live_source import CaptureOpenError
    from ja3svc.capture.privileges import PrivilegeError
    from ja3svc.capture.service_setup import SetupError, prepare_capture
    from ja3svc.capture.worker import open_source
    from ja3svc.config.settings import load_settings
    from pydantic import ValidationError

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
        prepared = prepare_capture(settings, source, user, sensor=args.sensor)
    except (PrivilegeError, SetupError) as exc:
        source.close()
        return _fail(str(exc))
    database, worker, identity = prepared.database, prepared.worker, prepared.identity

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
    # What is alive now (modules, SQLAlchemy, settings: ~100,000 objects) stays for the whole
    # run; frozen, the collector's full passes no longer walk it. Those passes stop the capture
    # thread, and at 150,000 packets/s a 4 MiB ring fills in a fraction of a second.
    gc.collect()
    gc.freeze()
    try:
        worker.run()
    except CaptureOpenError as exc:  # the interface went away while capturing
        return _fail(str(exc))
    finally:
        database.dispose()
    return EXIT_OK

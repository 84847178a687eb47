"""``ja3svc serve``: run the Dovecot policy service (FastAPI under uvicorn).

Three ways to run it:

- plain (any ``--workers``): the database is opened (and, for SQLite or with
  ``store.auto_upgrade``, migrated to head) once in this process before uvicorn starts, so
  several workers never race on a migration. Each worker then builds its own app from the same
  resolved settings, handed over in an environment variable;
- ``--correlate-db`` (``serve.correlate_database``): the same, and every worker looks up the
  hello of the connection a request names in the database that separate ``ja3svc capture``
  workers fill (shared PostgreSQL), waiting a bounded time for it;
- ``--capture IFACE`` (one worker only): the capture runs inside this process. The sockets are
  opened while privileged, then the database and the worker, then privileges are dropped
  (``--user``) exactly as ``ja3svc capture`` does (``capture.service_setup``), and the app is
  built here and handed to uvicorn as an object: the in-memory table of recent connections is
  only useful to the process that fills it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE

# uvicorn imports the application in each worker process by this name.
APP_FACTORY = "ja3svc.api.app:app_from_env"
# Dovecot keeps up to 100 connections alive; idle ones should not pile up forever.
KEEP_ALIVE_SECONDS = 60


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the Dovecot authentication-policy service",
        description="Serve Dovecot's auth-policy protocol (POST /policy?command=allow|report), "
        "the admin API under /api/v1 and /livez, /readyz, /metrics.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8642, help="TCP port (default 8642)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--config", help="TOML settings file (else $JA3SVC_CONFIG)")
    p.add_argument(
        "--database-url", metavar="URL",
        help="database URL (default: settings, else the SQLite file in the data directory)",
    )  # fmt: skip
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--access-log", action="store_true",
        help="log every HTTP request (uvicorn's access log, as JSON lines like the rest)",
    )  # fmt: skip
    p.add_argument(
        "--http", default="auto", choices=("auto", "httptools", "h11"),
        help="uvicorn's HTTP implementation (default auto: httptools, installed with ja3svc)",
    )  # fmt: skip
    p.add_argument(
        "--capture", action="append", dest="capture", metavar="IFACE",
        help="capture hellos on IFACE inside the service (repeatable; needs root or "
        "CAP_NET_RAW to start, and --workers 1)",
    )  # fmt: skip
    p.add_argument(
        "--capture-filter", metavar="BPF",
        help="libpcap filter replacing the default capture filter (with --capture)",
    )  # fmt: skip
    p.add_argument(
        "--user", metavar="USER",
        help="unprivileged user to switch to once the capture sockets are open "
        "(with --capture; default: capture.user)",
    )  # fmt: skip
    p.add_argument(
        "--correlate-db", action="store_true",
        help="find each connection's hello in the database shared with separate "
        "`ja3svc capture` workers (serve.correlate_database)",
    )  # fmt: skip
    p.add_argument(
        "--allow-open", action="store_true",
        help="start without policy.api_keys on a non-loopback address (serve.allow_open): "
        "anyone who can connect may then ask for verdicts and report logins",
    )  # fmt: skip
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"ja3svc serve: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from ja3svc.api.logs import configure
    from ja3svc.config.settings import load_settings
    from pydantic import ValidationError

    configure(args.log_level)
    try:
        overrides = {"database_url": args.database_url} if args.database_url else {}
        settings = load_settings(args.config, **overrides)
        if args.correlate_db:
            settings = settings.model_copy(
                update={"serve": settings.serve.model_copy(update={"correlate_database": True})}
            )
    except (OSError, ValueError, ValidationError) as exc:
        return _fail(f"bad settings: {exc}")
    if args.workers < 1:
        return _fail("--workers must be at least 1")
    if args.allow_open:
        settings = settings.model_copy(
            update={"serve": settings.serve.model_copy(update={"allow_open": True})}
        )
    if not settings.policy.api_keys and not settings.serve.allow_open and not _loopback(args.host):
        # Open, the endpoint lets anyone who can connect report failed logins (and so steer the
        # reputation rules) and probe accounts' fingerprints.
        return _fail(
            f"refusing to serve the policy endpoint on {args.host} without a credential: set "
            "policy.api_keys (and Dovecot's auth_policy_server_api_header), or pass --allow-open "
            "(serve.allow_open) if that is intended"
        )
    if args.capture:
        if args.workers != 1:
            # The recent-connections table lives in the capturing process; another worker
            # would answer without it.
            return _fail("--capture needs --workers 1 (the capture runs in the worker process)")
        return _run_with_capture(args, settings)
    if args.capture_filter or args.user:
        return _fail("--capture-filter and --user only apply with --capture IFACE")
    return _run_workers(args, settings)


# uvicorn's --http choices, as the subclasses of api.limits (a string: workers import it).
PROTOCOLS = {
    "auto": "ja3svc.api.limits:LimitedHttpToolsProtocol",
    "httptools": "ja3svc.api.limits:LimitedHttpToolsProtocol",
    "h11": "ja3svc.api.limits:LimitedH11Protocol",
}


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    from ja3svc.api.logs import uvicorn_log_config

    # uvicorn's own logs in ja3svc's JSON format, in the server and in every worker. No
    # per-request access log unless asked: Dovecot sends two or three requests per login and
    # the verdict log already says what matters.
    return {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "log_config": uvicorn_log_config(args.log_level),
        # uvicorn's protocols with idle and header timeouts and a connection cap (api.limits).
        "http": PROTOCOLS[args.http],
        "access_log": args.access_log,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # Nothing here reads the client address (Dovecot names the user's in the body), so
        # uvicorn's X-Forwarded-For rewriting would only be one more layer per request.
        "proxy_headers": False,
    }


def _run_workers(args: argparse.Namespace, settings: Any) -> int:
    import uvicorn
    from ja3svc.api.app import LOG_LEVEL_ENV, SETTINGS_ENV
    from ja3svc.cli.store_options import database_error_message
    from ja3svc.store.database import Database

    # Migrate (where the store allows it) and fail early on an unusable database.
    try:
        db = Database.from_settings(settings)
    except Exception as exc:
        message = database_error_message(exc)
        if message is None:
            raise
        return _fail(message)
    db.dispose()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[LOG_LEVEL_ENV] = args.log_level
    options = _uvicorn_options(args)
    if args.workers > 1:
        from ja3svc.api.metrics import MULTIPROC_ENV
        from ja3svc.cli.worker_sockets import run_workers

        # Each worker counts in its own memory: a scrape reaches one of them. prometheus-client's
        # multiprocess mode keeps every worker's values in files of one directory and sums them
        # at every scrape; a directory of this run's own, so no earlier run's counts leak in.
        own_dir = MULTIPROC_ENV not in os.environ
        if own_dir:
            os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="ja3svc-metrics-")
        try:
            run_workers(uvicorn.Config(APP_FACTORY, factory=True, workers=args.workers, **options))
        finally:
            if own_dir:
                shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)
    else:
        uvicorn.run(APP_FACTORY, factory=True, **options)
    return EXIT_OK


def _run_with_capture(args: argparse.Namespace, settings: Any) -> int:
    import logging

    import uvicorn
    from ja3svc.api.app import create_app
    from ja3svc.capture.live_source import CaptureOpenError
    from ja3svc.capture.privileges import PrivilegeError
    from ja3svc.capture.service_setup import SetupError, prepare_capture
    from ja3svc.capture.worker import CaptureWorker, open_source
    from ja3svc.store.correlation import ConnectionFingerprints
    from ja3svc.store.database import Database

    try:
        source = open_source(settings.capture, args.capture, args.capture_filter)
    except (CaptureOpenError, ValueError) as exc:
        return _fail(str(exc))
    user = args.user or settings.capture.user or None
    built: dict[str, Any] = {}

    def build_server(database: Database, worker: CaptureWorker) -> None:
        # Everything the service needs is built and imported here, while still privileged:
        # after the drop the interpreter's own files may be out of reach (a Python under
        # /root), and uvicorn imports its loop, protocol and lifespan modules lazily.
        # Memory first (this process's capture), then the database once: a hello seen by
        # another sensor, or before a restart, still counts.
        lookup = ConnectionFingerprints.from_settings(settings, worker.recent, database)
        app = create_app(
            settings,
            database=database,
            connection_lookup=lookup,
            background=[worker],
            extra_metrics={"ja3svc_capture": worker.metrics},
            freeze_heap=True,
        )
        # lifespan "on": a failing start-up (the capture worker) must stop the service, not
        # be taken for an app without lifespan support ("auto").
        config = uvicorn.Config(app, workers=1, lifespan="on", **_uvicorn_options(args))
        config.load()
        config.get_loop_factory()
        _warm_up(app)
        built["server"] = uvicorn.Server(config)

    try:
        prepared = prepare_capture(settings, source, user, before_drop=build_server)
    except (PrivilegeError, SetupError) as exc:
        source.close()
        return _fail(str(exc))
    database, worker = prepared.database, prepared.worker
    logging.getLogger("ja3svc.capture").info(
        "capture in the policy service",
        extra={
            "fields": {
                "interfaces": source.interfaces,
                "filter": source.bpf_filter,
                "modes": source.modes,
                "uid": prepared.identity.uid,
                "gid": prepared.identity.gid,
                "database": database.url,
                "sensor": worker.writer.sensor if worker.writer else None,
            }
        },
    )
    try:
        # One process, the app object itself: uvicorn's SIGINT/SIGTERM handling runs the
        # lifespan shutdown, which stops the capture and flushes its last batch.
        built["server"].run()
    finally:
        database.dispose()
    if worker.error is not None and isinstance(worker.error, CaptureOpenError):
        return _fail(str(worker.error))
    return EXIT_OK


def _warm_up(app: Any) -> None:
    """Import, while still privileged, what the app first imports when it runs.

    After ``--user`` the interpreter's own files may be unreadable (a Python under /root).
    uvicorn, FastAPI and Starlette import some modules only on first use, so the lifespan
    module is imported here and a few side-effect-free requests go through the ASGI app once
    (routing, JSON responses, error handlers, OpenAPI). The policy endpoint is left out: a
    request there would count in /metrics and the audit log.
    """
    import asyncio
    import importlib

    for name in _LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # another FastAPI/uvicorn version: nothing to import
            pass

    async def request(path: str) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": [(b"host", b"localhost")],
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
        }  # fmt: skip

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    async def main() -> None:
        # /api/v1/stats without a token: a 401 through the admin dependencies (threadpool).
        paths = ("/livez", "/metrics", "/openapi.json", "/docs", "/api/v1/stats", "/no-such-path")
        for path in paths:
            try:
                await request(path)
            except Exception:  # a warm-up failure is not a start-up failure
                pass

    asyncio.run(main())


# Imported on first use by FastAPI (the lifespan wrapper), anyio (its asyncio backend, on the
# first sync dependency or to_thread call) and the standard library.
_LAZY_MODULES = (
    "fastapi.telemetry._runtime",
    "anyio._backends._asyncio",
    "email.utils",
    "http.cookies",
)

"""``ja3svc serve``: run the Dovecot policy service (FastAPI under uvicorn).

The database is opened (and, for SQLite or with ``store.auto_upgrade``, migrated to head) once in
this process before uvicorn starts, so several workers never race on a migration. Each worker
then builds its own app from the same resolved settings, handed over in an environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys

from cli.main import EXIT_OK, EXIT_USAGE


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
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import LOG_LEVEL_ENV, SETTINGS_ENV
    from api.logs import configure
    from ja3svc.settings import load_settings
    from store.database import Database

    configure(args.log_level)
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError) as exc:
        print(f"ja3svc serve: bad settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.workers < 1:
        print("ja3svc serve: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    # Migrate (where the store allows it) and fail early on an unusable database.
    db = Database.from_settings(settings)
    db.dispose()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[LOG_LEVEL_ENV] = args.log_level
    # Keep uvicorn's own logs but not its per-request access log: Dovecot sends two or three
    # requests per login and our verdict log already says what matters.
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        # Dovecot keeps up to 100 connections alive; idle ones should not pile up forever.
        timeout_keep_alive=60,
    )
    return EXIT_OK

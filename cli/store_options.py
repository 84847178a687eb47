"""Options and error handling shared by the database commands (db, fingerprints, labels).

Every one of them accepts ``--database-url`` and ``--config``, opens the database the same way
(``Database.from_settings``: the default SQLite is created and migrated on first use) and turns
the errors a user can cause or fix (unreachable server, old schema, unreadable file) into one
line on stderr and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ja3svc.cli.main import EXIT_USAGE

if TYPE_CHECKING:  # imported lazily at run time: `ja3svc pcap` should not load SQLAlchemy
    from ja3svc.config.settings import Settings
    from ja3svc.store.database import Database


def add_database_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="database URL, e.g. postgresql://user@host/db (default: settings, else the "
        "SQLite file in the data directory)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file (else $JA3SVC_CONFIG)")


def open_database(
    args: argparse.Namespace, *, upgrade: bool | None = None, check_schema: bool = True
) -> tuple[Settings, Database]:
    """Settings from ``--config``/environment with ``--database-url`` on top, then the database.

    Unless ``check_schema`` is off (the ``db`` commands that inspect or change the revision),
    a schema that is not at the code's head raises ``SchemaOutOfDate``: no command reads or
    writes tables whose shape it does not know.
    """
    from ja3svc.config.settings import load_settings
    from ja3svc.store.database import Database

    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = load_settings(args.config, **overrides)
    db = Database.from_settings(settings, upgrade=upgrade)
    if check_schema:
        db.require_head()
    return settings, db


def first_line(exc: BaseException) -> str:
    """The first line of an error (of the driver's, for SQLAlchemy's wrapped ones)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_error_message(exc: BaseException) -> str | None:
    """The one line a user sees for a database failure they can act on (a URL ja3svc cannot
    use, an unreachable server, an old schema, a statement the database refused, a file that
    cannot be opened); None for anything else.

    SQLAlchemy is not imported for this: an error of SQLAlchemy's (or of the store's
    ``Database``) can only have been raised once it was loaded, and ``pcap --store`` writes
    through the driver without it.
    """
    import sqlite3

    driver_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    if "psycopg" in sys.modules:
        driver_errors += (sys.modules["psycopg"].Error,)
    database_errors = driver_errors
    if "sqlalchemy" in sys.modules:
        from ja3svc.store.database import DatabaseUnavailable, SchemaOutOfDate
        from sqlalchemy.exc import ArgumentError, DBAPIError

        if isinstance(exc, DatabaseUnavailable | SchemaOutOfDate | ArgumentError):
            return str(exc)
        database_errors += (DBAPIError,)
    if isinstance(exc, database_errors):
        first = first_line(exc)
        message = f"database error: {first}"
        if "does not exist" in first or "no such table" in first:
            message += " (is the schema created? run `ja3svc db upgrade`)"
        return message
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return None


def friendly_errors(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable]:
    """Decorator for a ``func(args)``: known failures print one line and exit 1."""

    def wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            from pydantic import ValidationError

            from ja3svc.vocabulary import InvalidLabel

            try:
                return func(args)
            except (InvalidLabel, ValidationError) as exc:
                message = str(exc) if isinstance(exc, InvalidLabel) else f"bad settings: {exc}"
            except Exception as exc:
                # BrokenPipeError (`ja3svc labels export ... | head`): cli.main handles it.
                found = database_error_message(exc)
                if found is None:
                    raise
                message = found
            print(f"ja3svc {command}: {message}", file=sys.stderr)
            return EXIT_USAGE

        return run

    return wrap

"""``ja3svc db``: schema migrations, retention pruning and spool replay of the database."""

from __future__ import annotations

import argparse
import sys

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE
from ja3svc.cli.store_options import add_database_options, friendly_errors, open_database


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "db",
        help="create, migrate and maintain the fingerprint database",
        description="Schema migrations (Alembic) and maintenance of the fingerprint database. "
        "The default SQLite database is created and upgraded automatically on first use; "
        "a PostgreSQL shared by several hosts is upgraded explicitly with `ja3svc db upgrade`.",
    )
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    up = dbsub.add_parser("upgrade", help="migrate the schema forward (default: to head)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    up.set_defaults(func=_upgrade)

    cur = dbsub.add_parser("current", help="show the schema revision and the code's head")
    cur.set_defaults(func=_current)

    down = dbsub.add_parser("downgrade", help="migrate the schema back (to REV, -1 or base)")
    down.add_argument("revision", help="target revision: an id, -1 for one step, base for empty")
    down.set_defaults(func=_downgrade)

    prune = dbsub.add_parser(
        "prune",
        help="delete sightings, auth failures and decisions older than the retention period",
    )
    prune.add_argument(
        "--days", type=float, help="retention in days (default: settings store.retention_days)"
    )
    prune.set_defaults(func=_prune)

    replay = dbsub.add_parser(
        "replay-spool", help="store sightings left in the spool directory by an outage"
    )
    replay.set_defaults(func=_replay)

    for action in (up, cur, down, prune, replay):
        add_database_options(action)


@friendly_errors("db upgrade")
def _upgrade(args: argparse.Namespace) -> int:
    _settings, db = open_database(args, upgrade=False, check_schema=False)
    before = db.current_revision()
    db.upgrade(args.revision)
    print(f"{db.url}: {before or 'empty'} -> {db.current_revision()}")
    return EXIT_OK


@friendly_errors("db current")
def _current(args: argparse.Namespace) -> int:
    from ja3svc.store import migrate

    _settings, db = open_database(args, upgrade=False, check_schema=False)
    current, head = db.current_revision(), migrate.head_revision()
    state = "up to date" if current == head else "needs `ja3svc db upgrade`"
    print(f"{db.url}: revision {current or 'none (empty)'}, head {head} ({state})")
    return EXIT_OK


@friendly_errors("db downgrade")
def _downgrade(args: argparse.Namespace) -> int:
    _settings, db = open_database(args, upgrade=False, check_schema=False)
    before = db.current_revision()
    db.downgrade(args.revision)
    print(f"{db.url}: {before or 'empty'} -> {db.current_revision() or 'base (empty)'}")
    return EXIT_OK


@friendly_errors("db prune")
def _prune(args: argparse.Namespace) -> int:
    from ja3svc.store.retention import prune

    settings, db = open_database(args)
    days = args.days if args.days is not None else settings.store.retention_days
    if days is None:
        print("ja3svc db prune: retention is off (store.retention_days unset); nothing to do")
        return EXIT_OK
    if days <= 0:
        print("ja3svc db prune: --days must be positive", file=sys.stderr)
        return EXIT_USAGE
    deleted = prune(db, days)
    print(", ".join(f"{table}: {n} deleted" for table, n in deleted.items()))
    return EXIT_OK


@friendly_errors("db replay-spool")
def _replay(args: argparse.Namespace) -> int:
    from ja3svc.store.sighting_writer import SightingWriter

    settings, db = open_database(args)
    spool_dir = settings.resolved_spool_dir()
    # A writer replays every spool file in its directory when it starts.
    writer = SightingWriter(db, sensor="replay", spool_dir=spool_dir)
    stats = writer.close()
    left = sorted(p.name for p in spool_dir.glob("*.jsonl")) if spool_dir.is_dir() else []
    print(f"replayed {stats.replayed} sightings ({stats.stored} new) from {spool_dir}")
    if left:
        print(f"still spooled (database unreachable or file busy): {', '.join(left)}")
        return EXIT_USAGE
    return EXIT_OK

"""Alembic driven from code: the script directory ships inside the ``migrations`` package.

Every function takes an Engine (or a Connection) so the URL always comes from the settings the
caller resolved, never from an alembic.ini; this works the same from a source checkout and from
an installed wheel.

Alembic itself is imported only to migrate: importing it takes longer (0.15-0.25 s) than a
`ja3svc pcap --store` of a small capture, which only needs to know that the schema is at the
head. So the head and the current revision are read directly (the scripts' ``revision`` and
``down_revision`` assignments, and the ``alembic_version`` table); tests/test_migrations.py
checks that they agree with Alembic's own answers.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from ja3svc import migrations

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"  # Alembic's default; migrations/env.py keeps it


def script_location() -> Path:
    # The package directory itself (env.py, script.py.mako, versions/), found through the
    # imported package so that a non-editable install finds its installed copy. __path__
    # rather than __file__: an editable install made before the package had an __init__.py
    # presents it as a namespace package, whose __file__ is None.
    for entry in migrations.__path__:
        if (Path(entry) / "env.py").is_file():
            return Path(entry).resolve()
    raise RuntimeError(f"Alembic scripts not found in {list(migrations.__path__)}")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    if url:
        # ConfigParser interpolation would choke on '%' in passwords.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _assigned(path: Path) -> dict[str, object]:
    """The module-level ``revision`` and ``down_revision`` of a migration script."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = ast.literal_eval(node.value) if node.value is not None else None
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


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database (None for an empty one)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"the database is at several revisions: {sorted(rows)}")
    return rows[0] if rows else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)

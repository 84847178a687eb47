"""Alembic driven from code: the script directory ships inside the ``migrations`` package.

Every function takes an Engine (or a Connection) so the URL always comes from the settings the
caller resolved, never from an alembic.ini; this works the same from a source checkout and from
an installed wheel.

Alembic itself is imported only to migrate: the head and the current revision are read
directly (``ja3svc.store.dbapi.head_revision``, and the ``alembic_version`` table);
tests/test_migrations.py checks that they agree with Alembic's own answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ja3svc.store.dbapi import VERSION_TABLE, head_revision, script_location
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "alembic_config", "current_revision", "downgrade", "head_revision", "script_location",
    "upgrade",
]  # fmt: skip


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

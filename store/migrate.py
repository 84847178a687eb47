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

from ja3svc.store.dbapi import head_revision, schema_revision, script_location
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
        pg = conn.dialect.name == "postgresql"
        return schema_revision(conn.connection.driver_connection, pg)


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)

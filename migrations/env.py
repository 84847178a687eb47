"""Alembic environment: runs migrations on a connection handed over by ``store.migrate``.

The URL never comes from alembic.ini. Callers either pass an open connection in
``config.attributes["connection"]`` (tests, auto-upgrade on first use) or set the
``sqlalchemy.url`` main option from the settings; ``store.migrate`` does one of the two.
"""

from __future__ import annotations

from alembic import context
from ja3svc.store.models import Base
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set sqlalchemy.url (store.migrate)")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure_and_run(conn)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Alembic migrations on SQLite and PostgreSQL: empty -> head -> base -> head, and the models
agree with what the migrations build."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from ja3svc.config.settings import load_settings
from ja3svc.store import migrate
from ja3svc.store.database import Database, SchemaOutOfDate
from ja3svc.store.models import Base
from sqlalchemy import inspect

from tests.support.cli import run_cli

TABLES = {
    "fingerprints", "sightings", "labels", "user_fingerprints", "auth_failures", "decisions",
    "dovecot_hashes", "console_sessions",
}  # fmt: skip


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_database_url):
    db = Database.from_url(empty_database_url, upgrade=False)
    assert db.current_revision() is None
    db.upgrade()
    assert db.current_revision() == migrate.head_revision()
    assert _tables(db) == TABLES
    db.downgrade("base")
    assert db.current_revision() is None
    assert _tables(db) == set()
    db.upgrade()
    assert _tables(db) == TABLES and db.is_at_head()
    db.dispose()


def test_models_and_migrations_agree(empty_database_url):
    db = Database.from_url(empty_database_url, upgrade=True)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    db.dispose()
    assert diff == []


def test_default_sqlite_is_created_and_migrated_on_first_use(tmp_path, monkeypatch):
    monkeypatch.delenv("JA3SVC_DATABASE_URL", raising=False)
    settings = load_settings(data_dir=tmp_path / "data")
    db = Database.from_settings(settings)
    assert (tmp_path / "data" / "ja3svc.sqlite3").is_file()
    assert db.is_at_head()
    db.dispose()
    # Opening again is a no-op (already at head).
    Database.from_settings(settings).dispose()


@pytest.mark.postgres
def test_postgresql_is_not_migrated_implicitly(pg_admin_url):
    from tests.support.database import fresh_pg_database

    with fresh_pg_database(pg_admin_url) as url:
        db = Database.from_url(url)
        assert db.current_revision() is None
        with pytest.raises(SchemaOutOfDate, match="ja3svc db upgrade"):
            db.require_head()
        db.dispose()


def test_db_commands(empty_database_url):
    status, out, _ = run_cli("db", "current", "--database-url", empty_database_url)
    assert status == 0 and "needs `ja3svc db upgrade`" in out
    status, out, _ = run_cli("db", "upgrade", "--database-url", empty_database_url)
    assert status == 0 and out.strip().endswith(f"-> {migrate.head_revision()}")
    status, out, _ = run_cli("db", "current", "--database-url", empty_database_url)
    assert status == 0 and "up to date" in out
    status, out, _ = run_cli("db", "downgrade", "base", "--database-url", empty_database_url)
    assert status == 0 and "base (empty)" in out
    status, _, _ = run_cli("db", "downgrade", "--database-url", empty_database_url)
    assert status == 1  # REV is required


def test_script_directory_is_inside_the_package():
    location = migrate.script_location()
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert any(location.glob("versions/0001_*.py"))


def test_decisions_of_one_account_use_the_index(tmp_path):
    """The admin API's "decisions of alice" query walks the (username, id) index instead of
    scanning the audit log (SQLite's own plan says so)."""
    from ja3svc.store.models import Decision
    from sqlalchemy import select

    db = Database.from_url(f"sqlite:///{tmp_path / 'plan.sqlite3'}")
    stmt = (
        select(Decision).where(Decision.username == "alice").order_by(Decision.id.desc()).limit(100)
    )
    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    db.dispose()
    assert "ix_decisions_username_id" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # newest first straight from the index

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


def test_head_and_current_revision_agree_with_alembic(empty_database_url):
    """The store reads both without importing Alembic (ja3svc.store.migrate): the answers
    must be Alembic's own, at every revision."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == script.get_current_head()
    db = Database.from_url(empty_database_url, upgrade=False)

    def alembic_current() -> str | None:
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    assert db.current_revision() is None and alembic_current() is None
    for rev in reversed([s.revision for s in script.walk_revisions()]):
        db.upgrade(rev)
        assert db.current_revision() == alembic_current() == rev
    db.downgrade("base")
    assert db.current_revision() is None and alembic_current() is None
    db.dispose()


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


def test_0005_upgrades_a_0004_database_keeping_its_failures(empty_database_url):
    """A database at 0004 with failures in it (as ja3svc 0.2 wrote them) upgrades to 0005: its
    rows keep their values with NULL network and failure type, count as failures of existing
    accounts from no known network, and rows of the new shape are written beside them; the
    downgrade drops the two columns and keeps the rows."""
    import time

    from ja3svc.store.policy_store import PolicyStore
    from sqlalchemy import text

    db = Database.from_url(empty_database_url, upgrade=False)
    db.upgrade("0004")
    now = time.time()
    with db.write_engine.begin() as conn:
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO auth_failures (ts, kind, value, username) "
                    "VALUES (:ts, :k, :v, :u)"
                ),
                {"ts": now - i, "k": "ja3_dovecot", "v": "a" * 32, "u": f"old{i}"},
            )
    db.upgrade("0005")
    assert db.current_revision() == "0005"
    columns = {c["name"]: c for c in inspect(db.engine).get_columns("auth_failures")}
    assert columns["network"]["nullable"] and columns["fail_type"]["nullable"]
    store = PolicyStore.from_database(db)
    ref = ("ja3_dovecot", "a" * 32)
    store.write_batch(
        [],
        [
            (now, "new1", ref, "203.0.113.0/24", "credentials"),
            (now, "new2", ref, "203.0.113.0/24", "account"),
        ],
        [],
    )
    rep = store.reputation([ref], "203.0.113.0/24", 3600, now + 1)
    # 5 accounts failed; 2 from this network; the unknown name "new2" counts there only; the
    # old rows' network is unknown, so only 203.0.113.0/24 is a counted network.
    assert rep.distinct_failed_accounts == 5 and rep.failures == 5
    assert rep.network_failed_accounts == 2
    assert rep.counted_failed_accounts == 4 and rep.failed_networks == 1
    with db.engine.connect() as conn:
        old = conn.execute(
            text("SELECT username, network, fail_type FROM auth_failures ORDER BY username")
        ).all()
    assert [tuple(r) for r in old] == [
        ("new1", "203.0.113.0/24", "credentials"), ("new2", "203.0.113.0/24", "account"),
        ("old0", None, None), ("old1", None, None), ("old2", None, None),
    ]  # fmt: skip
    store.close()
    db.downgrade("0004")
    names = {c["name"] for c in inspect(db.engine).get_columns("auth_failures")}
    assert "network" not in names and "fail_type" not in names
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth_failures")).scalar() == 5
    db.dispose()

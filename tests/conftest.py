"""Database fixtures: every store test runs on SQLite and on the real PostgreSQL.

PostgreSQL is the local server (127.0.0.1:5432, trust auth; ``JA3SVC_TEST_PG_URL`` overrides):
one fresh database is created and migrated for the session (tables emptied before each test), and
tests that need an empty schema get a database of their own; all are dropped at the end. If the
server cannot be reached the PostgreSQL variants are skipped with the reason; it is reachable here
and in CI. The fixtures import the store (and SQLAlchemy) only when a test asks for them: this
file is also the parent conftest of tests/unit, which must run without either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ja3svc.store.database import Database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    from tests.support.database import PG_ADMIN_URL, check_pg_server

    check_pg_server(PG_ADMIN_URL)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_migrated_url(pg_admin_url: str) -> Iterator[str]:
    from ja3svc.store.database import Database

    from tests.support.database import fresh_pg_database

    with fresh_pg_database(pg_admin_url) as url:
        db = Database.from_url(url, upgrade=True)
        db.dispose()
        yield url


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """A migrated, empty database: a new SQLite file, or the session's PostgreSQL emptied."""
    from ja3svc.store.database import Database

    from tests.support.database import empty_tables

    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'ja3svc.sqlite3'}")
    else:
        db = Database.from_url(request.getfixturevalue("pg_migrated_url"))
        empty_tables(db)
    yield db
    db.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """URL of a database with no tables at all (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    from tests.support.database import fresh_pg_database

    with fresh_pg_database(request.getfixturevalue("pg_admin_url")) as url:
        yield url


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    from tests.support.database import synthetic_record

    return synthetic_record

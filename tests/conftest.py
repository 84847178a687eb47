"""Database fixtures: every store test runs on SQLite and on the real PostgreSQL.

PostgreSQL is the local server (127.0.0.1:5432, trust auth; ``JA3SVC_TEST_PG_URL`` overrides).
Tests never touch its existing databases: one fresh database ``ja3svc_test_<random>`` is created
and migrated for the session (tables emptied before each test), and tests that need an empty
schema get a database of their own. All are dropped at the end. If the server cannot be reached
the PostgreSQL variants are skipped with the reason; it is reachable here and in CI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ja3svc.store.database import Database
from ja3svc.store.models import Base
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "JA3SVC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def url_of(db: Database) -> str:
    """The database's URL with its password, for handing to the CLI or another process."""
    return db.engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means: no server to test against
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


def _create_pg_database(admin_url: str) -> str:
    name = f"ja3svc_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    url = _create_pg_database(admin_url)
    try:
        yield url
    finally:
        _drop_pg_database(admin_url, url)


@pytest.fixture(scope="session")
def pg_migrated_url(pg_admin_url: str) -> Iterator[str]:
    with fresh_pg_database(pg_admin_url) as url:
        db = Database.from_url(url, upgrade=True)
        db.dispose()
        yield url


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """A migrated, empty database: a new SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        db = Database.from_url(f"sqlite:///{tmp_path / 'ja3svc.sqlite3'}")
    else:
        db = Database.from_url(request.getfixturevalue("pg_migrated_url"))
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    yield db
    db.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """URL of a database with no tables at all (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    with fresh_pg_database(request.getfixturevalue("pg_admin_url")) as url:
        yield url


def synthetic_record(n: int, client: int = 0, *, ts0: float = 1_700_000_000.0) -> dict[str, Any]:
    """A client-hello record shaped like ``HelloSighting.as_dict()``.

    ``n`` varies the connection (time, source port); ``client`` picks one of a few fingerprints.
    The hashes are MD5s of made-up strings: the store treats them as opaque values.
    """
    ja3 = f"771,4865-4866-{client},13-0-11-10,29-23,0"
    ja3n = f"771,4865-4866-{client},0-10-11-13,29-23,0"  # extensions sorted
    dove = f"771,4865-4866-{client},13-0-11,29-23,0"  # extension 10 "unknown"
    return {
        "ts": ts0 + n * 0.001,
        "src": f"198.51.100.{n % 200 + 1}",
        "sport": 1024 + n % 60000,
        "dst": "192.0.2.10",
        "dport": 993,
        "transport": "tcp",
        "hello": "client",
        "index": 1,
        "sni": "imap.example.org",
        "alpn": ["imap"],
        "tls_version": "TLS 1.3",
        "ja3": ja3,
        "ja3_hash": hashlib.md5(ja3.encode()).hexdigest(),
        "ja3n": ja3n,
        "ja3n_hash": hashlib.md5(ja3n.encode()).hexdigest(),
        "ja4": f"t13d{client % 100:02d}04im_8daaf6152771_e5627efa2ab1",
        "ja4_r": f"t13d{client % 100:02d}04im_1301,1302_0000,000a_0403",
        "ja3_dovecot": dove,
        "ja3_dovecot_hash": hashlib.md5(dove.encode()).hexdigest(),
        # No extension the two profiles disagree on: the same hash under both.
        "ja3_dovecot_hashes": dict.fromkeys(
            ("openssl-3.0", "openssl-3.2"), hashlib.md5(dove.encode()).hexdigest()
        ),
    }


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    return synthetic_record


def pg_cluster_command(action: str) -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]


@contextmanager
def postgres_stopped() -> Iterator[None]:
    """Stop the real local PostgreSQL for the block, and always start it again."""
    if os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        pytest.skip("stopping the PostgreSQL server needs root and a Debian cluster")
    subprocess.run(pg_cluster_command("stop"), check=True, capture_output=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run(pg_cluster_command("start"), check=False, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False
            )
            if ready.returncode == 0:
                break
            time.sleep(0.2)

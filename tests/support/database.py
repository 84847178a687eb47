"""The databases the store tests run on: a fresh SQLite file, or a database of its own on the real
PostgreSQL (127.0.0.1:5432, trust auth; ``JA3SVC_TEST_PG_URL`` overrides).

Tests never touch the server's existing databases: each database made here is named
``ja3svc_test_<random>`` and dropped at the end. Imported by the database fixtures of
tests/conftest.py only when a test asks for one, so the unit tests never load SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ja3svc.store.database import Database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "JA3SVC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def url_of(db: Database) -> str:
    """The database's URL with its password, for handing to the CLI or another process."""
    return db.engine.url.render_as_string(hide_password=False)


def check_pg_server(admin_url: str) -> None:
    """Skip the test, with the reason, when the server cannot be reached."""
    engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means: no server to test against
        pytest.skip(f"PostgreSQL at {admin_url} unreachable: {exc}")
    finally:
        engine.dispose()


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


def empty_tables(db: Database) -> None:
    """Remove every row (PostgreSQL), for a session database shared by tests."""
    from ja3svc.store.models import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))


def synthetic_record(n: int, client: int = 0, *, ts0: float = 1_700_000_000.0) -> dict[str, Any]:
    """A client-hello record shaped like ``HelloRecord.as_dict()``.

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

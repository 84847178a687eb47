"""The in-memory table of recent connections (ja3svc.connections): a pure data structure, so
these tests need no thread, database or clock.
"""

from __future__ import annotations

import pytest

from ja3svc.connections import RecentConnections, normalize_ip
from ja3svc.record import HelloRecord
from tests.support.hellos import T0, client_hello, client_hello_dict

# --- RecentConnections ------------------------------------------------------------------------


def test_highest_index_wins_after_hello_retry_request():
    table = RecentConnections(window_seconds=60)
    table.put(client_hello("198.51.100.7", 50000, T0, 1, "1" * 32))
    table.put(client_hello("198.51.100.7", 50000, T0 + 0.01, 2, "2" * 32))
    assert table.get("198.51.100.7", 50000, now=T0 + 1).fingerprints.ja3_hash == "2" * 32
    assert table.get("198.51.100.7", 50001, now=T0 + 1) is None


def test_port_reuse_starts_a_new_connection():
    table = RecentConnections(window_seconds=600)
    table.put(client_hello("198.51.100.7", 50000, T0, 1, "1" * 32))
    table.put(client_hello("198.51.100.7", 50000, T0, 2, "2" * 32))
    # A later connection from the same port: its first hello replaces the old connection's.
    table.put(client_hello("198.51.100.7", 50000, T0 + 100, 1, "3" * 32))
    assert table.get("198.51.100.7", 50000, now=T0 + 101).fingerprints.ja3_hash == "3" * 32


def test_server_hellos_are_ignored():
    table = RecentConnections()
    table.put(
        HelloRecord.from_dict({**client_hello_dict("198.51.100.7", 50000, T0), "hello": "server"})
    )
    assert len(table) == 0


def test_capacity_evicts_oldest_and_counts():
    table = RecentConnections(max_entries=100, window_seconds=10**9)
    for i in range(1000):
        table.put(client_hello("198.51.100.7", 1024 + i, T0 + i))
    snap = table.snapshot()
    assert snap["entries"] == 100
    assert snap["evicted_full"] == 900
    assert table.get("198.51.100.7", 1024, now=T0 + 1000) is None  # evicted
    assert table.get("198.51.100.7", 1024 + 999, now=T0 + 1000) is not None


def test_window_expires_and_counts():
    table = RecentConnections(window_seconds=30)
    for i in range(10):
        table.put(client_hello("198.51.100.7", 1024 + i, T0 + i))
    assert table.get("198.51.100.7", 1024, now=T0 + 29) is not None
    assert table.get("198.51.100.7", 1024, now=T0 + 31) is None  # outside the window
    assert table.expire(now=T0 + 35) == 5  # ts T0..T0+4 are older than T0+35-30
    assert table.snapshot()["expired"] == 5
    assert len(table) == 5
    # Putting newer hellos also sweeps: memory stays bounded without anyone calling expire().
    table.put(client_hello("198.51.100.7", 9999, T0 + 1000))
    assert len(table) == 1


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("[2001:DB8::0001]", "2001:db8::1"),
        (" 198.51.100.7 ", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::1"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_address_spellings(spelling, normal):
    assert normalize_ip(spelling) == normal


def test_dovecot_ipv4_mapped_peer_finds_the_ipv4_capture():
    table = RecentConnections()
    table.put(client_hello("198.51.100.7", 50000, T0))
    assert table.get("::ffff:198.51.100.7", 50000, now=T0) is not None

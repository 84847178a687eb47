"""Client hello records as the correlation tests put them in its tables: a client's hello to
192.0.2.10:993 with a chosen peer, time, hello index and JA3 hash."""

from __future__ import annotations

from typing import Any

from ja3svc.record import HelloRecord

T0 = 1_700_000_000.0


def client_hello_dict(
    src: str, sport: int, ts: float, index: int = 1, ja3_hash: str = "a" * 32
) -> dict[str, Any]:
    return {
        "ts": ts,
        "src": src,
        "sport": sport,
        "dst": "192.0.2.10",
        "dport": 993,
        "hello": "client",
        "index": index,
        "ja3_hash": ja3_hash,
    }


def client_hello(
    src: str, sport: int, ts: float, index: int = 1, ja3_hash: str = "a" * 32
) -> HelloRecord:
    return HelloRecord.from_dict(client_hello_dict(src, sport, ts, index, ja3_hash))

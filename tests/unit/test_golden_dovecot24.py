"""Golden captures of Debian 13's clients logging in to Debian 13's Dovecot 2.4.1 (OpenSSL 3.5.9).

tests/pcaps/dovecot24/regenerate.py recorded them; each ``.dovecot-log.json`` holds, per connection,
what Dovecot itself logged (``%{ssl_ja3}``, ``%{ssl_ja3_hash}``). With default options
``ja3svc pcap`` must give that hash for every connection of every client; with
``--dovecot-profile openssl-3.0`` it must give what a Dovecot on OpenSSL 3.0 computes, which the
spec defines as the same string without extensions 19, 20 and 27 (3.2 learned them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.cli import fingerprint_file
from tests.support.paths import PCAPS

CAPTURES = sorted((PCAPS / "dovecot24").glob("*.pcap"))


def _expected(pcap: Path) -> dict:
    return json.loads(pcap.with_suffix(".dovecot-log.json").read_text())


def _last_hellos(records: list[dict]) -> dict[int, dict]:
    """Per client port, the connection's last ClientHello (Dovecot keeps the last one)."""
    last: dict[int, dict] = {}
    for r in records:
        if r["hello"] == "client" and r["index"] >= last.get(r["sport"], {"index": 0})["index"]:
            last[r["sport"]] = r
    return last


def _without_32_extensions(dovecot_string: str) -> str:
    fields = dovecot_string.split(",")
    fields[2] = "-".join(e for e in fields[2].split("-") if e and e not in {"19", "20", "27"})
    return ",".join(fields)


def test_every_client_family_is_there() -> None:
    names = {p.name.split("-imap-")[0].split("-pop3-")[0] for p in CAPTURES}
    assert names == {"curl", "python", "gnutls", "nss", "nss-permute", "java", "chrome"}


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.stem)
def test_default_profile_gives_dovecot_241s_hash(pcap: Path) -> None:
    records, status = fingerprint_file(pcap)
    assert status == 0
    last = _last_hellos(records)
    expected = _expected(pcap)["connections"]
    assert len(expected) >= 2 and set(last) == {c["sport"] for c in expected}
    for conn in expected:
        got = last[conn["sport"]]
        assert got["ja3_dovecot"] == conn["ja3_dovecot"], conn
        assert got["ja3_dovecot_hash"] == conn["ja3_dovecot_hash"], conn
        assert got["ja3_dovecot_hashes"]["openssl-3.2"] == conn["ja3_dovecot_hash"]


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.stem)
def test_openssl_30_profile_gives_an_openssl_30_dovecots_hash(pcap: Path) -> None:
    records, status = fingerprint_file(pcap, "--dovecot-profile", "openssl-3.0")
    assert status == 0
    last = _last_hellos(records)
    for conn in _expected(pcap)["connections"]:
        want = _without_32_extensions(conn["ja3_dovecot"])
        got = last[conn["sport"]]
        assert got["ja3_dovecot"] == want
        assert got["ja3_dovecot_hash"] == hashlib.md5(want.encode()).hexdigest()
        assert got["ja3_dovecot_hashes"]["openssl-3.0"] == got["ja3_dovecot_hash"]


def test_openssl_35_clients_hash_differently_in_the_two_profiles() -> None:
    # Why the default matters: OpenSSL 3.5 clients offer certificate compression (27).
    for name in ("curl-imap-tls", "python-imap-tls"):
        conn = _expected(PCAPS / "dovecot24" / f"{name}.pcap")["connections"][0]
        assert "27" in conn["ja3_dovecot"].split(",")[2].split("-"), conn

"""The library surface: ``ja3svc.__all__`` is curated, results are frozen, bytes parse as sent.

Expected fingerprints come from the JA3 README's test vectors (../shared/spec/fingerprints.md)
and from tshark's record of tests/pcaps/openssl-hrr.pcap.
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from ja3svc.capture import read_hellos

import ja3svc
from tests.support.paths import PCAPS

PUBLIC = [
    "DEFAULT_PROFILE",
    "OPENSSL_PROFILES",
    "ClientFingerprints",
    "ClientHello",
    "FingerprintEngine",
    "HelloError",
    "HelloRecord",
    "ServerFingerprints",
    "ServerHello",
    "fingerprint",
    "parse_client_hello",
    "parse_hello",
    "parse_server_hello",
]

# JA3 README vector 2 as bytes: TLS 1.0 record, ClientHello, 11 cipher suites, no extensions.
BODY = bytes.fromhex(
    "0301" + "00" * 32 + "00" + "0016 0004 0005 000a 0009 0064 0062 0003 0006 0013 0012 0063"
    "0100"
)
MESSAGE = bytes([1]) + len(BODY).to_bytes(3, "big") + BODY
RECORD = bytes.fromhex("160301") + len(MESSAGE).to_bytes(2, "big") + MESSAGE
JA3 = "769,4-5-10-9-100-98-3-6-19-18-99,,,"
JA3_HASH = "de350869b8c85de67a350c8d186f11e6"


def test_all_is_the_curated_list_and_every_name_exists() -> None:
    assert sorted(ja3svc.__all__) == sorted(PUBLIC)
    for name in ja3svc.__all__:
        assert getattr(ja3svc, name) is not None


def test_capture_exports_read_hellos_only() -> None:
    import ja3svc.capture

    assert ja3svc.capture.__all__ == ["read_hellos"]


@pytest.mark.parametrize("data", [RECORD, MESSAGE], ids=["record", "message"])
def test_parse_hello_from_a_record_or_a_message(data: bytes) -> None:
    fp = ja3svc.fingerprint(ja3svc.parse_hello(data))
    assert (fp.ja3, fp.ja3_hash) == (JA3, JA3_HASH)


def test_a_hello_split_over_two_records_is_joined() -> None:
    cut = 20
    first, second = MESSAGE[:cut], MESSAGE[cut:]
    data = b"".join(
        bytes.fromhex("160301") + len(part).to_bytes(2, "big") + part for part in (first, second)
    )
    assert ja3svc.fingerprint(ja3svc.parse_hello(data)).ja3_hash == JA3_HASH


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_a_hello"),
        (b"GET / HTTP/1.1\r\n", "not_a_hello"),
        (RECORD[:-1], "truncated"),
        (MESSAGE[:-1], "truncated"),
        (RECORD + b"\x17\x03\x03\x00\x01x", "not_a_hello"),  # application data after it
        (bytes([11]) + MESSAGE[1:], "not_a_hello"),  # a Certificate message
    ],
)
def test_what_is_not_a_complete_hello_is_a_hello_error(data: bytes, reason: str) -> None:
    with pytest.raises(ja3svc.HelloError) as info:
        ja3svc.parse_hello(data)
    assert info.value.reason == reason


def test_results_are_frozen_and_shared_safely() -> None:
    hello = ja3svc.parse_hello(RECORD)
    first = ja3svc.fingerprint(hello)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.ja3_hash = "0" * 32  # type: ignore[misc]
    with pytest.raises(TypeError):
        first.ja3_dovecot_hashes["openssl-3.0"] = "0" * 32  # type: ignore[index]
    # The memo hands the same frozen object out again: nothing a caller did can leak into it.
    assert ja3svc.fingerprint(hello) == first
    assert ja3svc.fingerprint(hello).ja3_hash == JA3_HASH


def test_read_hellos_matches_tshark() -> None:
    expected = json.loads((PCAPS / "openssl-hrr.expected.json").read_text())["hellos"]
    want = [
        (h["hello"], h["ja3_hash"] if h["hello"] == "client" else h["ja3s_hash"]) for h in expected
    ]
    records = list(read_hellos(PCAPS / "openssl-hrr.pcap"))
    got = [
        (r.hello, r.fingerprints.ja3_hash if r.hello == "client" else r.fingerprints.ja3s_hash)
        for r in records
    ]
    assert sorted(got) == sorted(want)
    # A stream reads the same as a path.
    data = (PCAPS / "openssl-hrr.pcap").read_bytes()
    assert list(read_hellos(io.BytesIO(data))) == records


def test_hello_records_are_frozen_and_built_with_keywords() -> None:
    record = next(read_hellos(PCAPS / "openssl-hrr.pcap"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.sport = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ja3svc.HelloRecord(0.0, "a", 1, "b", 2, "tcp", 1, None, (), record.fingerprints)  # type: ignore[misc]
    assert ja3svc.HelloRecord.from_dict(record.as_dict()) == record

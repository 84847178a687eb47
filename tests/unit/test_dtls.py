"""DTLS 1.0/1.2 records and handshake fragments (ja3svc.dtls).

Fixtures are built from annotated pieces; capture expectations come from tshark 4.0.17
(tests/pcaps/dtls/expected.json, made by regenerate.py there from openssl s_client/s_server).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ja3svc.dtls import (
    DtlsHandshakeAssembler,
    looks_like_dtls_client_hello,
    looks_like_dtls_server_hello,
    strip_cookie,
)
from ja3svc.hello import parse_client_hello, parse_server_hello
from ja3svc.ja3 import ja3_string, ja3s_string
from ja3svc.ja4 import ja4
from tests.support.paths import PCAPS
from tests.support.udp_capture import udp_datagrams

DTLS_PCAPS = PCAPS / "dtls"

RANDOM = bytes(range(32))
COOKIE = bytes.fromhex("c0ffee00112233445566778899aabbccddeeff00")


def client_hello_body(cookie: bytes = b"", random: bytes = RANDOM) -> bytes:
    return (
        bytes.fromhex("fefd")  # client_version: DTLS 1.2
        + random  # random
        + b"\x00"  # session_id: empty
        + bytes([len(cookie)]) + cookie  # cookie: DTLS only
        + bytes.fromhex("0004" "c02b" "c02f")  # cipher_suites: 2
        + bytes.fromhex("0100")  # compression_methods: null
        + bytes.fromhex(
            "001a"  # extensions: 26 bytes
            "0000000e000c0000096474" "6c732e74657374"  # server_name "dtls.test"
            "000a00040002001d"  # supported_groups: x25519
        )
    )  # fmt: skip


def tls_view(body: bytes) -> bytes:
    """What strip_cookie must produce: the same hello with the cookie vector cut out."""
    cookie_at = 2 + 32 + 1
    return body[:cookie_at] + body[cookie_at + 1 + body[cookie_at] :]


def handshake(
    msg_type: int, body: bytes, seq: int = 0, offset: int = 0, length: int | None = None
) -> bytes:
    fragment = body[offset : offset + (len(body) - offset if length is None else length)]
    return (
        bytes([msg_type])  # msg_type
        + len(body).to_bytes(3, "big")  # length of the whole message
        + seq.to_bytes(2, "big")  # message_seq
        + offset.to_bytes(3, "big")  # fragment_offset
        + len(fragment).to_bytes(3, "big")  # fragment_length
        + fragment
    )


def record(payload: bytes, content_type: int = 22, epoch: int = 0, seq: int = 0) -> bytes:
    return (
        bytes([content_type])  # content type
        + bytes.fromhex("fefd")  # record version
        + epoch.to_bytes(2, "big")  # epoch
        + seq.to_bytes(6, "big")  # sequence_number
        + len(payload).to_bytes(2, "big")  # length
        + payload
    )


def test_strip_cookie() -> None:
    with_cookie = client_hello_body(COOKIE)
    assert strip_cookie(with_cookie) == tls_view(with_cookie) == tls_view(client_hello_body())
    assert len(strip_cookie(with_cookie)) == len(with_cookie) - 1 - len(COOKIE)
    assert strip_cookie(with_cookie[:40]) is None
    assert strip_cookie(b"") is None


def test_hello_verify_request_exchange_gives_two_hellos_in_order() -> None:
    assembler = DtlsHandshakeAssembler()
    first = record(handshake(1, client_hello_body(), seq=0))
    assert assembler.feed(first) == [tls_view(client_hello_body())]
    hvr = record(handshake(3, bytes.fromhex("fefd") + bytes([len(COOKIE)]) + COOKIE, seq=0))
    assert assembler.feed_server(hvr) == []
    assert assembler.hello_verify_requests == 1
    second = record(handshake(1, client_hello_body(COOKIE), seq=1), seq=1)
    assert assembler.feed(second) == [tls_view(client_hello_body(COOKIE))]
    assert assembler.client_hellos == 2
    assert assembler.feed(second) == []  # retransmission
    assert assembler.retransmissions == 1
    assert not assembler.errors
    hello = parse_client_hello(tls_view(client_hello_body(COOKIE)))
    assert hello.sni == "dtls.test"
    # d (DTLS), d2 (DTLS 1.2), d (SNI), 02 ciphers, 02 extensions, 00 (no ALPN)
    assert ja4(hello, "dtls").startswith("dd2d020200_")


def test_fragments_out_of_order_across_datagrams_and_records() -> None:
    body = client_hello_body(COOKIE)
    pieces = [(0, 30), (30, 40), (70, len(body) - 70)]
    frags = [handshake(1, body, seq=1, offset=o, length=n) for o, n in pieces]
    assembler = DtlsHandshakeAssembler()
    assert assembler.feed(record(frags[2])) == []
    assert assembler.feed(record(frags[0]) + record(b"\x01", content_type=20)) == []
    assert assembler.feed(record(frags[0])) == []  # duplicate fragment
    assert assembler.feed(record(frags[1])) == [tls_view(body)]
    assert not assembler.errors


def test_two_fragments_in_one_record_and_encrypted_records_skipped() -> None:
    body = client_hello_body()
    both = handshake(1, body, seq=0, offset=0, length=50) + handshake(1, body, seq=0, offset=50)
    datagram = record(b"\x99" * 40, epoch=1) + record(both)
    assembler = DtlsHandshakeAssembler()
    assert assembler.feed(datagram) == [tls_view(body)]
    assert not assembler.errors


def test_new_association_on_the_same_four_tuple_is_reported() -> None:
    assembler = DtlsHandshakeAssembler()
    first = record(handshake(1, client_hello_body(), seq=0))
    assert assembler.feed(first) == [tls_view(client_hello_body())]
    other = client_hello_body(random=bytes(32))
    assert assembler.feed(record(handshake(1, other, seq=0))) == [tls_view(other)]
    assert assembler.client_hellos == 2


def test_server_hello() -> None:
    server_hello = (
        bytes.fromhex("fefd")  # server_version: DTLS 1.2
        + RANDOM  # random
        + b"\x00"  # session_id: empty (no cookie in a ServerHello)
        + bytes.fromhex("c02b")  # cipher_suite
        + b"\x00"  # compression_method
        + bytes.fromhex("0005" "ff01000100")  # extensions: renegotiation_info, empty
    )  # fmt: skip
    assembler = DtlsHandshakeAssembler()
    (body,) = assembler.feed_server(record(handshake(2, server_hello, seq=1)))
    assert ja3s_string(parse_server_hello(body)) == "65277,49195,65281"


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (record(handshake(1, client_hello_body()))[:-5], "truncated_record"),
        (record(handshake(1, client_hello_body())[:8]), "truncated_handshake_header"),
        (record(handshake(1, client_hello_body())[:-5]), "truncated_fragment"),
        # a TLS (not DTLS) record
        (b"\x17\x03\x03\x00\x05hello" + bytes(10), "not_a_record"),
        (record(bytes.fromhex("01ffffff0000000000000010") + bytes(16)), "message_too_large"),
        (record(bytes.fromhex("01000010000000000800000c") + bytes(12)), "fragment_beyond_message"),
        (record(handshake(1, client_hello_body(), seq=500)), "message_seq_out_of_range"),
        (record(handshake(1, client_hello_body(b"\xff" * 3)[:37])), "bad_client_hello"),
    ],
)
def test_bad_input_is_counted_not_raised(datagram: bytes, reason: str) -> None:
    assembler = DtlsHandshakeAssembler()
    assert assembler.feed(datagram) == []
    assert assembler.errors == {reason: 1}


def test_pending_messages_and_fragments_are_bounded() -> None:
    assembler = DtlsHandshakeAssembler()
    body = client_hello_body()
    for seq in range(6):  # only the first fragment of six different messages
        assembler.feed(record(handshake(1, body, seq=seq, offset=0, length=10)))
    assert assembler.errors == {"too_many_pending_messages": 2}
    assembler = DtlsHandshakeAssembler()
    big = bytes(1000)
    for offset in range(0, 140 * 2, 2):  # 1-byte fragments with gaps between them
        assembler.feed(record(handshake(1, big, seq=0, offset=offset, length=1)))
    assert assembler.errors["too_many_fragments"] == 140 - 64


def test_inconsistent_fragment_lengths() -> None:
    assembler = DtlsHandshakeAssembler()
    assembler.feed(record(handshake(1, bytes(100), seq=0, offset=0, length=10)))
    assembler.feed(record(handshake(1, bytes(120), seq=0, offset=10, length=10)))
    assert assembler.errors == {"inconsistent_fragment": 1}


def test_looks_like_dtls_client_hello() -> None:
    assert looks_like_dtls_client_hello(record(handshake(1, client_hello_body())))
    assert not looks_like_dtls_client_hello(record(handshake(2, client_hello_body())))
    assert not looks_like_dtls_client_hello(record(handshake(1, client_hello_body()), epoch=1))
    assert not looks_like_dtls_client_hello(b"\x16\x03\x01\x00\x05" + bytes(30))  # TLS over UDP?
    assert not looks_like_dtls_client_hello(b"\x16\xfe\xfd")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    assembler = DtlsHandshakeAssembler()
    assembler.feed(data)
    assembler.feed_server(data)
    looks_like_dtls_client_hello(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3), st.integers(0, 70), st.integers(0, 400))
def test_random_handshake_fragments_never_raise(body: bytes, t: int, seq: int, off: int) -> None:
    header = bytes([t]) + (len(body) + off).to_bytes(3, "big") + seq.to_bytes(2, "big")
    fragment = header + off.to_bytes(3, "big") + len(body).to_bytes(3, "big") + body
    assembler = DtlsHandshakeAssembler()
    for bodies in (assembler.feed(record(fragment)), assembler.feed_server(record(fragment))):
        for b in bodies:
            assert isinstance(b, bytes)


EXPECTED = json.loads((DTLS_PCAPS / "expected.json").read_text())


def hellos_in_capture(path: Path) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    connections: dict[tuple[str, int, str, int], DtlsHandshakeAssembler] = {}
    clients, servers = [], []
    for d in udp_datagrams(path):
        forward, reverse = (d.src, d.sport, d.dst, d.dport), (d.dst, d.dport, d.src, d.sport)
        if forward in connections:
            clients += [(d.frame, b) for b in connections[forward].feed(d.payload)]
        elif reverse in connections:
            servers += [(d.frame, b) for b in connections[reverse].feed_server(d.payload)]
        elif looks_like_dtls_client_hello(d.payload):
            connections[forward] = assembler = DtlsHandshakeAssembler()
            clients += [(d.frame, b) for b in assembler.feed(d.payload)]
        elif looks_like_dtls_server_hello(d.payload):  # a one-way capture of the server's side
            connections[reverse] = assembler = DtlsHandshakeAssembler()
            servers += [(d.frame, b) for b in assembler.feed_server(d.payload)]
    return clients, servers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_ja3_matches_tshark(name: str) -> None:
    clients, servers = hellos_in_capture(DTLS_PCAPS / name)
    expected = EXPECTED[name]
    assert [(f, ja3_string(parse_client_hello(b))) for f, b in clients] == [
        (r["frame"], r["ja3"]) for r in expected["client"]
    ]
    assert [(f, ja3s_string(parse_server_hello(b))) for f, b in servers] == [
        (r["frame"], r["ja3s"]) for r in expected["server"]
    ]
    # Every two-way capture has the HelloVerifyRequest cookie exchange.
    assert len(clients) == (0 if name.startswith("server-only") else 2)
    assert servers

"""The Rust engine against the Python reference on generated QUIC and DTLS captures.

tests/test_native_differential.py compares the engines on the real QUIC and DTLS captures and
on generated TCP traffic; this adds what those captures do not vary: Initials of both QUIC
versions carrying a ClientHello cut into CRYPTO pieces (out of order, coalesced, repeated,
interleaved with PING/PADDING/ACK), server Initials with a ServerHello or a HelloRetryRequest,
a client starting over under a new DCID, DTLS hellos in fragments across records and datagrams
with the HelloVerifyRequest cookie exchange, datagrams reordered, duplicated and damaged. The
packets are built by the unit tests' builders (tests/unit/test_quic.py reproduces the RFC 9001
and RFC 9369 packets byte for byte with it) and carried over UDP on several link types; records,
JSON lines and counters must be identical.
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ja3svc.hello import HELLO_RETRY_REQUEST_RANDOM
from ja3svc.quic import QUIC_V1, QUIC_V2
from tests.support import pcap_builder as pb
from tests.test_native_differential import assert_same
from tests.unit.test_dtls import handshake as dtls_handshake
from tests.unit.test_dtls import record as dtls_record
from tests.unit.test_quic import crypto, initial

PROTO_UDP = 17


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _extensions(draw: st.DrawFn, server: bool) -> list[bytes]:
    code = st.integers(0, 0xFFFF) | st.sampled_from([0x0A0A, 0x3A3A])
    pool = [
        pb.versions_ext(*draw(st.lists(code, max_size=3))),
        pb.groups_ext(*draw(st.lists(code, max_size=3))),
        pb.ext(draw(code), draw(st.binary(max_size=6))),
    ]
    if not server:
        pool += [
            pb.sni_ext(draw(st.sampled_from(["", "example.com", "dtls.test"]))),
            pb.alpn_ext(*draw(st.lists(st.sampled_from([b"h3", b"h2", b"\xba"]), max_size=2))),
            pb.sig_algs_ext(*draw(st.lists(code, max_size=3))),
            pb.ext(57, draw(st.binary(max_size=8))),  # quic_transport_parameters
        ]
    return draw(st.lists(st.sampled_from(pool), max_size=6))


def _client_body(draw: st.DrawFn, version: int = 0x0303) -> bytes:
    ciphers = draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=5))
    random = draw(st.binary(min_size=32, max_size=32))
    return pb.client_hello_body(ciphers, _extensions(draw, False), version=version, random=random)


def _server_body(draw: st.DrawFn, version: int = 0x0303) -> bytes:
    random = draw(st.sampled_from([bytes(range(32)), HELLO_RETRY_REQUEST_RANDOM]))
    cipher = draw(st.integers(0, 0xFFFF))
    return pb.server_hello_body(cipher, _extensions(draw, True), version=version, random=random)


def _pieces(draw: st.DrawFn, message: bytes) -> list[tuple[int, bytes]]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(message) - 1)), max_size=3)))
    bounds = [0, *(c for c in cuts if c < len(message)), len(message)]
    return [(a, message[a:b]) for a, b in itertools.pairwise(bounds)]


def _quic_flow(draw: st.DrawFn) -> list[tuple[bool, bytes]]:
    """(from server, UDP payload) of one QUIC connection's Initials."""
    version = draw(st.sampled_from([QUIC_V1, QUIC_V2]))
    dcid = draw(st.binary(min_size=8, max_size=20))
    out: list[tuple[bool, bytes]] = []
    for attempt in range(draw(st.integers(1, 2))):  # a second attempt: a new DCID (Retry)
        if attempt:
            dcid = draw(st.binary(min_size=8, max_size=20))
        message = pb.handshake(1, _client_body(draw))
        fillers = st.sampled_from([b"", b"\x01", b"\x00\x00\x00", b"\x02\x00\x00\x00\x00"])
        packets = [
            initial(
                draw(fillers) + crypto(offset, data) + draw(fillers),
                version=version,
                dcid=dcid,
                pn=pn,
                token=b"retry-token" if attempt else b"",
            )
            for pn, (offset, data) in enumerate(_pieces(draw, message))
        ]
        packets = draw(st.permutations(packets))
        if draw(st.booleans()):
            packets.append(draw(st.sampled_from(packets)))  # a retransmission
        coalesce = draw(st.booleans())
        datagrams = [b"".join(packets[i : i + 2]) for i in range(0, len(packets), 2)]
        out += [(False, d) for d in (datagrams if coalesce else packets)]
        if draw(st.booleans()):
            payload = b"\x02\x00\x00\x00\x00" + crypto(0, pb.handshake(2, _server_body(draw)))
            out.append((True, initial(payload, version=version, dcid=dcid, server=True, pad_to=0)))
    return out


def _dtls_flow(draw: st.DrawFn) -> list[tuple[bool, bytes]]:
    """(from server, UDP payload) of one DTLS association's epoch-0 handshake."""
    version = draw(st.sampled_from([0xFEFD, 0xFEFF]))
    cookie = draw(st.binary(min_size=1, max_size=32))
    out: list[tuple[bool, bytes]] = []
    for seq, with_cookie in enumerate([False, True][: draw(st.integers(1, 2))]):
        tls_body = _client_body(draw, version)
        # DTLS puts the cookie vector right after the session_id (empty here).
        body = tls_body[:35] + pb.vec(1, cookie if with_cookie else b"") + tls_body[35:]
        frags = [
            dtls_handshake(1, body, seq=seq, offset=offset, length=len(data))
            for offset, data in _pieces(draw, body)
        ]
        frags = draw(st.permutations(frags))
        records = [dtls_record(f, seq=seq) for f in frags]
        if draw(st.booleans()):
            out.append((False, b"".join(records)))
        else:
            out += [(False, r) for r in records]
        if not with_cookie:
            hvr = bytes.fromhex("fefd") + bytes([len(cookie)]) + cookie
            out.append((True, dtls_record(dtls_handshake(3, hvr, seq=0))))
    if draw(st.booleans()):
        sh = dtls_handshake(2, _server_body(draw, version), seq=1)
        out.append((True, dtls_record(sh, seq=1)))
    return out


@st.composite
def udp_capture(draw: st.DrawFn) -> tuple[bytes, int]:
    link = draw(st.sampled_from(["eth", "sll2", "raw"]))
    linktype = {"eth": 1, "sll2": 276, "raw": 101}[link]
    frames: list[tuple[float, bytes]] = []
    ts = 1_700_000_000.0
    for flow in range(draw(st.integers(1, 3))):
        v6 = draw(st.booleans())
        client = f"fd00::{flow + 1}" if v6 else f"10.0.0.{flow + 1}"
        server = "fd00::ff" if v6 else "10.0.1.1"
        sport = 50000 + flow
        quic = draw(st.booleans())
        datagrams = _quic_flow(draw) if quic else _dtls_flow(draw)
        if draw(st.booleans()):
            datagrams = [datagrams[0], *draw(st.permutations(datagrams[1:]))]
        if draw(st.booleans()):
            at = draw(st.integers(0, len(datagrams) - 1))
            server_side, d = datagrams[at]
            d = bytearray(d)
            d[draw(st.integers(0, len(d) - 1))] ^= draw(st.integers(1, 255))
            datagrams[at] = (server_side, bytes(d))
        dport = 443 if quic else 4433
        for from_server, payload in datagrams:
            src, dst, sp, dp = (
                (server, client, dport, sport) if from_server else (client, server, sport, dport)
            )
            l4 = udp(sp, dp, payload)
            ip = pb.ipv6(src, dst, l4, PROTO_UDP) if v6 else pb.ipv4(src, dst, l4, PROTO_UDP)
            frame = {"eth": pb.ethernet, "sll2": pb.sll2, "raw": lambda p: p}[link](ip)
            ts += draw(st.sampled_from([0.000001, 0.01, 2.0]))
            frames.append((ts, frame))
    return pb.pcap_bytes(frames, linktype), draw(st.integers(0, 1000))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(udp_capture())
def test_generated_quic_and_dtls_captures(case: tuple[bytes, int]) -> None:
    data, seed = case
    ref = assert_same(data, seed=seed)
    assert ref.totals.packets > 0


def test_malformed_hellos_are_counted_under_the_same_names() -> None:
    """Hellos whose message is whole but whose fields overrun it, from both sides over TCP,
    QUIC and DTLS: each engine counts each under its transport's name (and finds no hello)."""
    good_client = pb.client_hello_body([0x1301], [pb.sni_ext("x.test")])
    good_server = pb.server_hello_body(0x1301, [pb.versions_ext(0x0304)], random=bytes(32))
    client_body, server_body = good_client[:-3], good_server[:-3]  # extensions overrun
    dtls_client = client_body[:35] + pb.vec(1, b"") + client_body[35:]  # an empty cookie
    c, s = "10.0.0.1", "10.0.1.1"
    frames = [
        pb.ethernet(pb.ipv4(c, s, pb.tcp(40001, 443, 1, 1, pb.TCP_ACK,
                                         pb.record(22, pb.handshake(1, client_body))))),
        pb.ethernet(pb.ipv4(s, c, pb.tcp(443, 40001, 1, 2, pb.TCP_ACK,
                                         pb.record(22, pb.handshake(2, server_body))))),
        pb.ethernet(pb.ipv4(c, s, udp(50001, 443, initial(crypto(0, pb.handshake(1, client_body))))
                            , PROTO_UDP)),
        pb.ethernet(pb.ipv4(s, c, udp(443, 50001, initial(
            b"\x02\x00\x00\x00\x00" + crypto(0, pb.handshake(2, server_body)),
            server=True, pad_to=0)), PROTO_UDP)),
        pb.ethernet(pb.ipv4(c, s, udp(50002, 4433, dtls_record(dtls_handshake(1, dtls_client))),
                            PROTO_UDP)),
        pb.ethernet(pb.ipv4(s, c, udp(4433, 50002,
                                      dtls_record(dtls_handshake(2, server_body, seq=1), seq=1)),
                            PROTO_UDP)),
    ]  # fmt: skip
    data = pb.pcap_bytes([(1_700_000_000.0 + i, f) for i, f in enumerate(frames)])
    ref = assert_same(data)
    assert ref.records == []
    assert {k: v for k, v in ref.totals.counters.items() if k.startswith("malformed.")} == {
        f"malformed.{prefix}{side}_hello_truncated": 1
        for prefix in ("", "quic_", "dtls_")
        for side in ("client", "server")
    }

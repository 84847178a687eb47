"""ClientHello / ServerHello parsing: annotated wire fixtures in, raw lists out.

Fixtures are written byte by byte from RFC 5246 / RFC 8446 section 4, each line annotated with
the field it encodes, so a reader can check every length by hand. Expected values are the
numbers written in the fixture, never output of the parser pasted back.
"""

from __future__ import annotations

import pytest

from ja3svc.hello import (
    HELLO_RETRY_REQUEST_RANDOM,
    ClientHello,
    HelloError,
    parse_client_hello,
    parse_server_hello,
)
from ja3svc.ja3 import ja3_string, md5_hex
from tests.support.pcap_builder import (
    alpn_ext,
    client_hello_body,
    ext,
    groups_ext,
    point_formats_ext,
    server_hello_body,
    sni_ext,
    versions_ext,
)


def hexfix(*lines: str) -> bytes:
    """Join annotated hex lines: everything after '#' on a line is a comment."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in lines))


# The first JA3 README vector as a real record: 769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,
# 0-10-11,23-24-25,0 -> ada70206e40642a3e4461f35503241d5.
JA3_README_HELLO = hexfix(
    "16 0301 006b",  # record header: handshake, TLS 1.0, 107 bytes
    "01 000067",  # handshake header: ClientHello, 103 bytes
    "0301",  # legacy_version TLS 1.0 = 769
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",  # random (32 bytes)
    "00",  # session_id: empty
    "0018",  # cipher_suites: 24 bytes = 12 suites
    "002f 0035 0005 000a c009 c00a c013 c014 0032 0038 0013 0004",  # 47 53 5 10 49161 ... 4
    "01 00",  # compression_methods: 1 byte, null
    "0026",  # extensions block: 38 bytes
    "0000 0010",  # ext 0 server_name, 16 bytes
    "000e 00 000b 6578616d706c652e636f6d",  # list 14 bytes: host_name(0), 11 bytes, example.com
    "000a 0008",  # ext 10 supported_groups, 8 bytes
    "0006 0017 0018 0019",  # list 6 bytes: 23 24 25
    "000b 0002",  # ext 11 ec_point_formats, 2 bytes
    "01 00",  # list 1 byte: uncompressed (0)
)
RECORD_HEADER, HANDSHAKE_HEADER = 5, 4
JA3_README_BODY = JA3_README_HELLO[RECORD_HEADER + HANDSHAKE_HEADER :]


def test_fixture_lengths_are_self_consistent() -> None:
    # Guard the hand-written fixture itself: record and handshake lengths match what follows.
    assert int.from_bytes(JA3_README_HELLO[3:5], "big") == len(JA3_README_HELLO) - 5
    assert int.from_bytes(JA3_README_HELLO[6:9], "big") == len(JA3_README_BODY)


def test_annotated_hello_fields() -> None:
    h = parse_client_hello(JA3_README_BODY)
    assert h.legacy_version == 0x0301
    assert h.ciphers == (47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4)
    assert h.extensions == (0, 10, 11)
    assert h.supported_groups == (23, 24, 25)
    assert h.ec_point_formats == (0,)
    assert h.signature_algorithms == ()
    assert h.supported_versions == ()
    assert h.sni == "example.com"
    assert h.alpn == ()
    assert h.duplicate_extensions == ()


def test_annotated_hello_gives_published_ja3() -> None:
    s = ja3_string(parse_client_hello(JA3_README_BODY))
    assert s == "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    assert md5_hex(s) == "ada70206e40642a3e4461f35503241d5"


# Second README vector: no extensions block at all (SSL 3.0-style hello).
NO_EXTENSIONS_BODY = hexfix(
    "0301",  # legacy_version 769
    "00" * 32,  # random
    "00",  # session_id: empty
    "0016",  # cipher_suites: 22 bytes = 11 suites
    "0004 0005 000a 0009 0064 0062 0003 0006 0013 0012 0063",  # 4 5 10 9 100 98 3 6 19 18 99
    "01 00",  # compression: null
    # body ends here: no extensions length at all
)


def test_hello_without_extensions_block() -> None:
    h = parse_client_hello(NO_EXTENSIONS_BODY)
    assert h.extensions == () and h.supported_groups == () and h.ec_point_formats == ()
    assert h.sni is None and h.alpn == ()
    s = ja3_string(h)
    assert s == "769,4-5-10-9-100-98-3-6-19-18-99,,,"  # empty fields keep their commas
    assert md5_hex(s) == "de350869b8c85de67a350c8d186f11e6"


def test_empty_extensions_block_equals_missing_block() -> None:
    body = client_hello_body([4, 5, 10], [], version=0x0301)  # "0000" extensions length
    assert ja3_string(parse_client_hello(body)) == "769,4-5-10,,,"


def test_session_id_and_compression_are_skipped() -> None:
    body = client_hello_body([0x1301], [], session_id=bytes(range(32)), compression=b"\x01\x00")
    h = parse_client_hello(body)
    assert h.ciphers == (0x1301,)
    assert h.extensions == ()


def test_grease_kept_raw_by_parser_and_exact_table_in_ja3() -> None:
    # Parser keeps GREASE (0x0a0a, 0x2a2a, 0xfafa); JA3 drops exactly those, but keeps 0x1a2a,
    # which a mask test (v & 0x0f0f == 0x0a0a) would wrongly drop.
    body = client_hello_body(
        [0x0A0A, 0x1301, 0x1A2A],
        [ext(0x2A2A), groups_ext(0xFAFA, 0x1A2A, 29), point_formats_ext(0), ext(0x1A2A)],
    )
    h = parse_client_hello(body)
    assert h.ciphers == (0x0A0A, 0x1301, 0x1A2A)
    assert h.extensions == (0x2A2A, 10, 11, 0x1A2A)
    assert h.supported_groups == (0xFAFA, 0x1A2A, 29)
    # 0x1301 = 4865, 0x1a2a = 6698
    assert ja3_string(h) == "771,4865-6698,10-11-6698,6698-29,0"


def test_duplicate_groups_and_point_formats_last_wins() -> None:
    body = client_hello_body(
        [0x002F],
        [groups_ext(23), point_formats_ext(0), groups_ext(29, 24), point_formats_ext(1, 2)],
    )
    h = parse_client_hello(body)
    assert h.extensions == (10, 11, 10, 11)
    assert h.supported_groups == (29, 24)
    assert h.ec_point_formats == (1, 2)
    assert sorted(h.duplicate_extensions) == [10, 11]
    assert ja3_string(h) == "771,47,10-11-10-11,29-24,1-2"


def test_tls13_hello_without_point_formats_ends_in_empty_field() -> None:
    body = client_hello_body([0x1301], [groups_ext(23), versions_ext(0x0304)])
    assert ja3_string(parse_client_hello(body)) == "771,4865,10-43,23,"


def test_sni_and_alpn_extraction() -> None:
    body = client_hello_body(
        [0x1301], [sni_ext("mail.example.org"), alpn_ext(b"imap", b"h2", b"http/1.1")]
    )
    h = parse_client_hello(body)
    assert h.sni == "mail.example.org"
    assert h.alpn == (b"imap", b"h2", b"http/1.1")


def test_sni_skips_non_host_name_entries() -> None:
    # server_name_list: an entry of unknown type 7 ("abc"), then host_name "x.test".
    data = b"\x07\x00\x03abc" + b"\x00\x00\x06x.test"
    body = client_hello_body([0x1301], [ext(0, len(data).to_bytes(2, "big") + data)])
    assert parse_client_hello(body).sni == "x.test"


def test_empty_sni_and_alpn_extensions() -> None:
    # A ServerHello-style empty server_name (0 bytes) is legal in a ClientHello too.
    h = parse_client_hello(client_hello_body([0x1301], [ext(0), ext(16)]))
    assert h.sni is None and h.alpn == ()
    assert h.extensions == (0, 16)


def test_signature_algorithms_and_supported_versions_raw() -> None:
    body = client_hello_body(
        [0x1301],
        [
            ext(13, bytes.fromhex("0006 0403 0804 0401")),  # 3 algorithms, wire order kept
            ext(43, bytes.fromhex("06 7a7a 0304 0303")),  # GREASE, TLS 1.3, TLS 1.2
        ],
    )
    h = parse_client_hello(body)
    assert h.signature_algorithms == (0x0403, 0x0804, 0x0401)
    assert h.supported_versions == (0x7A7A, 0x0304, 0x0303)


# --- every HelloError reason ----------------------------------------------------------------

GOOD = client_hello_body([0x1301, 0x1302], [sni_ext("a.test"), groups_ext(29)])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "truncated"),
        (b"\x03\x03", "truncated"),  # version only
        (b"\x03\x03" + bytes(32), "truncated"),  # no session_id length
        (b"\x03\x03" + bytes(32) + b"\x20" + bytes(5), "truncated"),  # session_id says 32
        (b"\x03\x03" + bytes(32) + b"\x00\x00", "truncated"),  # half a cipher_suites length
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x04\x13\x01", "truncated"),  # ciphers say 4, have 2
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x03\x13\x01\x13\x01\x00", "odd_length"),
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01", "truncated"),  # no compression
        (b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x02\x00", "truncated"),  # compr. 2, 1
        (GOOD[:-1], "truncated"),  # last extension cut by one byte
        (client_hello_body([1], [])[:-2] + b"\x00\x02\x00\x0a", "truncated"),  # ext header 2/4
        (client_hello_body([1], [ext(10, b"\x00\x03\x00\x17\x00")]), "odd_length"),  # groups
        (client_hello_body([1], [ext(10, b"\x00\x04\x00\x17")]), "truncated"),  # groups vector
        (client_hello_body([1], [ext(11, b"\x05\x00")]), "truncated"),  # point formats vector
        (client_hello_body([1], [ext(13, b"\x00\x01\x04")]), "odd_length"),  # sig algs
        (client_hello_body([1], [ext(43, b"\x03\x03\x04\x03")]), "odd_length"),  # versions
        (client_hello_body([1], [ext(0, b"\x00\x09\x00\x00\x01a")]), "truncated"),  # SNI list
        (client_hello_body([1], [ext(0, b"\x00\x04\x00\x00\x05a")]), "truncated"),  # SNI name
        (client_hello_body([1], [ext(16, b"\x00\x03\x05h2")]), "truncated"),  # ALPN name
        (client_hello_body([1], [ext(16, b"\x00")]), "truncated"),  # ALPN list length
    ],
)
def test_client_hello_error_reasons(body: bytes, reason: str) -> None:
    with pytest.raises(HelloError) as info:
        parse_client_hello(body)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_every_truncation_of_a_good_hello_is_a_helloerror() -> None:
    # Cutting anywhere except after the compression methods (a legal hello without
    # extensions) or at the very end must raise "truncated" (never IndexError or a result).
    h = parse_client_hello(GOOD)
    assert h.sni == "a.test"
    no_ext_end = 2 + 32 + 1 + 2 + 4 + 2
    for cut in range(len(GOOD)):
        if cut == no_ext_end:
            assert parse_client_hello(GOOD[:cut]).extensions == ()
            continue
        with pytest.raises(HelloError) as info:
            parse_client_hello(GOOD[:cut])
        assert info.value.reason == "truncated", cut


# --- ServerHello and HelloRetryRequest --------------------------------------------------------

SERVER_HELLO_TLS13 = hexfix(
    "0303",  # legacy_version 771
    "11" * 32,  # random (not the HRR value)
    "20" + "ab" * 32,  # legacy_session_id_echo: 32 bytes
    "1302",  # cipher_suite TLS_AES_256_GCM_SHA384 = 4866
    "00",  # legacy_compression_method
    "002e",  # extensions: 46 bytes
    "002b 0002 0304",  # supported_versions: selected TLS 1.3
    "0033 0024 001d 0020" + "cd" * 32,  # key_share: x25519, 32-byte key
)


def test_server_hello_tls13() -> None:
    s = parse_server_hello(SERVER_HELLO_TLS13)
    assert s.legacy_version == 771
    assert s.cipher == 0x1302
    assert s.extensions == (43, 51)
    assert s.selected_version == 0x0304
    assert s.is_hello_retry_request is False
    assert s.alpn is None


def test_hello_retry_request_detected_by_its_random() -> None:
    # RFC 8446 4.1.3: SHA-256("HelloRetryRequest").
    import hashlib

    assert HELLO_RETRY_REQUEST_RANDOM == hashlib.sha256(b"HelloRetryRequest").digest()
    body = server_hello_body(
        0x1302, [versions_ext_server(0x0304), ext(51, b"\x00\x18")],
        random=hashlib.sha256(b"HelloRetryRequest").digest(),
    )  # fmt: skip
    s = parse_server_hello(body)
    assert s.is_hello_retry_request is True
    assert s.extensions == (43, 51)


def versions_ext_server(version: int) -> bytes:
    return ext(43, version.to_bytes(2, "big"))


def test_server_hello_tls12_without_extensions_and_alpn() -> None:
    s = parse_server_hello(server_hello_body(0xC02F, None))
    assert (s.cipher, s.extensions, s.selected_version) == (0xC02F, (), None)
    s = parse_server_hello(server_hello_body(0xC02F, [ext(0xFF01, b"\x00"), alpn_ext(b"h2")]))
    assert s.extensions == (0xFF01, 16) and s.alpn == b"h2"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x03\x03" + bytes(32),  # no session id length
        b"\x03\x03" + bytes(32) + b"\x00\x13",  # half a cipher, no compression
        server_hello_body(0x1301, [ext(43, b"\x03\x04")])[:-1],  # extension cut
        server_hello_body(0x1301, [ext(16, b"\x00\x03\x05h2")]),  # ALPN name overruns
    ],
)
def test_server_hello_errors_are_truncated(body: bytes) -> None:
    with pytest.raises(HelloError) as info:
        parse_server_hello(body)
    assert info.value.reason == "truncated"


def test_client_hello_is_frozen_value() -> None:
    h = parse_client_hello(GOOD)
    assert isinstance(h, ClientHello)
    with pytest.raises(AttributeError):
        h.sni = "other"  # type: ignore[misc]
    assert parse_client_hello(GOOD) == h

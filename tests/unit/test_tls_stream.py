"""TlsStreamParser driven with byte strings, h11 style: feed chunks, look at what comes out.

Every stream here is built from RFC 5246/8446 record and handshake framing with
tests.support.pcap_builder; the expected output is the handshake body that was put in.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ja3svc.tls_stream import MAX_PLAINTEXT, TlsStreamParser
from tests.support.pcap_builder import (
    client_hello_body,
    ext,
    groups_ext,
    handshake,
    record,
    server_hello_body,
    sni_ext,
    versions_ext,
)

HANDSHAKE, CCS, ALERT, APPDATA = 22, 20, 21, 23
CH, SH, CERT, SHD, FINISHED = 1, 2, 11, 14, 20

HELLO = client_hello_body(
    [0x1301, 0x1302, 0xC02F], [sni_ext("imap.example.net"), groups_ext(29, 23), ext(0xFF01, b"\0")]
)
HELLO_RECORD = record(HANDSHAKE, handshake(CH, HELLO))
SERVER_HELLO = server_hello_body(0xC02F, [ext(0xFF01, b"\0")])


def feed_all(chunks: Iterable[bytes], parser: TlsStreamParser | None = None) -> list:
    p = parser or TlsStreamParser()
    out = []
    for chunk in chunks:
        out += p.feed(chunk)
    return out


def hellos(items: list) -> list:
    return [item for item in items if item[0] in (CH, SH)]


def problems(items: list) -> list:
    return [item[1] for item in items if item[0] == 0]


def test_whole_hello_in_one_feed() -> None:
    p = TlsStreamParser()
    assert p.feed(HELLO_RECORD) == [(CH, HELLO)]
    assert not p.done  # the rest of the handshake may still come


def test_one_byte_at_a_time() -> None:
    chunks = [HELLO_RECORD[i : i + 1] for i in range(len(HELLO_RECORD))]
    assert feed_all(chunks) == [(CH, HELLO)]


def test_every_split_point_gives_the_same_single_hello() -> None:
    for i in range(len(HELLO_RECORD) + 1):
        assert feed_all([HELLO_RECORD[:i], HELLO_RECORD[i:]]) == [(CH, HELLO)], i


def test_every_pair_of_split_points() -> None:
    n = len(HELLO_RECORD)
    for i in range(0, n, 3):
        for j in range(i, n, 5):
            got = feed_all([HELLO_RECORD[:i], HELLO_RECORD[i:j], HELLO_RECORD[j:]])
            assert got == [(CH, HELLO)], (i, j)


def test_record_header_alone_then_body() -> None:
    p = TlsStreamParser()
    assert p.feed(HELLO_RECORD[:5]) == []
    assert p.feed(HELLO_RECORD[5:]) == [(CH, HELLO)]


def test_empty_feed_is_harmless() -> None:
    assert feed_all([b"", HELLO_RECORD, b""]) == [(CH, HELLO)]


@pytest.mark.parametrize("pieces", [2, 3])
def test_handshake_message_spanning_records(pieces: int) -> None:
    msg = handshake(CH, HELLO)
    size = -(-len(msg) // pieces)
    stream = b"".join(record(HANDSHAKE, msg[k : k + size]) for k in range(0, len(msg), size))
    assert stream.count(b"\x16\x03\x01") >= pieces
    assert feed_all([stream]) == [(CH, HELLO)]
    assert feed_all([stream[i : i + 7] for i in range(0, len(stream), 7)]) == [(CH, HELLO)]


def test_handshake_header_split_across_records() -> None:
    # The 4-byte handshake header itself is cut 2/2 between two records.
    msg = handshake(CH, HELLO)
    stream = record(HANDSHAKE, msg[:2]) + record(HANDSHAKE, msg[2:])
    assert feed_all([stream]) == [(CH, HELLO)]


def test_several_messages_in_one_record() -> None:
    certificate = handshake(CERT, b"\x00\x00\x05" + b"\x00\x00\x02" + b"\x30\x00")
    flight = handshake(SH, SERVER_HELLO) + certificate + handshake(SHD, b"")
    stream = record(HANDSHAKE, flight, 0x0303)
    assert feed_all([stream]) == [(SH, SERVER_HELLO)]
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == [(SH, SERVER_HELLO)]


def test_certificate_spanning_records_is_skipped_and_parsing_goes_on() -> None:
    # ServerHello, then a 40 KB Certificate over three records; nothing after it is a hello.
    cert = handshake(CERT, bytes(40_000))
    stream = record(HANDSHAKE, handshake(SH, SERVER_HELLO), 0x0303)
    for k in range(0, len(cert), 16_000):
        stream += record(HANDSHAKE, cert[k : k + 16_000], 0x0303)
    stream += record(HANDSHAKE, handshake(SHD, b""), 0x0303)
    p = TlsStreamParser()
    assert feed_all([stream[i : i + 1000] for i in range(0, len(stream), 1000)], p) == [
        (SH, SERVER_HELLO)
    ]
    assert not p.done


# --- HelloRetryRequest: CCS, then the second ClientHello -----------------------------------

HELLO2 = client_hello_body([0x1301], [versions_ext(0x0304), ext(51, b"\x00\x00")])
HRR_CLIENT_STREAM = (
    record(HANDSHAKE, handshake(CH, HELLO))
    + record(CCS, b"\x01", 0x0303)  # middlebox-compatibility ChangeCipherSpec
    + record(HANDSHAKE, handshake(CH, HELLO2), 0x0303)
    + record(APPDATA, bytes(50), 0x0303)  # encrypted Finished disguised as application data
)


def test_ccs_then_second_client_hello() -> None:
    p = TlsStreamParser()
    assert p.feed(HRR_CLIENT_STREAM) == [(CH, HELLO), (CH, HELLO2)]
    assert p.done  # application data ends the direction


def test_ccs_then_second_client_hello_every_split_point() -> None:
    for i in range(len(HRR_CLIENT_STREAM) + 1):
        got = feed_all([HRR_CLIENT_STREAM[:i], HRR_CLIENT_STREAM[i:]])
        assert got == [(CH, HELLO), (CH, HELLO2)], i


def test_ccs_then_second_client_hello_one_byte_at_a_time() -> None:
    chunks = [HRR_CLIENT_STREAM[i : i + 1] for i in range(len(HRR_CLIENT_STREAM))]
    assert feed_all(chunks) == [(CH, HELLO), (CH, HELLO2)]


@pytest.mark.parametrize(
    "ciphertext",
    [
        # Starts 01 000024: a "ClientHello" of 36 bytes exactly filling the 40-byte record, but
        # its "version" byte is 0x00, not 0x03.
        bytes.fromhex("01000024") + bytes(36),
        # Starts 01 000020: a "ClientHello" of 32 bytes that does not fill the 40-byte record.
        bytes.fromhex("01000020") + b"\x03" * 36,
        bytes(range(200, 240)),  # type 200: not a hello at all
    ],
)
def test_tls12_encrypted_finished_after_ccs_is_not_a_problem(ciphertext: bytes) -> None:
    # Client's second flight in TLS 1.2: ClientKeyExchange, CCS, encrypted Finished (40 bytes
    # of ciphertext in a handshake record), then application data.
    stream = (
        record(HANDSHAKE, handshake(CH, HELLO))
        + record(HANDSHAKE, handshake(16, b"\x20" + bytes(32)), 0x0303)
        + record(CCS, b"\x01", 0x0303)
        + record(HANDSHAKE, ciphertext, 0x0303)  # encrypted Finished
        + record(APPDATA, bytes(64), 0x0303)
    )
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        p = TlsStreamParser()
        assert feed_all(chunks, p) == [(CH, HELLO)]
        assert p.done


def test_application_data_ends_the_direction() -> None:
    p = TlsStreamParser()
    p.feed(record(HANDSHAKE, handshake(CH, HELLO)) + record(APPDATA, b"x" * 10, 0x0303))
    assert p.done
    # A perfectly good hello afterwards is not looked at (it would be ciphertext).
    assert p.feed(HELLO_RECORD) == []


def test_stream_starting_with_application_data_is_done_quietly() -> None:
    p = TlsStreamParser()
    assert p.feed(record(APPDATA, bytes(100), 0x0303)) == []
    assert p.done


def test_alert_record_is_skipped() -> None:
    # A fatal or encrypted-looking alert at stream start means a capture joined mid-connection.
    for alert in (b"\x02\x28", b"\x01\x00\x00"):
        p = TlsStreamParser()
        assert p.feed(record(ALERT, alert, 0x0303) + HELLO_RECORD) == []
        assert p.done
    # After a hello, an alert record is skipped without a problem.
    assert feed_all([HELLO_RECORD + record(ALERT, b"\x02\x28", 0x0303)]) == [(CH, HELLO)]


@pytest.mark.parametrize("split", [0, 3, 7, 9, 12])
def test_warning_alert_before_the_hello(split: int) -> None:
    # unrecognized_name (112) sent as a warning before the ServerHello (OpenSSL s_server does
    # this on an SNI mismatch; tests/pcaps/server-alert has a real one), in any chunking.
    stream = record(ALERT, b"\x01\x70", 0x0303) + HELLO_RECORD
    chunks = [stream[:split], stream[split:]] if split else [stream]
    assert feed_all(chunks) == [(CH, HELLO)]


def test_warning_alert_then_not_a_handshake_is_a_session_under_way() -> None:
    p = TlsStreamParser()
    assert p.feed(record(ALERT, b"\x01\x70", 0x0303)) == []
    assert p.feed(record(ALERT, b"\x02\x50", 0x0303) + HELLO_RECORD) == []
    assert p.done


# --- STARTTLS -------------------------------------------------------------------------------

IMAP_CLIENT = b"a001 CAPABILITY\r\na002 STARTTLS\r\n"
SMTP_CLIENT = b"EHLO client.example\r\nSTARTTLS\r\n"
POP3_CLIENT = b"CAPA\r\nSTLS\r\n"


@pytest.mark.parametrize("plaintext", [IMAP_CLIENT, SMTP_CLIENT, POP3_CLIENT])
def test_starttls_hello_after_plaintext_in_separate_chunks(plaintext: bytes) -> None:
    lines = plaintext.split(b"\r\n")[:-1]
    chunks = [line + b"\r\n" for line in lines] + [HELLO_RECORD]
    assert feed_all(chunks) == [(CH, HELLO)]


@pytest.mark.parametrize("plaintext", [IMAP_CLIENT, SMTP_CLIENT])
def test_starttls_plaintext_and_hello_in_one_chunk(plaintext: bytes) -> None:
    assert feed_all([plaintext + HELLO_RECORD]) == [(CH, HELLO)]


@pytest.mark.parametrize("plaintext", [IMAP_CLIENT, SMTP_CLIENT])
def test_starttls_every_split_point(plaintext: bytes) -> None:
    # Reassembled TCP can hand over the plaintext and the start of the hello in one chunk,
    # cut anywhere -- including inside the 5-byte record header.
    stream = plaintext + HELLO_RECORD
    failures = [
        i for i in range(len(stream) + 1) if feed_all([stream[:i], stream[i:]]) != [(CH, HELLO)]
    ]
    assert failures == []


def test_starttls_one_byte_at_a_time() -> None:
    stream = IMAP_CLIENT + HELLO_RECORD
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == [(CH, HELLO)]


def test_plaintext_that_never_becomes_tls_stops_after_budget() -> None:
    p = TlsStreamParser()
    line = b'a LIST "" *\r\n'
    fed = 0
    while fed <= MAX_PLAINTEXT:
        assert p.feed(line) == []
        fed += len(line)
    assert p.done
    assert p.feed(HELLO_RECORD) == []  # too late: the direction was given up


def test_plaintext_with_0x16_bytes_is_not_mistaken_for_tls() -> None:
    # 0x16 0x03 inside a line (not after a newline) and a record-looking header not followed by
    # a hello type must not start TLS parsing or report a problem.
    noise = b"x\x16\x03\x01\x00\x10\x01abc\r\n" + b"\x16\x03\x01\x00\x10\x0bnot a hello\r\n"
    p = TlsStreamParser()
    assert feed_all([noise, b"more plaintext\r\n"], p) == []
    assert not p.done
    assert p.feed(HELLO_RECORD) == [(CH, HELLO)]


# --- bad input ------------------------------------------------------------------------------


def test_bad_record_header_after_a_hello() -> None:
    stream = HELLO_RECORD + b"\x63\x03\x03\x00\x05hello"  # content type 99
    p = TlsStreamParser()
    assert p.feed(stream) == [(CH, HELLO), (0, "bad_record_header")]
    assert p.done


@pytest.mark.parametrize(
    "header",
    [
        b"\x16\x02\x00\x00\x05",  # major version 2
        b"\x16\x03\x03\x48\x01",  # length 18433 > 2^14 + 2048
    ],
)
def test_bad_record_header_variants(header: bytes) -> None:
    assert problems(feed_all([HELLO_RECORD, header, bytes(10)])) == ["bad_record_header"]


def test_oversized_hello() -> None:
    # A ClientHello header announcing 70000 bytes (> 64 KiB) spread over records.
    msg = b"\x01" + (70_000).to_bytes(3, "big") + bytes(10_000)
    stream = record(HANDSHAKE, msg)
    p = TlsStreamParser()
    assert problems(p.feed(stream)) == ["oversized_hello"]
    assert p.done


def test_sslv2_compatible_hello_gives_nothing_and_no_crash() -> None:
    # SSLv2 record: 2-byte length with the high bit set, msg type 1 (CLIENT-HELLO), version 3.1,
    # cipher spec length 3, session id length 0, challenge length 16.
    v2 = bytes.fromhex("801f 01 0301 0003 0000 0010 000004") + bytes(16)
    for chunks in ([v2], [v2[:1], v2[1:]], [v2[i : i + 1] for i in range(len(v2))]):
        p = TlsStreamParser()
        assert feed_all(chunks, p) == []


def test_hellos_per_direction_are_bounded() -> None:
    p = TlsStreamParser()
    got = p.feed(HELLO_RECORD * 10)
    assert 2 <= len(got) < 10
    assert p.done


@pytest.mark.parametrize(
    "junk",
    [
        b"\x16\x03\x01\x00\x00",  # zero-length handshake record at stream start
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # ClientHello of length 0
        b"\x16" * 100,
        bytes(range(256)) * 4,
    ],
)
def test_junk_never_raises(junk: bytes) -> None:
    p = TlsStreamParser()
    for i in range(0, len(junk), 3):
        p.feed(junk[i : i + 3])
    TlsStreamParser().feed(junk)


@pytest.mark.parametrize("first", [b"\x14", b"\x15", b"\x16", b"\x17", b"\x80", b"\x16\x03"])
def test_one_or_two_bytes_at_stream_start_are_no_error(first: bytes) -> None:
    # Found by Hypothesis: a 1-byte first chunk made the mid-stream check read past its end.
    p = TlsStreamParser()
    assert p.feed(first) == []
    assert not any(kind == 0 for kind, _ in p.feed(b"x" * 10))


# --- the stream's start, judged on enough bytes ----------------------------------------------


@pytest.mark.parametrize("first", [1, 2, 3, 4])
def test_session_under_way_is_recognised_behind_a_tiny_first_chunk(first: int) -> None:
    # Ciphertext holding "\n" + a valid hello record must not be searched as plaintext just
    # because the first segment had fewer bytes than a record header.
    stream = record(APPDATA, b"ciphertext\n" + HELLO_RECORD, 0x0303) + HELLO_RECORD
    p = TlsStreamParser()
    assert feed_all([stream[:first], stream[first:]], p) == []
    assert p.done


@pytest.mark.parametrize("first", [1, 2, 3, 4])
def test_sslv2_hello_is_recognised_behind_a_tiny_first_chunk(first: int) -> None:
    v2 = bytes.fromhex("801f 01 0301 0003 0000 0010 000004") + bytes(16)
    p = TlsStreamParser()
    assert feed_all([v2[:first], v2[first:]], p) == []
    assert p.done


@pytest.mark.parametrize("first", [1, 2, 3, 4, 5])
def test_hello_behind_a_tiny_first_chunk(first: int) -> None:
    assert feed_all([HELLO_RECORD[:first], HELLO_RECORD[first:]]) == [(CH, HELLO)]


def test_short_plaintext_start_then_starttls() -> None:
    # A 4-byte first line ("OK\r\n") waits for a fifth byte, then reads as plaintext.
    assert feed_all([b"OK\r\n", HELLO_RECORD]) == [(CH, HELLO)]
    assert feed_all([b"OK", b"\r\n", HELLO_RECORD[:3], HELLO_RECORD[3:]]) == [(CH, HELLO)]


# --- plaintext: a hello starts a line, wherever the segments end -----------------------------


@pytest.mark.parametrize("cut", [0, 3, 5, 6])
def test_segment_starting_with_a_record_header_inside_a_line_is_plaintext(cut: int) -> None:
    # IMAP before STARTTLS: a command's argument that happens to begin a TCP segment with
    # 16 03 01 ... 01 is not a TLS record (tshark's IMAP dissector keeps it as IMAP).
    p = TlsStreamParser()
    pieces = [HELLO_RECORD[:cut], HELLO_RECORD[cut:]] if cut else [HELLO_RECORD]
    chunks = [b"a001 LOGIN ", *pieces]
    assert feed_all(chunks, p) == []
    assert not p.done
    assert feed_all([b"\r\na002 STARTTLS\r\n", HELLO_RECORD], p) == [(CH, HELLO)]


def test_hello_after_a_newline_ending_the_previous_segment() -> None:
    assert feed_all([b"a002 STARTTLS\r\n", HELLO_RECORD[:1], HELLO_RECORD[1:]]) == [(CH, HELLO)]


def test_hello_after_a_binary_prologue_in_its_own_segment() -> None:
    # SOCKS5 (RFC 1928): greeting, then CONNECT to port 443; the client's TLS starts with a new
    # write after the proxy's reply, with no newline anywhere (the FoxIO socks capture has one).
    socks = [b"\x05\x01\x00", b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"]
    assert feed_all([*socks, HELLO_RECORD]) == [(CH, HELLO)]
    # PostgreSQL's SSLRequest (length 8, code 80877103) before the hello.
    assert feed_all([b"\x00\x00\x00\x08\x04\xd2\x16\x2f", HELLO_RECORD]) == [(CH, HELLO)]


def test_hello_after_an_xmpp_proceed() -> None:
    # XMPP (RFC 6120): <starttls/> ends with ">" and no newline.
    stream = [b"<?xml version='1.0'?><stream:stream to='example.com'>", b"<starttls/>"]
    assert feed_all([*stream, HELLO_RECORD]) == [(CH, HELLO)]


# --- IMAP literals before STARTTLS --------------------------------------------------------------

FAKE = client_hello_body([0x1301], [sni_ext("fake.example")])
FAKE_RECORD = record(HANDSHAKE, handshake(CH, FAKE))


def literal_dialogue(announce: bytes) -> bytes:
    """IMAP before STARTTLS with a command argument sent as a literal (RFC 9051 4.3, RFC 7888)
    holding a hello record of its own, then STARTTLS and the real hello. ``announce`` has N
    for the literal's length."""
    size = str(len(FAKE_RECORD)).encode()
    return (
        b'a001 ID ("x" '
        + announce.replace(b"N", size)
        + FAKE_RECORD
        + b")\r\na002 STARTTLS\r\n"
        + HELLO_RECORD
    )


ANNOUNCEMENTS = [b"{N}\r\n", b"{N+}\r\n", b"{N-}\r\n", b"{N}\n", b"{0000N+}\r\n"]


@pytest.mark.parametrize("announce", ANNOUNCEMENTS)
def test_literal_holding_a_hello_is_plaintext_wherever_segments_split(announce: bytes) -> None:
    # tshark's IMAP dissector keeps the literal as IMAP: only the hello after STARTTLS counts.
    stream = literal_dialogue(announce)
    assert feed_all([stream]) == [(CH, HELLO)]
    assert feed_all(stream[i : i + 1] for i in range(len(stream))) == [(CH, HELLO)]
    for i in range(len(stream) + 1):
        assert feed_all([stream[:i], stream[i:]]) == [(CH, HELLO)], i


def test_literal_every_pair_of_split_points_around_it() -> None:
    # Splits inside "{N+}", between "}" and CRLF, inside the literal and right after it.
    stream = literal_dialogue(b"{N+}\r\n")
    start = stream.index(b"{")
    after = start + len(b"{N+}\r\n") + 2 + len(FAKE_RECORD) + 3
    for i in range(start, after):
        for j in range(i, after + 2):
            got = feed_all([stream[:i], stream[i:j], stream[j:]])
            assert got == [(CH, HELLO)], (i, j)


def test_literal_starting_its_own_segment_after_the_continuation() -> None:
    # A synchronising literal is sent once the server's "+" continuation is back: it starts a
    # segment of its own, where the hello at the start of a line used to be taken as TLS.
    size = str(len(FAKE_RECORD)).encode()
    p = TlsStreamParser()
    assert feed_all([b"a001 LOGIN {" + size + b"}\r\n", FAKE_RECORD], p) == []
    assert feed_all([b" {6}\r\n", b"secret", b"\r\n"], p) == []
    assert not p.done
    assert feed_all([b"a002 STARTTLS\r\n", HELLO_RECORD], p) == [(CH, HELLO)]


def test_a_hello_inside_a_literal_after_a_newline_is_plaintext() -> None:
    literal = b"x\r\n" + FAKE_RECORD
    stream = b"a001 ID {%d}\r\n" % len(literal) + literal + b"\r\na002 STARTTLS\r\n" + HELLO_RECORD
    assert feed_all([stream]) == [(CH, HELLO)]


def test_an_announcement_inside_a_literal_is_literal_data() -> None:
    # The 5-byte literal "{9}\r\n" announces nothing: the hello after the line's end is real.
    assert feed_all([b"a001 ID {5}\r\n{9}\r\n)\r\n", HELLO_RECORD]) == [(CH, HELLO)]
    assert feed_all([b"a001 ID {5}\r\n{9}\r\n)\r\n" + HELLO_RECORD]) == [(CH, HELLO)]


def test_the_line_goes_on_after_a_literal() -> None:
    # An empty literal, then a segment that starts with a hello record: still inside the line.
    p = TlsStreamParser()
    assert feed_all([b"a001 ID {0+}\r\n", HELLO_RECORD], p) == []
    assert not p.done
    assert feed_all([b"\r\n", HELLO_RECORD], p) == [(CH, HELLO)]


@pytest.mark.parametrize(
    "line", [b"a001 ID {}\r\n", b"a001 ID {+5}\r\n", b"a001 ID {5}x\r\n", b"a001 ID {5\r\n"]
)
def test_not_an_announcement(line: bytes) -> None:
    # Not the syntax of a literal: the next line may start the hello, whatever the split.
    stream = line + HELLO_RECORD
    for i in range(len(stream) + 1):
        assert feed_all([stream[:i], stream[i:]]) == [(CH, HELLO)], i


def test_a_huge_literal_spends_the_plaintext_budget() -> None:
    # N is only counted (no int() of 20,000 digits, nothing allocated by it): the literal
    # outlasts MAX_PLAINTEXT, so the direction gives up rather than look inside it.
    p = TlsStreamParser()
    assert feed_all([b"a001 ID {", *[b"9" * 20] * 1000, b"}\r\n", HELLO_RECORD], p) == []
    assert not p.done
    assert feed_all([b"x" * MAX_PLAINTEXT], p) == []
    assert p.done


def test_a_literal_announced_by_the_server_is_plaintext_too() -> None:
    # A FETCH response before STARTTLS is unusual, but its literal is plaintext all the same.
    stream = b"* 1 FETCH (BODY[] {%d}\r\n" % len(FAKE_RECORD) + FAKE_RECORD + b")\r\n"
    assert feed_all([b"* OK ready\r\n", stream, b"a002 OK go\r\n", HELLO_RECORD]) == [(CH, HELLO)]

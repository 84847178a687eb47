"""DTLS 1.0/1.2 handshakes over UDP: records, fragmented handshake messages, the hellos in them.

Rules of this file (same contract as :mod:`ja3svc.quic`):
- No IO: the caller feeds whole UDP payloads, client-to-server through :meth:`feed`,
  server-to-client through :meth:`feed_server`, and gets the hello bodies completed by them.
- Nothing raises on bad input; a datagram or record that cannot be used adds one to
  ``errors[reason]``.
- Memory is bounded: only ClientHello/ServerHello messages are reassembled, each at most
  ``MAX_MESSAGE_LENGTH`` bytes, at most ``MAX_PENDING`` at a time, each in at most
  ``MAX_FRAGMENTS`` pieces.

Wire format (RFC 6347 section 4.1 and 4.2.2):
- record header, 13 bytes: type(1) version(2) epoch(2) sequence_number(6) length(2);
- handshake header, 12 bytes: msg_type(1) length(3) message_seq(2) fragment_offset(3)
  fragment_length(3); a message may be split over several records and datagrams, in any order.
Only epoch 0 is readable; later epochs are encrypted and skipped.

A DTLS ClientHello carries a ``cookie`` vector right after ``session_id``. The first hello has an
empty cookie; a server that wants proof of address answers with HelloVerifyRequest and the client
sends a second ClientHello (next message_seq) with the cookie. Each is returned, in order, with the
cookie vector cut out so that :func:`ja3svc.hello.parse_client_hello` reads it like a TLS hello.
Retransmissions reuse the message_seq and are not returned again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ja3svc.byte_ranges import merge_range

CONTENT_HANDSHAKE = 22
RECORD_HEADER = 13
HANDSHAKE_HEADER = 12
CLIENT_HELLO = 1
SERVER_HELLO = 2
# Record versions of DTLS 1.0 (0xfeff), 1.2 (0xfefd); DTLS 1.3 ClientHellos also use 0xfefd
# on the record layer. 0x0100 is OpenSSL's pre-RFC DTLS 1.0 ("DTLS1_BAD_VER").
RECORD_VERSIONS = frozenset({0xFEFF, 0xFEFD, 0x0100})
MAX_MESSAGE_LENGTH = 64 * 1024  # far above any real hello; the 24-bit field allows 16 MiB
MAX_PENDING = 4  # hello messages being reassembled at once, per direction
MAX_FRAGMENTS = 64  # disjoint pieces per message
MAX_MESSAGE_SEQ = 64  # an epoch-0 handshake has a handful of messages; higher is garbage
_RANDOM_AT = 2  # offset of the 32-byte random in both hello bodies


@dataclass(slots=True)
class _PendingMessage:
    msg_type: int
    length: int
    buf: bytearray
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def add(self, offset: int, data: bytes) -> bool:
        """Store a fragment; False when it would exceed the fragment limit."""
        end = offset + len(data)
        merged = merge_range(self.ranges, offset, end)
        if len(merged) > MAX_FRAGMENTS:
            return False
        self.ranges = merged
        self.buf[offset:end] = data
        return True

    def complete(self) -> bool:
        return self.ranges == [(0, self.length)] or self.length == 0


class _Direction:
    """Handshake reassembly for one direction of the association."""

    __slots__ = ("done", "pending", "randoms")

    def __init__(self) -> None:
        self.pending: dict[int, _PendingMessage] = {}
        self.done: set[int] = set()  # message_seq values already returned (or skipped)
        self.randoms: dict[int, bytes] = {}  # message_seq -> random of the hello returned


class DtlsHandshakeAssembler:
    """The ClientHellos (and ServerHellos) of one DTLS association, keyed by the caller on the
    UDP 4-tuple. ``client_hellos`` counts the ClientHellos returned so far, so the index of a
    returned hello is its position in that count (1 = first, 2 = after HelloVerifyRequest...).
    """

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.client_hellos = 0
        self.server_hellos = 0
        self.hello_verify_requests = 0
        self.retransmissions = 0
        self._client = _Direction()
        self._server = _Direction()

    def feed(self, datagram: bytes) -> list[bytes]:
        """A client-to-server UDP payload; ClientHello bodies, cookie removed."""
        bodies = []
        for body in self._records(datagram, self._client, CLIENT_HELLO):
            stripped = strip_cookie(body)
            if stripped is None:
                self.errors["bad_client_hello"] += 1
                continue
            bodies.append(stripped)
        self.client_hellos += len(bodies)
        return bodies

    def feed_server(self, datagram: bytes) -> list[bytes]:
        """A server-to-client UDP payload; ServerHello bodies (same layout as TLS)."""
        bodies = self._records(datagram, self._server, SERVER_HELLO)
        self.server_hellos += len(bodies)
        return bodies

    # -- internals ---------------------------------------------------------------------------

    def _records(self, datagram: bytes, direction: _Direction, wanted: int) -> list[bytes]:
        out: list[bytes] = []
        n = len(datagram)
        pos = 0
        while pos < n:
            if pos + RECORD_HEADER > n:
                self.errors["truncated_record"] += 1
                break
            content_type = datagram[pos]
            version = (datagram[pos + 1] << 8) | datagram[pos + 2]
            epoch = (datagram[pos + 3] << 8) | datagram[pos + 4]
            length = (datagram[pos + 11] << 8) | datagram[pos + 12]
            if not 20 <= content_type <= 25 or version not in RECORD_VERSIONS:
                # Not a DTLS 1.0/1.2 record header (DTLS 1.3 encrypted records use another
                # header whose length we cannot know): nothing after it can be framed.
                self.errors["not_a_record"] += 1
                break
            body_at = pos + RECORD_HEADER
            if length > n - body_at:
                self.errors["truncated_record"] += 1
                break
            if content_type == CONTENT_HANDSHAKE and epoch == 0:
                out.extend(self._handshake(datagram, body_at, body_at + length, direction, wanted))
            pos = body_at + length
        return out

    def _handshake(
        self, buf: bytes, pos: int, end: int, direction: _Direction, wanted: int
    ) -> list[bytes]:
        out: list[bytes] = []
        while pos < end:
            if pos + HANDSHAKE_HEADER > end:
                self.errors["truncated_handshake_header"] += 1
                break
            msg_type = buf[pos]
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            seq = (buf[pos + 4] << 8) | buf[pos + 5]
            frag_offset = int.from_bytes(buf[pos + 6 : pos + 9], "big")
            frag_length = int.from_bytes(buf[pos + 9 : pos + 12], "big")
            data_at = pos + HANDSHAKE_HEADER
            if frag_length > end - data_at:
                self.errors["truncated_fragment"] += 1
                break
            pos = data_at + frag_length
            if msg_type == 3 and wanted == SERVER_HELLO and frag_offset == 0:
                self.hello_verify_requests += 1
            if msg_type != wanted:
                continue
            if frag_offset + frag_length > length:
                self.errors["fragment_beyond_message"] += 1
                continue
            if length > MAX_MESSAGE_LENGTH:
                self.errors["message_too_large"] += 1
                continue
            if seq > MAX_MESSAGE_SEQ:
                self.errors["message_seq_out_of_range"] += 1
                continue
            fragment = buf[data_at:pos]
            body = self._fragment(direction, seq, msg_type, length, frag_offset, fragment)
            if body is not None:
                out.append(body)
        return out

    def _fragment(
        self, direction: _Direction, seq: int, msg_type: int, length: int, offset: int, data: bytes
    ) -> bytes | None:
        if seq in direction.done:
            # A retransmission - unless it is a whole hello with a new random: the client
            # started a new association on the same 4-tuple, so start over.
            whole = offset == 0 and len(data) == length and length >= _RANDOM_AT + 32
            random = data[_RANDOM_AT : _RANDOM_AT + 32] if whole else None
            if random is None or random == direction.randoms.get(seq):
                self.retransmissions += 1
                return None
            direction.done.clear()
            direction.pending.clear()
            direction.randoms.clear()
        pending = direction.pending.get(seq)
        if pending is None:
            if len(direction.pending) >= MAX_PENDING:
                self.errors["too_many_pending_messages"] += 1
                return None
            pending = _PendingMessage(msg_type, length, bytearray(length))
            direction.pending[seq] = pending
        elif pending.length != length:
            self.errors["inconsistent_fragment"] += 1
            return None
        if not pending.add(offset, data):
            self.errors["too_many_fragments"] += 1
            return None
        if not pending.complete():
            return None
        del direction.pending[seq]
        direction.done.add(seq)
        body = bytes(pending.buf)
        direction.randoms[seq] = body[_RANDOM_AT : _RANDOM_AT + 32]
        return body


def strip_cookie(body: bytes) -> bytes | None:
    """A DTLS ClientHello body with its cookie vector removed; None if the body is too short.

    Layout: client_version(2) random(32) session_id<0..32> cookie<0..255> cipher_suites ...
    """
    sid_at = 34
    if len(body) <= sid_at:
        return None
    cookie_at = sid_at + 1 + body[sid_at]
    if len(body) <= cookie_at:
        return None
    rest_at = cookie_at + 1 + body[cookie_at]
    if len(body) < rest_at:
        return None
    return body[:cookie_at] + body[rest_at:]


def looks_like_dtls_client_hello(datagram: bytes) -> bool:
    """Cheap test for a datagram starting with an epoch-0 DTLS handshake record holding a
    ClientHello fragment, for the hot path before creating an assembler."""
    return _starts_with_epoch0_handshake(datagram, CLIENT_HELLO)


def looks_like_dtls_server_hello(datagram: bytes) -> bool:
    """The same for a ServerHello fragment: a capture that sees only the server's side (one-way
    capture, asymmetric routing) starts the association there."""
    return _starts_with_epoch0_handshake(datagram, SERVER_HELLO)


def _starts_with_epoch0_handshake(datagram: bytes, msg_type: int) -> bool:
    return (
        len(datagram) >= RECORD_HEADER + HANDSHAKE_HEADER
        and datagram[0] == CONTENT_HANDSHAKE
        and ((datagram[1] << 8) | datagram[2]) in RECORD_VERSIONS
        and datagram[3] == 0
        and datagram[4] == 0
        and datagram[RECORD_HEADER] == msg_type
    )

"""Per-connection reassembly of the TLS hellos carried in QUIC Initial packets.

Rules of this file:
- No IO. The caller feeds whole UDP payloads, client-to-server through :meth:`feed`,
  server-to-client through :meth:`feed_server`, and gets back the hello *bodies* (handshake
  messages without their 4-byte header) that the datagram completed, in stream order.
- Nothing raises on bad input: a datagram that cannot be used adds one to ``errors[reason]``.
- Memory is bounded: per direction at most ``max_crypto_bytes`` of CRYPTO stream (64 KiB by
  default, far above the ~2 KB of a post-quantum browser hello) in at most ``MAX_RANGES``
  disjoint pieces, and the keys of one Destination Connection ID at a time.
- Keys come from the client's Destination Connection ID. A client Initial whose DCID differs from
  the one in use is tried first with the current keys (after the server's first reply, clients
  address it by the server-chosen ID but keep the original keys) and then with keys of its own
  DCID (after a Retry, or a new connection reusing the 4-tuple); when those authenticate they
  replace the old ones and the streams restart, since the new ClientHello starts at offset 0.
  After a Retry the client sends the same ClientHello again under the new keys; a hello equal to
  one already returned is a resend, not a new hello, and is counted in ``repeated_hellos`` only
  (tshark agrees: it reports one hello for such a connection).
"""

from __future__ import annotations

from collections import Counter
from hashlib import sha256

from ja3svc.byte_ranges import merge_range
from ja3svc.hello import HELLO_RETRY_REQUEST_RANDOM
from ja3svc.quic.frames import crypto_frames
from ja3svc.quic.keys import (
    HANDSHAKE,
    INITIAL,
    VERSIONS,
    QuicVersion,
    initial_keys,
    initial_secrets,
)
from ja3svc.quic.keys import PacketKeys as _PacketKeys
from ja3svc.quic.packets import LongPacket, PacketError, split_long_packets, unprotect

CLIENT_HELLO = 1
SERVER_HELLO = 2
DEFAULT_MAX_CRYPTO_BYTES = 64 * 1024
MAX_RANGES = 64  # disjoint received pieces per stream; real clients send fewer than 10
MAX_REMEMBERED_HELLOS = 8
MAX_DATAGRAMS = 64  # datagrams per connection after which nothing more is expected in Initials


class CryptoStream:
    """One direction's CRYPTO stream at the Initial level, reassembled by offset.

    Pieces may arrive in any order, overlap or repeat. Complete handshake messages are handed
    out once each, in stream order, as soon as the bytes before and in them are all present.
    """

    __slots__ = ("_buf", "_cap", "_dead", "_next", "_ranges")

    def __init__(self, cap: int = DEFAULT_MAX_CRYPTO_BYTES) -> None:
        self._cap = cap
        self._buf = bytearray()
        self._ranges: list[tuple[int, int]] = []  # sorted, disjoint, non-adjacent [start, end)
        self._next = 0  # stream offset of the next handshake message header
        self._dead = False  # a message too large for the cap was announced: stop for good

    def add(self, offset: int, data: bytes) -> str | None:
        """Store one CRYPTO frame; returns an error reason when (part of) it was dropped."""
        if self._dead:
            return None
        reason = None
        end = offset + len(data)
        if end > self._cap:
            if offset >= self._cap:
                return "crypto_over_cap"
            data = data[: self._cap - offset]
            end = self._cap
            reason = "crypto_over_cap"
        if end <= offset:
            return reason
        merged = merge_range(self._ranges, offset, end)
        if len(merged) > MAX_RANGES:
            return "too_many_fragments"
        self._ranges = merged
        if end > len(self._buf):
            self._buf.extend(bytes(end - len(self._buf)))
        self._buf[offset:end] = data
        return reason

    def messages(self) -> tuple[list[tuple[int, bytes]], str | None]:
        """Handshake messages completed since the last call: (type, body) pairs."""
        out: list[tuple[int, bytes]] = []
        if self._dead or not self._ranges or self._ranges[0][0] != 0:
            return out, None
        available = self._ranges[0][1]
        buf = self._buf
        while available - self._next >= 4:
            p = self._next
            length = int.from_bytes(buf[p + 1 : p + 4], "big")
            if p + 4 + length > self._cap:
                self._dead = True
                return out, "message_too_large"
            if p + 4 + length > available:
                break
            out.append((buf[p], bytes(buf[p + 4 : p + 4 + length])))
            self._next = p + 4 + length
        return out, None


class _KeyEpoch:
    """Everything tied to one client DCID: keys, packet-number state and both CRYPTO streams."""

    __slots__ = (
        "client_keys",
        "client_largest",
        "client_stream",
        "dcid",
        "server_keys",
        "server_largest",
        "server_stream",
        "version",
    )

    def __init__(
        self, version: QuicVersion, dcid: bytes, client_keys: _PacketKeys, cap: int
    ) -> None:
        self.version = version
        self.dcid = dcid
        self.client_keys = client_keys
        # Filled in on the first server Initial: its version may differ from the client's under
        # compatible version negotiation (RFC 9368), and the keys follow the packet's version.
        self.server_keys: dict[int, _PacketKeys] = {}
        self.client_largest = -1
        self.server_largest = -1
        self.client_stream = CryptoStream(cap)
        self.server_stream = CryptoStream(cap)

    def server_keys_for(self, version: QuicVersion) -> _PacketKeys:
        keys = self.server_keys.get(version.number)
        if keys is None:
            keys = _PacketKeys(version, initial_secrets(version, self.dcid)[1])
            self.server_keys[version.number] = keys
        return keys


class QuicInitialAssembler:
    """The ClientHello (and ServerHello) of one QUIC connection, from its Initial packets.

    Create one per client connection, keyed by the caller on the UDP 4-tuple; DCID changes
    within it (server-chosen IDs, Retry) are handled here. ``done`` turns true once nothing
    more can come from Initial packets; ``feed`` then returns [] at once, so a caller that keeps
    feeding a long-lived connection pays almost nothing.
    """

    def __init__(self, max_crypto_bytes: int = DEFAULT_MAX_CRYPTO_BYTES) -> None:
        self.errors: Counter[str] = Counter()
        self.client_hellos = 0  # ClientHellos returned so far: the index of the last one
        self.server_hellos = 0  # ServerHellos (HelloRetryRequests included) returned so far
        self.key_changes = 0  # times a new DCID's keys replaced the current ones (Retry etc.)
        self.repeated_hellos = 0  # ClientHellos resent unchanged under new keys, not returned
        self.done = False
        self._cap = max_crypto_bytes
        self._epoch: _KeyEpoch | None = None
        self._datagrams = 0
        self._server_finished = False  # a real ServerHello (not a HelloRetryRequest) was seen
        self._returned: list[bytes] = []  # digests of the ClientHellos returned, to spot resends

    def feed(self, datagram: bytes) -> list[bytes]:
        """A client-to-server UDP payload; returns the ClientHello bodies it completed."""
        if self.done:
            return []
        self._count_datagram()
        packets, reason = split_long_packets(datagram)
        if reason:
            self.errors[reason] += 1
        hellos: list[bytes] = []
        for packet in packets:
            if packet.packet_type == HANDSHAKE:
                # The client has Handshake keys, so it has the server's ServerHello: the
                # Initial exchange, and with it every ClientHello, is over.
                self.done = True
                continue
            if packet.packet_type != INITIAL:
                continue
            opened = self._open_client(datagram, packet)
            if opened is None:
                continue
            epoch, payload = opened
            for body in self._absorb(payload, packet.version, epoch.client_stream, CLIENT_HELLO):
                digest = sha256(body).digest()
                if digest in self._returned:
                    self.repeated_hellos += 1
                    continue
                if len(self._returned) < MAX_REMEMBERED_HELLOS:
                    self._returned.append(digest)
                hellos.append(body)
        self.client_hellos += len(hellos)
        if not packets and datagram and not datagram[0] & 0x80 and self._epoch is not None:
            self.done = True  # a short-header (1-RTT) packet from the client: handshake done
        return hellos

    def feed_server(self, datagram: bytes) -> list[bytes]:
        """A server-to-client UDP payload; returns the ServerHello bodies it completed.

        HelloRetryRequests are ServerHello messages too and are returned like them.
        """
        if self.done:
            return []
        self._count_datagram()
        epoch = self._epoch
        if epoch is None:
            self.errors["server_before_client"] += 1
            return []
        packets, reason = split_long_packets(datagram)
        if reason:
            self.errors[reason] += 1
        hellos: list[bytes] = []
        for packet in packets:
            if packet.packet_type != INITIAL:
                continue
            keys = epoch.server_keys_for(packet.version)
            try:
                pn, payload = unprotect(datagram, packet, keys, epoch.server_largest)
            except PacketError as exc:
                self.errors["server_" + exc.reason] += 1
                continue
            epoch.server_largest = max(epoch.server_largest, pn)
            hellos.extend(self._absorb(payload, packet.version, epoch.server_stream, SERVER_HELLO))
        for body in hellos:
            if body[2:34] != HELLO_RETRY_REQUEST_RANDOM:
                self._server_finished = True
        self.server_hellos += len(hellos)
        if self._server_finished and self.client_hellos:
            self.done = True
        return hellos

    # -- internals ---------------------------------------------------------------------------

    def _count_datagram(self) -> None:
        self._datagrams += 1
        if self._datagrams >= MAX_DATAGRAMS:
            self.done = True

    def _open_client(self, datagram: bytes, packet: LongPacket) -> tuple[_KeyEpoch, bytes] | None:
        """The key epoch that authenticates this client Initial, and the decrypted payload."""
        current = self._epoch
        if current is not None and current.version is packet.version:
            try:
                pn, payload = unprotect(
                    datagram, packet, current.client_keys, current.client_largest
                )
            except PacketError as exc:
                if current.dcid == packet.dcid:
                    self.errors[exc.reason] += 1
                    return None
            else:
                current.client_largest = max(current.client_largest, pn)
                return current, payload
        client_keys, _ = initial_keys(packet.version, packet.dcid)
        try:
            pn, payload = unprotect(datagram, packet, client_keys, -1)
        except PacketError as exc:
            self.errors[exc.reason] += 1
            return None
        if current is not None:
            self.key_changes += 1
        epoch = _KeyEpoch(packet.version, bytes(packet.dcid), client_keys, self._cap)
        epoch.client_largest = pn
        self._epoch = epoch
        self._server_finished = False
        return epoch, payload

    def _absorb(
        self, payload: bytes, version: QuicVersion, stream: CryptoStream, wanted: int
    ) -> list[bytes]:
        frames, reason = crypto_frames(payload, version.google_frames)
        if reason:
            self.errors[reason] += 1
        for offset, data in frames:
            reason = stream.add(offset, data)
            if reason:
                self.errors[reason] += 1
        messages, reason = stream.messages()
        if reason:
            self.errors[reason] += 1
        bodies = []
        for msg_type, body in messages:
            if msg_type == wanted:
                bodies.append(body)
            else:
                self.errors["unexpected_handshake_message"] += 1
        return bodies


def looks_like_quic_initial(datagram: bytes) -> bool:
    """Cheap test for a client's QUIC Initial, for the hot path before any allocation.

    Checks: long header, a version we can decrypt (one dictionary lookup), the Initial type bits
    of that version, a DCID length within the limits, and the 1200-byte minimum every client
    Initial datagram must be padded to (RFC 9000 section 14.1) - the strongest filter against
    look-alike UDP traffic.
    """
    if len(datagram) < 1200 or not datagram[0] & 0x80:
        return False
    version = VERSIONS.get(int.from_bytes(datagram[1:5], "big"))
    if version is None:
        return False
    return version.packet_types[(datagram[0] >> 4) & 0x03] is INITIAL and datagram[5] <= 20

"""One direction of a TCP connection: segments in any order in, the byte stream in order out.

Rules of this module:
- Sequence numbers are compared modulo 2^32.
- The stream is anchored at SYN + 1 when the SYN is seen, else at the first data segment
  (a capture that starts mid-connection). When SYNs with different sequence numbers come
  before any data (a server or middlebox sending several SYN-ACKs), the one the peer
  acknowledges is followed (``acked``).
- First copy wins: bytes already delivered are never delivered again, and bytes already held
  out of order are not held twice, so duplicated and overlapping retransmissions (even with
  different content, in any order) cannot change the stream.
- Segments ahead of the stream are held until the gap fills, up to MAX_BUFFERED bytes and
  MAX_SEGMENTS segments; past that the direction is declared to have a gap and gives up.
"""

from __future__ import annotations

MAX_BUFFERED = 65536
MAX_SEGMENTS = 64
# Distinct SYN sequence numbers remembered per direction until the peer's ACK picks one.
MAX_SYN_ANCHORS = 4
_MOD = 1 << 32
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit distance."""
    d = (a - b) % _MOD
    return d - _MOD if d >= _HALF else d


class TcpReassembler:
    """Orders one direction's payload bytes; ``push`` returns the newly contiguous bytes."""

    __slots__ = ("_ahead", "_ahead_bytes", "_syn_start", "anchors", "gap", "next_seq")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self._ahead: dict[int, bytes] = {}
        self._ahead_bytes = 0
        self.gap = False
        # SYN + 1 of every distinct SYN seen before any data: None unless there were several
        # (the engine then shows this direction the peer's acknowledgement numbers).
        self.anchors: list[int] | None = None
        self._syn_start: int | None = None  # where the first SYN anchored the stream

    def syn(self, seq: int) -> None:
        start = (seq + 1) % _MOD
        nxt = self.next_seq
        if nxt is None:
            self.next_seq = self._syn_start = start
            return
        if start == nxt or self._ahead:
            return
        anchors = self.anchors
        if anchors is None:
            if nxt == self._syn_start:
                # A second SYN with another sequence number while the stream is still at the
                # first one's start (nothing delivered or held).
                self.anchors = [nxt, start]
        elif nxt in anchors and start not in anchors and len(anchors) < MAX_SYN_ANCHORS:
            anchors.append(start)

    def acked(self, ack: int) -> None:
        """The peer acknowledged `ack`: if that is one of several SYNs' starts, follow it.

        Decided once: after this (or once data has moved the stream on) SYNs are not revisited.
        """
        anchors = self.anchors
        self.anchors = None
        if (
            anchors is not None
            and ack != self.next_seq
            and ack in anchors
            and self.next_seq in anchors
        ):
            # Bytes held so far were placed relative to the other SYN's numbers.
            self.next_seq = ack
            self._ahead.clear()
            self._ahead_bytes = 0

    @property
    def buffered(self) -> int:
        return self._ahead_bytes

    def push(self, seq: int, payload: bytes) -> bytes:
        """Add a segment; return the bytes that are now in order (possibly empty)."""
        nxt = self.next_seq
        if nxt is None:
            self.next_seq = (seq + len(payload)) % _MOD
            return payload
        d = seq_diff(seq, nxt)
        if d == 0 and not self._ahead:
            self.next_seq = (nxt + len(payload)) % _MOD
            return payload
        if d > 0:
            self._hold(seq, payload)
            return b""
        if d < 0:
            if -d >= len(payload):
                return b""  # a retransmission of bytes already delivered
            payload = payload[-d:]
        out = [payload]
        self.next_seq = (nxt + len(payload)) % _MOD
        if self._ahead:
            self._drain(out)
        return b"".join(out) if len(out) > 1 else out[0]

    def _hold(self, seq: int, payload: bytes) -> None:
        """Keep a segment that is ahead of the stream, minus bytes already held.

        Held segments never overlap one another, so the first copy of every byte is the one
        that will be delivered, whatever order the copies arrived in.
        """
        nxt = self.next_seq
        assert nxt is not None
        pieces = [(seq_diff(seq, nxt), payload)]
        for held_seq, held in self._ahead.items():
            hs = seq_diff(held_seq, nxt)
            he = hs + len(held)
            kept: list[tuple[int, bytes]] = []
            for start, data in pieces:
                end = start + len(data)
                if end <= hs or start >= he:
                    kept.append((start, data))
                    continue
                if start < hs:
                    kept.append((start, data[: hs - start]))
                if end > he:
                    kept.append((he, data[he - start :]))
            pieces = kept
            if not pieces:
                return
        for start, data in pieces:
            self._ahead[(nxt + start) % _MOD] = data
            self._ahead_bytes += len(data)
        if self._ahead_bytes > MAX_BUFFERED or len(self._ahead) > MAX_SEGMENTS:
            self.gap = True
            self._ahead.clear()
            self._ahead_bytes = 0

    def _drain(self, out: list[bytes]) -> None:
        """Move every held segment that now touches the stream's end into ``out``."""
        progressed = True
        while progressed and self._ahead:
            progressed = False
            for seq in list(self._ahead):
                assert self.next_seq is not None
                d = seq_diff(seq, self.next_seq)
                if d > 0:
                    continue
                payload = self._ahead.pop(seq)
                self._ahead_bytes -= len(payload)
                if -d < len(payload):
                    payload = payload[-d:]
                    out.append(payload)
                    self.next_seq = (self.next_seq + len(payload)) % _MOD
                    progressed = True

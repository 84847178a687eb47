"""One direction of a TCP connection: segments in any order in, the byte stream in order out.

Rules of this module:
- Sequence numbers are compared modulo 2^32.
- The stream is anchored at SYN + 1 when the SYN is seen, else at the first data segment
  (a capture that starts mid-connection).
- First copy wins: bytes already delivered are never delivered again, so duplicated and
  overlapping retransmissions (even with different content) cannot corrupt the stream.
- Segments ahead of the stream are held until the gap fills, up to MAX_BUFFERED bytes and
  MAX_SEGMENTS segments; past that the direction is declared to have a gap and gives up.
"""

from __future__ import annotations

MAX_BUFFERED = 65536
MAX_SEGMENTS = 64
_MOD = 1 << 32
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit distance."""
    d = (a - b) % _MOD
    return d - _MOD if d >= _HALF else d


class TcpReassembler:
    """Orders one direction's payload bytes; ``push`` returns the newly contiguous bytes."""

    __slots__ = ("_ahead", "_ahead_bytes", "gap", "next_seq")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self._ahead: dict[int, bytes] = {}
        self._ahead_bytes = 0
        self.gap = False

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) % _MOD

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
        held = self._ahead.get(seq)
        if held is not None and len(held) >= len(payload):
            return
        self._ahead_bytes += len(payload) - (len(held) if held else 0)
        self._ahead[seq] = payload
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

"""Open a capture file (classic pcap or pcapng) and stream its packets.

Rules of this package's readers:
- Pure streaming: the input is read forward only, in large chunks, and never seeked, so a
  pipe (``tcpdump -w - | ja3svc pcap -``) works exactly like a file.
- Every packet is one tuple ``(timestamp_seconds, linktype, frame, original_length)``; no
  per-packet objects beyond it, because the readers sit on the benchmark's hot path.
- A file that is not a capture at all raises ``NotACaptureError`` from ``open_capture``. Damage
  found later raises ``CaptureDamagedError`` only after every complete packet before the damage
  has been yielded, so a truncated capture still gives all it holds.
- Memory is bounded: no single record or block larger than a sanity cap is ever buffered.

The per-format loops live in ``capture.pcap_format`` and ``capture.pcapng_format``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

__all__ = [
    "CaptureDamagedError",
    "CaptureError",
    "CaptureReader",
    "NotACaptureError",
    "open_capture",
]

# Large enough that the per-read cost vanishes next to per-packet work, small enough to keep
# memory flat however big the capture is.
CHUNK_SIZE = 1 << 20

PacketTuple = tuple[float, int, bytes, int]


class CaptureError(Exception):
    """Base of every error a capture reader raises."""


class NotACaptureError(CaptureError):
    """The input is not a pcap or pcapng capture this reader supports."""


class CaptureDamagedError(CaptureError):
    """The capture is damaged (truncated, bad lengths) at ``offset``; packets before it were
    yielded."""

    def __init__(self, name: str, offset: int, reason: str) -> None:
        self.name = name
        self.offset = offset
        self.reason = reason
        super().__init__(f"{name}: capture damaged at byte offset {offset}: {reason}")


class ChunkedStream:
    """Forward-only chunked reads over a binary stream.

    Format loops keep the current chunk and a cursor in locals and parse records in place.
    Only a record that runs past the end of the chunk goes through ``take``, which returns that
    record's bytes (a small copy) plus the next chunk and the cursor in it, so chunks are never
    copied or joined whole.
    """

    __slots__ = ("_read", "name", "offset")

    def __init__(self, stream: BinaryIO, name: str, offset: int) -> None:
        # read1 returns what is available instead of blocking until a full chunk has arrived,
        # so a live pipe is processed as it flows; files still get full chunks.
        read1 = getattr(stream, "read1", None)
        self._read: Callable[[int], bytes | None] = read1 if read1 is not None else stream.read
        self.name = name
        # File offset just past the last byte read; the current chunk ``buf`` therefore starts
        # at ``offset - len(buf)``.
        self.offset = offset

    def take(self, buf: bytes, pos: int, size: int) -> tuple[bytes, bytes, int]:
        """Return ``(data, buf, pos)``: the ``size`` bytes at the cursor (fewer only at end of
        file) and the cursor just after them, in the chunk it now points into."""
        stop = pos + size
        if stop <= len(buf):
            return buf[pos:stop], buf, stop
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < size:
            chunk = self._read(max(CHUNK_SIZE, size - have))
            if not chunk:
                break
            if not isinstance(chunk, bytes):
                chunk = bytes(chunk)  # a raw stream may hand back a bytearray or memoryview
            self.offset += len(chunk)
            want = size - have
            if len(chunk) > want:
                parts.append(chunk[:want])
                return b"".join(parts), chunk, want
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts), b"", 0

    def damaged(self, offset: int, reason: str) -> CaptureDamagedError:
        return CaptureDamagedError(self.name, offset, reason)


class CaptureReader:
    """An opened capture. Iterate it once for ``(timestamp, linktype, frame, wire_length)``.

    ``frame`` excludes any frame check sequence the capture declares (pcap FCS bits, pcapng
    ``if_fcslen``), and ``wire_length`` is reduced by the same amount, so ``len(frame) <
    wire_length`` always means snaplen truncation.

    ``bytes_read`` and ``packets_read`` are exact when iteration ends (normally or by
    ``CaptureDamagedError``) and are refreshed at least once per chunk while it runs, which is
    what progress and MB/s reporting need without a per-packet attribute write.
    """

    __slots__ = ("_packets", "_started", "bytes_read", "format", "name", "packets_read")

    def __init__(
        self,
        name: str,
        format: str,
        packets: Callable[[CaptureReader], Iterator[PacketTuple]],
        bytes_read: int,
    ) -> None:
        self.name = name
        self.format = format  # "pcap" or "pcapng"
        self.bytes_read = bytes_read
        self.packets_read = 0
        self._packets = packets
        self._started = False

    def __iter__(self) -> Iterator[PacketTuple]:
        # A stream can be consumed once; a second pass would silently yield nothing.
        if self._started:
            raise RuntimeError(f"{self.name}: a capture can only be iterated once")
        self._started = True
        return self._packets(self)

    def __repr__(self) -> str:
        return (
            f"<CaptureReader {self.name!r} {self.format} packets_read={self.packets_read} "
            f"bytes_read={self.bytes_read}>"
        )


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; shorter only at end of file."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        chunk = stream.read(size - have)
        if not chunk:
            break
        parts.append(bytes(chunk))
        have += len(chunk)
    return b"".join(parts)


# Magic numbers of things people commonly feed by mistake, for a helpful refusal.
GZIP_MAGIC = b"\x1f\x8b"

_KNOWN_NOT_CAPTURES = {
    GZIP_MAGIC: "a gzip-compressed file that holds no pcap or pcapng capture",
    b"\xfd7zXZ": "an xz-compressed file (decompress it first)",
    b"\x28\xb5\x2f\xfd": "a zstd-compressed file (decompress it first)",
    b"\xa1\xb2\xcd\x34": "a Kuznetzov modified pcap (convert it with editcap first)",
    b"\x34\xcd\xb2\xa1": "a Kuznetzov modified pcap (convert it with editcap first)",
}


def open_capture(stream: BinaryIO, name: str = "<stream>") -> CaptureReader:
    """Detect the format from the first 4 bytes and return a reader positioned after the file
    header. Never seeks, so non-seekable streams work.

    Raises ``NotACaptureError`` for anything that is not a supported pcap/pcapng (empty input,
    unknown magic, unsupported version) and ``CaptureDamagedError`` when the magic is right but
    the file header itself is cut short or inconsistent.
    """
    # The format modules import the error classes from this module, so they are imported here
    # rather than at the top to keep the import graph acyclic.
    from ja3svc.capture import pcap_format, pcapng_format

    stream, magic = read_magic(stream, name)
    if not magic:
        raise NotACaptureError(f"{name}: empty input, not a pcap or pcapng capture")
    if len(magic) < 4:
        raise NotACaptureError(f"{name}: only {len(magic)} bytes, not a pcap or pcapng capture")
    source = ChunkedStream(stream, name, len(magic))
    if magic in pcap_format.MAGICS:
        return pcap_format.open_pcap(source, magic)
    if magic == pcapng_format.SHB_MAGIC:
        return pcapng_format.open_pcapng(source, magic)
    for prefix, what in _KNOWN_NOT_CAPTURES.items():
        if magic.startswith(prefix):
            raise NotACaptureError(f"{name}: {what}, not a pcap or pcapng capture")
    raise NotACaptureError(
        f"{name}: unknown magic number {magic.hex()}, not a pcap or pcapng capture"
    )


def read_magic(stream: BinaryIO, name: str) -> tuple[BinaryIO, bytes]:
    """The stream to read the capture from and its first 4 bytes (fewer only at its end): a
    gzip-compressed capture is read through. ``NotACaptureError`` for gzip without a capture."""
    magic = _read_exactly(stream, 4)
    if magic.startswith(GZIP_MAGIC):
        # What tcpdump rotation and archives leave behind: read through, as tshark does.
        stream = _Gunzip(_Prefixed(magic, stream), name)
        try:
            magic = _read_exactly(stream, 4)
        except CaptureDamagedError as exc:
            raise NotACaptureError(
                f"{name}: a gzip-compressed file that cannot be decompressed: {exc.reason}"
            ) from None
        if magic.startswith(GZIP_MAGIC) or not magic:
            raise NotACaptureError(
                f"{name}: {_KNOWN_NOT_CAPTURES[GZIP_MAGIC]}"
                if magic
                else f"{name}: empty gzip-compressed file, not a pcap or pcapng capture"
            )
    return stream, magic


class _Prefixed:
    """A stream with bytes already read from it put back in front (no seeking needed)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            head, self._head = self._head, b""
            return head + self._stream.read()
        head, self._head = self._head[:size], self._head[size:]
        return head


class _Gunzip:
    """Decompressed reads; damage in the compressed data becomes ``CaptureDamagedError``.

    Offsets in such errors count decompressed bytes: the compressed position means nothing to
    a pcap reader.
    """

    def __init__(self, raw: _Prefixed, name: str) -> None:
        self._file = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
        self._name = name
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._file.read1(size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise CaptureDamagedError(
                self._name, self._done, f"gzip data damaged or cut short ({exc})"
            ) from None
        self._done += len(data)
        return data

    read1 = read

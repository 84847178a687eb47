"""Live packets from Linux interfaces (AF_PACKET), as the same tuples the file readers yield.

``LiveSource(["eth0"]).packets()`` yields ``(timestamp, linktype, frame, wire_length)`` until
``stop()`` is called (from another thread or a signal handler), so ``FingerprintEngine`` consumes
a live interface exactly like a capture file.

How packets get here, and why:
- One AF_PACKET/SOCK_RAW socket per interface. It is created with protocol 0 (receives nothing),
  gets its kernel BPF filter, and only then is bound to the interface with ETH_P_ALL: no
  unfiltered packet can slip in between socket() and the filter.
- The filter is compiled by libpcap (through scapy's ``compile_filter`` on a dead handle, no
  interface access needed) for the interface's link type. The default keeps TCP segments to the
  TLS/STARTTLS service ports (client->server direction, every segment: continuation segments of
  a multi-segment ClientHello carry no 0x16 at their start). Its accept value is patched to the
  snap length so the kernel queues no more than we keep.
- Normally the kernel writes packets into a TPACKET_V3 ring mapped into this process (set up
  before the bind, so before any privilege drop): no system call per packet, kernel timestamps,
  and the buffer holds packets at their captured size instead of being charged at skb truesize
  (about three times as many packets fit in the same bytes). The ring is a row of blocks; the
  kernel fills one block with many packets, hands it over when it is full or after
  ``RING_BLOCK_TIMEOUT_MS``, and we copy the packets out and hand the block back at once, before
  the engine sees them, so a slow packet never holds ring space.
- When the ring cannot be set up (old kernel, no memory for it, ``ring=False``), the socket is
  reopened for ``recv_into`` a preallocated buffer with MSG_TRUNC (which returns the wire length
  even when the packet was cut at the snap length); its receive buffer is enlarged
  (SO_RCVBUFFORCE while privileged) to ride out bursts. ``modes`` and the stats tell which.
- poll() with a self-pipe: ``stop()`` wakes the loop at once; with several interfaces each
  socket is drained a bounded batch at a time so a busy interface cannot starve the others.
- Kernel counters come from getsockopt(PACKET_STATISTICS), which resets on read; they are
  accumulated here under a lock, so any thread may ask.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ja3svc.capture.capture_file import PacketTuple

__all__ = [
    "DEFAULT_SNAPLEN",
    "Batch",
    "CaptureOpenError",
    "InterfaceStats",
    "LiveSource",
    "RingBlock",
    "default_filter",
]


log = logging.getLogger("ja3svc.capture")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SIOCGIFHWADDR = 0x8927
# ARPHRD_* (<linux/if_arp.h>) -> the link type the frames of such an interface have.
_ARPHRD_LINKTYPE = {
    1: 1,  # ARPHRD_ETHER: Ethernet
    772: 1,  # ARPHRD_LOOPBACK: Linux gives loopback frames an all-zero Ethernet header
    65534: 101,  # ARPHRD_NONE (tun, WireGuard): raw IP
    776: 101,  # ARPHRD_SIT
    778: 101,  # ARPHRD_IPGRE
    823: 101,  # ARPHRD_IP6GRE
}
# libpcap's DLT for compiling a filter for each link type (raw IP is DLT_RAW = 12 on Linux).
_LINKTYPE_DLT = {1: 1, 101: 12}

DEFAULT_SNAPLEN = 65535
# Packets read from one socket before looking at the others and at the stop flag.
DRAIN_BATCH = 1024
# Upper bound of one poll() when nothing arrives: how often the loop re-checks the stop flag
# even if the wake-up byte were lost.
POLL_TIMEOUT_MS = 200

_BPF_RET_K = 0x06

# --- TPACKET_V3 ring (<linux/if_packet.h>) ---------------------------------------------------
# Largest block: big enough that a full block is worth one poll() wake-up, small enough that the
# block we are copying out of is a small share of the ring.
RING_BLOCK_MAX = 1 << 20
# A ring of fewer blocks than this would spend much of its space in the block being read.
RING_BLOCKS_MIN_SHARE = 8
# How long the kernel keeps a partly filled block before handing it over: the delay a lone
# hello can see at low traffic (well under the policy's correlation wait).
RING_BLOCK_TIMEOUT_MS = 50
# Blocks taken from one ring before looking at the other interfaces: one keeps them fair, and
# costs nothing (no system call between blocks).
RING_BLOCKS_PER_ROUND = 1
# V3 ignores the frame size except to validate it (frames are packed back to back in a block),
# so any aligned value that divides the block size will do.
_RING_FRAME_SIZE = 2048
# Room a block needs besides one packet's bytes: block descriptor, tpacket3_hdr, sockaddr_ll
# and alignment. A block must hold a whole snap length, or the kernel cuts packets shorter.
_RING_BLOCK_OVERHEAD = 256
# tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov, sizeof_priv,
# feature_req_word.
_TPACKET_REQ3 = struct.Struct("=7I")
# tpacket_block_desc from hdr.bh1: block_status, num_pkts, offset_to_first_pkt, blk_len.
_BLOCK_DESC = struct.Struct("=IIII")
_BLOCK_STATUS_OFFSET = 8
# tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, (tp_status), tp_mac.
_TPACKET3_HDR = struct.Struct("=IIIII4xH")
_U32 = struct.Struct("=I")
# tpacket_stats (v1/v2 and the recv path) and tpacket_stats_v3 (adds tp_freeze_q_cnt).
_STATS_V1_SIZE = 8
_STATS_V3_SIZE = 12


class CaptureOpenError(RuntimeError):
    """An interface cannot be captured on: missing, no privilege, bad filter or link type."""


@dataclass
class InterfaceStats:
    """Counters of one interface; kernel_* are the kernel's PACKET_STATISTICS, accumulated."""

    interface: str
    linktype: int
    packets: int = 0  # delivered to user space
    bytes: int = 0  # wire bytes of those packets
    truncated: int = 0  # longer than the snap length (cut; the engine sees a hole)
    kernel_packets: int = 0  # passed the filter (including those dropped below)
    kernel_drops: int = 0  # dropped by the kernel: ring or socket buffer full
    kernel_freezes: int = 0  # ring only: times the kernel found every block taken (tp_freeze_q_cnt)
    mode: str = "recv"  # "ring" (TPACKET_V3 mmap) or "recv" (one recv_into per packet)


def default_filter(ports: Sequence[int], udp_ports: Sequence[int] = ()) -> str:
    """The kernel filter for the client side of TLS and STARTTLS services on ``ports``, and of
    QUIC (and DTLS) services on ``udp_ports``.

    Destination port, not "payload starts with 0x16": every data segment of the client's side
    must reach the reassembler, or a hello spanning segments is lost. SYNs pass too; they give
    the reassembler the initial sequence number.
    """
    if not ports and not udp_ports:
        raise ValueError("no ports to capture")
    for port in (*ports, *udp_ports):
        if not 0 < int(port) < 65536:
            raise ValueError(f"bad port: {port}")
    parts = []
    if ports:
        parts.append("(tcp and (" + " or ".join(f"dst port {int(p)}" for p in ports) + "))")
    if udp_ports:
        parts.append("(udp and (" + " or ".join(f"dst port {int(p)}" for p in udp_ports) + "))")
    return " or ".join(parts) if len(parts) > 1 else parts[0][1:-1]


def _compile_filter(expression: str, linktype: int, snaplen: int) -> tuple[bytes, object]:
    """libpcap-compiled BPF as a ``struct sock_fprog`` (bytes) plus the buffer it points to."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureOpenError(f"cannot compile filters: {exc}") from None
    try:
        program = compile_filter(expression, linktype=_LINKTYPE_DLT[linktype])
    except (Scapy_Exception, ImportError, OSError) as exc:
        raise CaptureOpenError(f"bad capture filter {expression!r}: {exc}") from None
    count = int(program.bf_len)
    insns = program.bf_insns
    # Copy the program into memory we own (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k).
    raw = bytearray(8 * count)
    for i in range(count):
        ins = insns[i]
        k = ins.k
        if ins.code == _BPF_RET_K and k:
            k = snaplen  # "accept, keep k bytes": keep what we would keep anyway
        struct.pack_into("=HBBI", raw, 8 * i, ins.code, ins.jt, ins.jf, k)
    buf = ctypes.create_string_buffer(bytes(raw), len(raw))
    fprog = struct.pack("@HP", count, ctypes.addressof(buf))  # native: padded like C
    return fprog, buf


def _interface_linktype(name: str) -> int:
    """Link type of an interface, asked of the kernel through a socket (not /sys).

    A socket belongs to the network namespace of the thread that creates it, while /sys shows
    the namespace it was mounted in; asking with SIOCGIFHWADDR is right in both cases.
    """
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise CaptureOpenError(f"no such interface: {name}") from None
    ifreq = struct.pack("16s16x", name.encode()[:15])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            reply = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, ifreq)
    except OSError as exc:
        raise CaptureOpenError(f"cannot read the link type of {name}: {exc.strerror}") from None
    arphrd = struct.unpack_from("=H", reply, 16)[0]
    linktype = _ARPHRD_LINKTYPE.get(arphrd)
    if linktype is None:
        raise CaptureOpenError(f"{name}: unsupported link type (ARPHRD {arphrd})")
    return linktype


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def ring_geometry(buffer_bytes: int, snaplen: int) -> tuple[int, int]:
    """(block size, block count) of a ring of about ``buffer_bytes`` for ``snaplen``.

    Blocks are powers of two (whole pages, as the kernel requires), at most RING_BLOCK_MAX and
    about an eighth of the buffer, but never smaller than one packet of the snap length. At
    least two blocks, so the kernel can fill one while we read the other.
    """
    smallest = max(_next_power_of_two(snaplen + _RING_BLOCK_OVERHEAD), mmap.PAGESIZE)
    share = buffer_bytes // RING_BLOCKS_MIN_SHARE
    block = 1 << max(0, share.bit_length() - 1)  # largest power of two <= share
    block = max(smallest, min(block, RING_BLOCK_MAX))
    return block, max(2, buffer_bytes // block)


class _RingUnavailable(OSError):
    """The kernel or the environment refused the ring; the recv path takes over."""


@dataclass
class RingBlock:
    """One TPACKET_V3 block copied out of an interface's ring: many packets in one bytes
    object, for an engine to read in one call (the Rust engine) or through ``packets``."""

    data: bytes
    linktype: int
    stats: InterfaceStats

    def packets(self) -> list[PacketTuple]:
        """The block's packets as (timestamp, linktype, frame, wire length); counted."""
        data, linktype = self.data, self.linktype
        unpack_hdr = _TPACKET3_HDR.unpack_from
        _status, num_pkts, offset, _used = _BLOCK_DESC.unpack_from(data, _BLOCK_STATUS_OFFSET)
        out: list[PacketTuple] = []
        append = out.append
        wire_bytes = truncated = 0
        try:
            for _ in range(num_pkts):
                next_offset, sec, nsec, snap, wire, mac = unpack_hdr(data, offset)
                start = offset + mac
                append((sec + nsec * 1e-9, linktype, data[start : start + snap], wire))
                wire_bytes += wire
                if wire > snap:
                    truncated += 1
                if not next_offset:
                    break
                offset += next_offset
        except struct.error:
            pass  # a layout the kernel never writes: keep the packets read so far
        self.count(len(out), wire_bytes, truncated)
        return out

    def count(self, packets: int, wire_bytes: int, truncated: int) -> None:
        """Add what the block held to its interface's counters (whoever read it says)."""
        stats = self.stats
        stats.packets += packets
        stats.bytes += wire_bytes
        stats.truncated += truncated


# What one read of an interface gives: a ring block, or packets read one by one (recv path).
Batch = RingBlock | list[PacketTuple]


class _Ring:
    """A TPACKET_V3 RX ring mapped into this process, read block by block in ring order."""

    def __init__(self, mm: mmap.mmap, block_size: int, block_count: int) -> None:
        self.mm = mm
        self.block_size = block_size
        self.block_count = block_count
        self.next_block = 0  # the oldest block not yet given back: the kernel fills in order

    def describe(self) -> str:
        return f"ring {self.block_count}x{self.block_size >> 10} KiB"

    def take(self, max_blocks: int) -> list[bytes]:
        """Copy up to ``max_blocks`` ready blocks out of the ring, each as one bytes object
        (block descriptor included, up to the end of its last packet), and give each block
        back as soon as it is copied: one copy per block, whatever its number of packets."""
        mm = self.mm
        block_size, count = self.block_size, self.block_count
        index = self.next_block
        out: list[bytes] = []
        for _ in range(max_blocks):
            base = index * block_size
            status, _n, first, used = _BLOCK_DESC.unpack_from(mm, base + _BLOCK_STATUS_OFFSET)
            if not status & TP_STATUS_USER:
                break
            # blk_len is where the kernel's next packet would have gone; a value outside the
            # block (never seen) falls back to the whole block, which is always safe to copy.
            end = used if first <= used <= block_size else block_size
            out.append(mm[base : base + end])
            # The kernel publishes a block by its status word alone; every byte we need was
            # copied above, so it may refill the block from now on.
            _U32.pack_into(mm, base + _BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL)
            index += 1
            if index == count:
                index = 0
        self.next_block = index
        return out

    def close(self) -> None:
        self.mm.close()


def _setup_ring(sock: socket.socket, buffer_bytes: int, snaplen: int) -> _Ring:
    """Switch ``sock`` to TPACKET_V3 and map its RX ring; _RingUnavailable when refused."""
    block_size, block_count = ring_geometry(buffer_bytes, snaplen)
    req = _TPACKET_REQ3.pack(
        block_size,
        block_count,
        _RING_FRAME_SIZE,
        block_size // _RING_FRAME_SIZE * block_count,
        RING_BLOCK_TIMEOUT_MS,
        0,  # no per-block private area
        0,  # no features (no rx hash)
    )
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        mm = mmap.mmap(
            sock.fileno(),
            block_size * block_count,
            flags=mmap.MAP_SHARED,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
        )
    except OSError as exc:
        raise _RingUnavailable(exc.errno, exc.strerror or str(exc)) from None
    return _Ring(mm, block_size, block_count)


class _Tap:
    """One interface's open socket, its ring (None on the recv path) and counters."""

    def __init__(self, sock: socket.socket, stats: InterfaceStats, ring: _Ring | None) -> None:
        self.sock = sock
        self.stats = stats
        self.ring = ring
        self.description = ring.describe() if ring is not None else "recv"

    def close(self) -> None:
        if self.ring is not None:
            # mmap holds a dup of the socket: unmap first, or the ring outlives the close.
            self.ring.close()
        self.sock.close()


class LiveSource:
    """Packets from one or more interfaces; open in the constructor, iterate with ``packets``.

    Open while privileged (CAP_NET_RAW), then drop privileges (``capture.privileges``), then
    iterate: reading from an open socket or its mapped ring needs no privilege.

    ``ring=False`` skips the TPACKET_V3 ring and reads with one ``recv_into`` per packet (also
    the automatic fallback when the ring cannot be set up; ``modes`` tells which is in use).
    """

    def __init__(
        self,
        interfaces: Sequence[str],
        *,
        bpf_filter: str,
        snaplen: int = DEFAULT_SNAPLEN,
        receive_buffer_bytes: int = 64 << 20,
        ring: bool = True,
    ) -> None:
        if not interfaces:
            raise CaptureOpenError("no interface given")
        if len(set(interfaces)) != len(interfaces):
            raise CaptureOpenError(f"interface given twice: {list(interfaces)}")
        self.snaplen = snaplen
        self.bpf_filter = bpf_filter
        self._taps: list[_Tap] = []
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            for name in interfaces:
                self._taps.append(self._open(name, receive_buffer_bytes, ring))
        except BaseException:
            self.close()
            raise

    @property
    def interfaces(self) -> list[str]:
        return [t.stats.interface for t in self._taps]

    @property
    def modes(self) -> dict[str, str]:
        """How each interface is read: "ring NxS KiB" (TPACKET_V3) or "recv"."""
        return {t.stats.interface: t.description for t in self._taps}

    def _open(self, name: str, receive_buffer_bytes: int, ring: bool) -> _Tap:
        linktype = _interface_linktype(name)
        if ring:
            try:
                return self._open_socket(name, linktype, receive_buffer_bytes, use_ring=True)
            except _RingUnavailable as exc:
                # A fresh socket rather than undoing the ring: the recv path then starts from
                # exactly the state it always had.
                log.warning(
                    "packet ring unavailable, reading with recv",
                    extra={"fields": {"interface": name, "error": exc.strerror or str(exc)}},
                )
        return self._open_socket(name, linktype, receive_buffer_bytes, use_ring=False)

    def _open_socket(
        self, name: str, linktype: int, receive_buffer_bytes: int, *, use_ring: bool
    ) -> _Tap:
        fprog, keep_alive = _compile_filter(self.bpf_filter, linktype, self.snaplen)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureOpenError(
                f"{name}: opening a packet socket needs root or CAP_NET_RAW"
            ) from None
        ring: _Ring | None = None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            del keep_alive  # the kernel copied the program
            if use_ring:
                # Before the bind: the first packet after it already lands in the ring.
                ring = _setup_ring(sock, receive_buffer_bytes, self.snaplen)
            else:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer_bytes)
                except PermissionError:
                    # Without CAP_NET_ADMIN: capped at net.core.rmem_max, better than default.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            sock.bind((name, ETH_P_ALL))
            sock.setblocking(False)
            # Empty the statistics: counts from before the bind are not ours to report.
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3_SIZE)
        except _RingUnavailable:
            sock.close()
            raise
        except OSError as exc:
            if ring is not None:
                ring.close()
            sock.close()
            if isinstance(exc, PermissionError):
                raise CaptureOpenError(f"{name}: permission denied ({exc.strerror})") from None
            raise CaptureOpenError(f"{name}: {exc.strerror or exc}") from None
        stats = InterfaceStats(name, linktype, mode="ring" if ring is not None else "recv")
        return _Tap(sock, stats, ring)

    # --- the loop ------------------------------------------------------------------------------

    def packets(self) -> Iterator[PacketTuple]:
        """Yield packets until ``stop()``; timestamps are epoch seconds (the kernel's receive
        time on the ring path, the time of reading on the recv path)."""
        for batch in self.batches():
            yield from batch.packets() if isinstance(batch, RingBlock) else batch

    def batches(self) -> Iterator[Batch]:
        """Yield what each read gives until ``stop()``: a ``RingBlock`` on the ring path (its
        packets are counted by whoever reads them: ``RingBlock.packets`` or ``.count``), a list
        of up to DRAIN_BATCH packets (already counted) on the recv path."""
        poller = select.poll()
        by_fd: dict[int, _Tap] = {}
        for tap in self._taps:
            fd = tap.sock.fileno()
            by_fd[fd] = tap
            poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        failed = select.POLLERR | select.POLLHUP | select.POLLNVAL
        buf = bytearray(self.snaplen)
        taps = self._taps
        stop = self._stop
        while not stop.is_set():
            # Read every interface until all are empty, then sleep in poll(): on the ring
            # path a busy interface costs no system call at all.
            idle = True
            for tap in taps:
                stats = tap.stats
                batch: list[PacketTuple] = []
                blocks: list[bytes] = []
                try:
                    if tap.ring is not None:
                        blocks = tap.ring.take(RING_BLOCKS_PER_ROUND)
                    else:
                        truncated = self._recv_batch(tap, buf, batch)
                except OSError as exc:
                    if stop.is_set():
                        return
                    raise CaptureOpenError(f"{stats.interface}: {exc.strerror or exc}") from exc
                # Everything read is handed on, even after stop(): it is already out of the
                # kernel, so cutting it short would lose packets (hellos among them). One ring
                # block or DRAIN_BATCH packets: a few ms.
                if blocks:
                    idle = False
                    for data in blocks:
                        yield RingBlock(data, stats.linktype, stats)
                elif batch:
                    idle = False
                    stats.packets += len(batch)
                    stats.bytes += sum([p[3] for p in batch])
                    stats.truncated += truncated
                    yield batch
            if idle:
                for fd, event in poller.poll(POLL_TIMEOUT_MS):
                    tap_ = by_fd.get(fd)
                    if tap_ is not None and tap_.ring is not None and event & failed:
                        # The recv path sees socket errors (ENETDOWN: interface down or gone)
                        # from recv; with a ring only SO_ERROR tells, and poll() would keep
                        # returning at once.
                        self._raise_socket_error(tap_)

    @staticmethod
    def _recv_batch(tap: _Tap, buf: bytearray, out: list[PacketTuple]) -> int:
        """recv path: up to DRAIN_BATCH packets into ``out``; returns how many were cut."""
        recv_into = tap.sock.recv_into
        linktype = tap.stats.linktype
        snaplen = len(buf)
        view = memoryview(buf)
        now = time.time
        trunc = socket.MSG_TRUNC
        truncated = 0
        try:
            for _ in range(DRAIN_BATCH):
                wire = recv_into(buf, snaplen, trunc)
                if wire > snaplen:
                    truncated += 1
                    out.append((now(), linktype, bytes(buf), wire))
                else:
                    out.append((now(), linktype, bytes(view[:wire]), wire))
        except BlockingIOError:
            pass
        return truncated

    def _raise_socket_error(self, tap: _Tap) -> None:
        err = tap.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err and not self._stop.is_set():
            raise CaptureOpenError(f"{tap.stats.interface}: {os.strerror(err)}")

    def stop(self) -> None:
        """End ``packets()`` promptly; safe from any thread and from a signal handler."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # pipe full or closed: the flag alone ends the loop within POLL_TIMEOUT_MS

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # --- counters ------------------------------------------------------------------------------

    def read_kernel_stats(self) -> list[InterfaceStats]:
        """Fold the kernel's counters (reset on every read) into ours; return a copy of all."""
        out = []
        with self._stats_lock:
            for tap in self._taps:
                s = tap.stats
                try:
                    # A TPACKET_V3 socket answers with tpacket_stats_v3, any other with the
                    # 8-byte tpacket_stats: the length returned tells which.
                    raw = tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3_SIZE)
                except OSError:
                    raw = b""  # socket closed: the totals so far stand
                if len(raw) >= _STATS_V1_SIZE:
                    received, dropped = struct.unpack_from("=II", raw)
                    s.kernel_packets += received
                    s.kernel_drops += dropped
                if len(raw) >= _STATS_V3_SIZE:
                    s.kernel_freezes += _U32.unpack_from(raw, _STATS_V1_SIZE)[0]
                out.append(InterfaceStats(**vars(s)))
        return out

    def close(self) -> None:
        self._stop.set()
        if self._taps:
            self.read_kernel_stats()  # the last counts, before the sockets go
        with self._stats_lock:
            for tap in self._taps:
                tap.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

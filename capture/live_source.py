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
- ``recv_into`` a preallocated buffer with MSG_TRUNC (which returns the wire length even when
  the packet was cut at the snap length); the kernel's socket buffer is enlarged
  (SO_RCVBUFFORCE while privileged) to ride out bursts.
- poll() with a self-pipe: ``stop()`` wakes the loop at once; with several interfaces each
  socket is drained a bounded batch at a time so a busy interface cannot starve the others.
- Kernel counters come from getsockopt(PACKET_STATISTICS), which resets on read; they are
  accumulated here under a lock, so any thread may ask.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SNAPLEN",
    "CaptureOpenError",
    "InterfaceStats",
    "LiveSource",
    "default_filter",
]

PacketTuple = tuple[float, int, bytes, int]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
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
    kernel_drops: int = 0  # dropped by the kernel: socket buffer full


def default_filter(ports: Sequence[int]) -> str:
    """The kernel filter for the client side of TLS and STARTTLS services on ``ports``.

    Destination port, not "payload starts with 0x16": every data segment of the client's side
    must reach the reassembler, or a hello spanning segments is lost. SYNs pass too; they give
    the reassembler the initial sequence number.
    """
    if not ports:
        raise ValueError("no ports to capture")
    for port in ports:
        if not 0 < int(port) < 65536:
            raise ValueError(f"bad port: {port}")
    return "tcp and (" + " or ".join(f"dst port {int(p)}" for p in ports) + ")"


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


class _Tap:
    """One interface's open socket and counters."""

    def __init__(self, sock: socket.socket, stats: InterfaceStats) -> None:
        self.sock = sock
        self.stats = stats


class LiveSource:
    """Packets from one or more interfaces; open in the constructor, iterate with ``packets``.

    Open while privileged (CAP_NET_RAW), then drop privileges (``capture.privileges``), then
    iterate: reading from an open socket needs no privilege.
    """

    def __init__(
        self,
        interfaces: Sequence[str],
        *,
        bpf_filter: str,
        snaplen: int = DEFAULT_SNAPLEN,
        receive_buffer_bytes: int = 64 << 20,
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
                self._taps.append(self._open(name, receive_buffer_bytes))
        except BaseException:
            self.close()
            raise

    @property
    def interfaces(self) -> list[str]:
        return [t.stats.interface for t in self._taps]

    def _open(self, name: str, receive_buffer_bytes: int) -> _Tap:
        linktype = _interface_linktype(name)
        fprog, keep_alive = _compile_filter(self.bpf_filter, linktype, self.snaplen)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureOpenError(
                f"{name}: opening a packet socket needs root or CAP_NET_RAW"
            ) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            del keep_alive  # the kernel copied the program
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer_bytes)
            except PermissionError:
                # Without CAP_NET_ADMIN: capped at net.core.rmem_max, still better than default.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            sock.bind((name, ETH_P_ALL))
            sock.setblocking(False)
            # Empty the statistics: counts from before the bind are not ours to report.
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError as exc:
            sock.close()
            if isinstance(exc, PermissionError):
                raise CaptureOpenError(f"{name}: permission denied ({exc.strerror})") from None
            raise CaptureOpenError(f"{name}: {exc.strerror or exc}") from None
        return _Tap(sock, InterfaceStats(name, linktype))

    # --- the loop ------------------------------------------------------------------------------

    def packets(self) -> Iterator[PacketTuple]:
        """Yield packets until ``stop()``; timestamps are the receive time (epoch seconds)."""
        poller = select.poll()
        by_fd: dict[int, _Tap] = {}
        for tap in self._taps:
            fd = tap.sock.fileno()
            by_fd[fd] = tap
            poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        snaplen = self.snaplen
        buf = bytearray(snaplen)
        view = memoryview(buf)
        now = time.time
        trunc = socket.MSG_TRUNC
        stop = self._stop
        while not stop.is_set():
            for fd, _event in poller.poll(POLL_TIMEOUT_MS):
                tap = by_fd.get(fd)
                if tap is None:
                    continue  # the wake-up pipe: the flag is checked below
                recv_into = tap.sock.recv_into
                linktype = tap.stats.linktype
                stats = tap.stats
                got = nbytes = truncated = 0
                try:
                    for _ in range(DRAIN_BATCH):
                        wire = recv_into(buf, snaplen, trunc)
                        got += 1
                        nbytes += wire
                        if wire > snaplen:
                            truncated += 1
                            yield now(), linktype, bytes(buf), wire
                        else:
                            yield now(), linktype, bytes(view[:wire]), wire
                        if stop.is_set():
                            break
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if stop.is_set():
                        break
                    raise CaptureOpenError(f"{stats.interface}: {exc.strerror or exc}") from exc
                finally:
                    stats.packets += got
                    stats.bytes += nbytes
                    stats.truncated += truncated
                if stop.is_set():
                    break

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
                    raw = tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                except OSError:
                    raw = b""  # socket closed: the totals so far stand
                if len(raw) == 8:
                    received, dropped = struct.unpack("=II", raw)
                    s.kernel_packets += received
                    s.kernel_drops += dropped
                out.append(InterfaceStats(**vars(s)))
        return out

    def close(self) -> None:
        self._stop.set()
        if self._taps:
            self.read_kernel_stats()  # the last counts, before the sockets go
        with self._stats_lock:
            for tap in self._taps:
                tap.sock.close()
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

"""Time plain iteration of the capture readers over large generated captures.

    python benchmarks/reader_speed.py [--packets 1000000] [--min-size 60] [--max-size 1500]

Writes one classic pcap and one pcapng (EPBs on one Ethernet interface) with the same packets
into a temporary directory, then reports packets/s and MB/s for draining the reader and for a
Python ``for`` loop that unpacks every tuple, best of ``--repeat`` runs. The files are
generated, not real traffic: only the readers' per-record cost is measured here. No assertions;
this is a measurement to run by hand, not a test (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from ja3svc.capture.capture_file import open_capture

BATCH = 10_000  # packets written per join, to keep generation itself quick


def packet_sizes(count: int, low: int, high: int, seed: int = 1) -> Iterator[int]:
    rng = random.Random(seed)
    # A fixed table cycled keeps generation fast while still mixing sizes.
    table = [rng.randint(low, high) for _ in range(4096)]
    for i in range(count):
        yield table[i % len(table)]


def write_pcap(path: Path, sizes: list[int], payload: bytes) -> None:
    record = struct.Struct("<IIII")
    with path.open("wb") as out:
        # magic, v2.4, thiszone, sigfigs, snaplen, linktype 1 (Ethernet)
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        parts: list[bytes] = []
        for i, size in enumerate(sizes):
            parts.append(record.pack(1_700_000_000 + i // 1000, (i % 1000) * 1000, size, size))
            parts.append(payload[:size])
            if len(parts) >= 2 * BATCH:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))


def write_pcapng(path: Path, sizes: list[int], payload: bytes) -> None:
    with path.open("wb") as out:
        # SHB: type, length 28, byte-order magic, version 1.0, section length -1, length
        out.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        # IDB: type, length 20, linktype 1, reserved, snaplen, length
        out.write(struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20))
        head = struct.Struct("<IIIIIII")
        parts: list[bytes] = []
        for i, size in enumerate(sizes):
            padded = (size + 3) & ~3
            blen = 32 + padded
            ts = (1_700_000_000 + i // 1000) * 1_000_000 + (i % 1000) * 1000
            parts.append(head.pack(6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, size, size))
            parts.append(payload[:padded])
            parts.append(blen.to_bytes(4, "little"))
            if len(parts) >= 3 * BATCH:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))


def drain(path: Path) -> int:
    # deque(maxlen=0) consumes in C, so this times the reader alone.
    with path.open("rb") as stream:
        reader = open_capture(stream, str(path))
        deque(reader, maxlen=0)
        return reader.packets_read


def touch_fields(path: Path) -> int:
    with path.open("rb") as stream:
        total = 0
        for _ts, _linktype, frame, _wire in open_capture(stream, str(path)):
            total += len(frame)
        return total


def best_of(repeat: int, run: Callable[[], int]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--min-size", type=int, default=60)
    parser.add_argument("--max-size", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sizes = list(packet_sizes(args.packets, args.min_size, args.max_size))
    payload = os.urandom(args.max_size + 4)
    with tempfile.TemporaryDirectory(prefix="ja3svc-bench-") as tmp:
        files = {"pcap": Path(tmp) / "bench.pcap", "pcapng": Path(tmp) / "bench.pcapng"}
        started = time.perf_counter()
        write_pcap(files["pcap"], sizes, payload)
        write_pcapng(files["pcapng"], sizes, payload)
        print(
            f"generated {args.packets} packets of {args.min_size}-{args.max_size} bytes "
            f"in {time.perf_counter() - started:.1f}s"
        )
        for fmt, path in files.items():
            assert drain(path) == args.packets  # guards against timing a broken reader
            size_mb = path.stat().st_size / 1e6
            for label, run in (("drain", drain), ("for-loop", touch_fields)):
                seconds = best_of(args.repeat, lambda run=run, path=path: run(path))
                print(
                    f"{fmt:7s} {label:11s} {args.packets / seconds / 1e6:6.2f} M packets/s  "
                    f"{size_mb / seconds:7.0f} MB/s  ({seconds:.3f}s, {size_mb:.0f} MB)"
                )


if __name__ == "__main__":
    main()

"""Offline runs: capture files through the fingerprint engine, with progress and totals.

This is the file-reading worker loop behind ``ja3svc pcap``; it knows nothing of output formats
(the caller passes a sink) and nothing of the database.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ja3svc.capture.capture_file import CaptureDamagedError, open_capture

from ja3svc.engine import FingerprintEngine
from ja3svc.sighting import HelloSighting

ProgressCallback = Callable[[int], None]

# How many packets between progress callbacks; a power of two keeps the check a mask test.
PROGRESS_EVERY = 1 << 14


@dataclass
class RunTotals:
    """What a run read and found, summed over every input."""

    packets: int = 0
    bytes: int = 0
    flows: int = 0
    hellos: int = 0
    seconds: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)
    damaged: list[str] = field(default_factory=list)

    def add_engine(self, engine: FingerprintEngine) -> None:
        self.flows += engine.flows.stats.flows
        self.counters.update(engine.stats)
        fs = engine.flows.stats
        for name in ("evicted_full", "expired_idle"):
            if getattr(fs, name):
                self.counters[f"flows.{name}"] += getattr(fs, name)


def fingerprint_stream(
    stream: BinaryIO,
    name: str,
    sink: Callable[[HelloSighting, int], None],
    totals: RunTotals,
    progress: ProgressCallback | None = None,
    engine: FingerprintEngine | None = None,
) -> None:
    """Feed one capture through a fresh engine, calling ``sink(hello, frame)`` for every hello.

    ``frame`` is the 1-based number of the packet that completed the hello, as Wireshark
    numbers the capture's packets.

    Raises ``NotACaptureError`` before anything is read if the stream is not a capture. A
    damaged capture is recorded in ``totals.damaged`` after everything before the damage has
    been processed; it does not raise.
    """
    started = time.perf_counter()
    try:
        reader = open_capture(stream, name)
    except CaptureDamagedError as exc:  # a capture whose file header itself is cut short
        totals.damaged.append(str(exc))
        totals.seconds += time.perf_counter() - started
        return
    engine = engine or FingerprintEngine()
    feed = engine.feed_frame
    count = 0
    try:
        for ts, linktype, frame, wire_length in reader:
            found = feed(ts, linktype, frame, wire_length)
            count += 1
            if found:
                for sighting in found:
                    sink(sighting, count)
            if progress is not None and not count & (PROGRESS_EVERY - 1):
                progress(reader.bytes_read)
    except CaptureDamagedError as exc:
        totals.damaged.append(str(exc))  # the message already names the file and offset
    engine.finish()
    totals.packets += reader.packets_read
    totals.bytes += reader.bytes_read
    totals.hellos += engine.stats["hellos.client"] + engine.stats["hellos.server"]
    totals.add_engine(engine)
    totals.seconds += time.perf_counter() - started

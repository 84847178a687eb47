"""Offline runs: capture files through the fingerprint engine, with progress and totals.

This is the file-reading worker loop behind ``ja3svc pcap``; it knows nothing of output formats
(the caller passes a sink) and nothing of the database.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO

from ja3svc.capture.capture_file import (
    CHUNK_SIZE,
    CaptureDamagedError,
    NotACaptureError,
    open_capture,
    read_magic,
)

from ja3svc.dovecot import DEFAULT_PROFILE

if TYPE_CHECKING:
    # Imported where used: a run on the Rust engine never loads the Python one (and with it
    # the QUIC key schedule's cryptography), which is a third of the start-up time.
    from ja3svc.engine import FingerprintEngine
    from ja3svc.record import HelloRecord

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

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Add the time one capture takes to ``seconds``, however it ends, unless it raises
        (an input refused as not a capture counts for nothing)."""
        started = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - started

    def add_capture(
        self,
        packets: int,
        bytes_read: int,
        counters: Mapping[str, int],
        flow_stats: Mapping[str, int],
    ) -> None:
        """One capture's packets and bytes read, its engine's counters and flow-table figures
        (either engine reports them all)."""
        self.packets += packets
        self.bytes += bytes_read
        self.flows += flow_stats["flows"]
        self.counters.update(counters)
        self.hellos += counters.get("hellos.client", 0) + counters.get("hellos.server", 0)
        for name in ("evicted_full", "expired_idle"):
            if flow_stats[name]:
                self.counters[f"flows.{name}"] += flow_stats[name]


def fingerprint_stream(
    stream: BinaryIO,
    name: str,
    sink: Callable[[HelloRecord, int], None],
    totals: RunTotals,
    progress: ProgressCallback | None = None,
    engine: FingerprintEngine | None = None,
    *,
    dovecot_profile: str = DEFAULT_PROFILE,
) -> None:
    """Feed one capture through a fresh engine, calling ``sink(hello, frame)`` for every hello.

    ``frame`` is the 1-based number of the packet that completed the hello, as Wireshark
    numbers the capture's packets.

    Raises ``NotACaptureError`` before anything is read if the stream is not a capture. A
    damaged capture is recorded in ``totals.damaged`` after everything before the damage has
    been processed; it does not raise. ``dovecot_profile`` is for the fresh engine (a given
    ``engine`` has its own).
    """
    with totals.timing():
        try:
            reader = open_capture(stream, name)
        except CaptureDamagedError as exc:  # a capture whose file header itself is cut short
            totals.damaged.append(str(exc))
            return
        from ja3svc.engine import FingerprintEngine

        engine = engine or FingerprintEngine(dovecot_profile=dovecot_profile)
        feed = engine.feed_frame
        count = 0
        try:
            for ts, linktype, frame, wire_length in reader:
                found = feed(ts, linktype, frame, wire_length)
                count += 1
                if found:
                    for record in found:
                        sink(record, count)
                if progress is not None and not count & (PROGRESS_EVERY - 1):
                    progress(reader.bytes_read)
        except CaptureDamagedError as exc:
            totals.damaged.append(str(exc))  # the message already names the file and offset
        engine.finish()
        flow_stats = dataclasses.asdict(engine.flows.stats)
        totals.add_capture(reader.packets_read, reader.bytes_read, engine.stats, flow_stats)


# --- the Rust engine -----------------------------------------------------------------------

# "python" runs the pure-Python reference engine, "native" requires the Rust one; unset, the
# Rust engine is used when it was built and covers everything (QUIC and DTLS included).
ENGINE_ENV = "JA3SVC_ENGINE"
ENGINES = ("native", "python")


def native_module() -> ModuleType | None:
    """The extension ``ja3svc._native``, or None when this install has no Rust engine."""
    try:
        from ja3svc import _native
    except ImportError:
        return None
    return _native


def default_engine() -> str:
    """The engine ``ja3svc pcap`` uses unless told otherwise (``JA3SVC_ENGINE``)."""
    chosen = os.environ.get(ENGINE_ENV, "").strip().lower()
    if chosen in ENGINES:
        return chosen
    native = native_module()
    return "native" if native is not None and native.COMPLETE else "python"


def fingerprint_stream_native(
    stream: BinaryIO,
    name: str,
    totals: RunTotals,
    dovecot_profile: str,
    *,
    write_json: Callable[[str], None] | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    store: Callable[[list[tuple[Any, ...]]], None] | None = None,
    store_sensor: str = "",
    progress: ProgressCallback | None = None,
    path: str | None = None,
    max_flows: int = 200_000,
    idle_timeout: float = 300.0,
) -> None:
    """``fingerprint_stream`` on the Rust engine, with the same errors and totals.

    The capture goes to Rust in chunks (the GIL released while it works). With ``write_json``
    each chunk's hellos come back as finished JSON lines, so no Python object is built per
    hello; otherwise ``sink`` gets one dict per hello, equal to ``HelloRecord.as_dict``.
    ``store`` gets each chunk's hellos as one list of database rows built in Rust for the
    sensor ``store_sensor`` (``ja3svc.store.sighting_writer.ROW_COLUMNS``), beside either output.
    When ``path`` names the regular file ``stream`` reads (not compressed), Rust reads it
    itself, sparing a copy of every byte through Python.
    """
    native = native_module()
    if native is None:
        raise RuntimeError("the Rust engine (ja3svc._native) is not built in this install")
    with totals.timing():
        opened = stream
        stream, magic = read_magic(stream, name)  # gzip is read through in Python
        json = write_json is not None
        run = native.PcapRun(
            name, dovecot_profile, json, max_flows, idle_timeout,
            store_sensor if store is not None else None,
        )  # fmt: skip

        def deliver(found: Any) -> None:
            out, rows = found if store is not None else (found, None)
            if out:
                if write_json is not None:
                    write_json(out)
                elif sink is not None:
                    for record in out:
                        sink(record)
            if rows and store is not None:
                store(rows)

        if path is not None and stream is opened and os.path.isfile(path):
            run.open_file(path)
            while (found := run.feed_file()) is not None:
                deliver(found)
                if run.error is not None:
                    break
                if progress is not None:
                    progress(run.bytes_read)
            magic = b""  # the loop below only finishes the run (or reports its damage)
        read1 = getattr(stream, "read1", None)
        read: Callable[[int], bytes | None] = read1 if read1 is not None else stream.read
        chunk: bytes | None = magic
        bytes_read = None
        while True:
            deliver(run.feed(chunk) if chunk else run.finish())
            error = run.error
            if error is not None:
                if error[0] == "not_a_capture":
                    raise NotACaptureError(f"{name}: {error[1]}")
                totals.damaged.append(str(CaptureDamagedError(name, error[1], error[2])))
                if not run.format:  # the file header itself is cut short: nothing was read
                    return
                break
            if not chunk:
                break
            if progress is not None:
                progress(run.bytes_read)
            try:
                chunk = read(CHUNK_SIZE)
            except CaptureDamagedError as exc:  # compressed input that breaks off
                totals.damaged.append(str(exc))
                if not run.format:
                    return
                run.abandon()
                bytes_read = exc.offset
                break
        bytes_read = run.bytes_read if bytes_read is None else bytes_read
        totals.add_capture(run.packets_read, bytes_read, run.counters(), run.flow_stats())

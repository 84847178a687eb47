"""The long-running live capture: interfaces -> fingerprint engine -> database and memory.

Two threads, so that a slow or unreachable database never stalls packet reading (a stalled
reader is what makes the kernel drop packets):

- the capture thread (``run``) reads from the ``LiveSource`` a ring block (or recv batch) at a
  time, feeds it to the engine ``ja3svc pcap`` uses (``capture.live_engine``: the Rust one, a
  whole block per call, or the Python reference where the extension is absent), puts every
  client hello into the in-memory ``RecentConnections`` table (policy correlation in the same
  process, no IO) and hands every sighting record to a bounded queue; when the queue is full
  the record is dropped and counted (``userspace_drops``) rather than blocking;
- the writer thread takes records from the queue into the batched ``SightingWriter`` and flushes
  at least every ``flush_interval_seconds`` (so the policy service of another host finds a
  sighting in the database within about a second), reads the kernel's drop counters and logs
  the metrics as one JSON line every ``metrics_log_seconds``.

``metrics()`` returns a plain dict of counters for the service's /metrics; any thread may call
it. ``stop()`` ends both threads promptly and flushes what is queued.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ja3svc.capture.live_engine import LiveEngine, live_engine
from ja3svc.capture.live_source import InterfaceStats, LiveSource, default_filter
from ja3svc.capture.shared_connections import SharedConnections

from ja3svc.connections import RecentConnections
from ja3svc.dovecot import DEFAULT_PROFILE

if TYPE_CHECKING:  # the store pulls in SQLAlchemy; the worker also runs without a database
    from ja3svc.config.settings import CaptureSettings, Settings
    from ja3svc.store.database import Database
    from ja3svc.store.sighting_writer import SightingWriter

    from ja3svc.record import HelloRecord

__all__ = ["CaptureWorker", "open_source"]

log = logging.getLogger("ja3svc.capture")

_STOP = object()
# Records moved from the queue into the writer per wake-up, so a flush is never postponed by
# a long backlog.
_DRAIN_MAX = 5000


def open_source(
    settings: CaptureSettings,
    interfaces: Sequence[str] | None = None,
    bpf_filter: str | None = None,
) -> LiveSource:
    """Open the capture sockets as configured (needs CAP_NET_RAW; drop privileges after)."""
    names = list(interfaces or settings.interfaces)
    expression = (
        bpf_filter or settings.bpf_filter or default_filter(settings.ports, settings.udp_ports)
    )
    return LiveSource(
        names,
        bpf_filter=expression,
        snaplen=settings.snaplen,
        receive_buffer_bytes=settings.receive_buffer_bytes,
        ring=settings.ring,
    )


def default_sensor(interfaces: Sequence[str]) -> str:
    return f"{socket.gethostname()}:{'+'.join(interfaces)}"


class CaptureWorker:
    """Capture loop plus writer thread; see the module docstring."""

    def __init__(
        self,
        source: LiveSource,
        *,
        writer: SightingWriter | None = None,
        recent: RecentConnections | None = None,
        engine: LiveEngine | None = None,
        dovecot_profile: str = DEFAULT_PROFILE,
        flush_interval: float = 1.0,
        metrics_log_interval: float = 60.0,
        queue_max: int = 50_000,
    ) -> None:
        self.source = source
        self.writer = writer
        self.recent = SharedConnections(recent if recent is not None else RecentConnections())
        self.engine = engine or live_engine(dovecot_profile, 200_000, 300.0)
        self.dovecot_profile = self.engine.dovecot_profile
        self.flush_interval = flush_interval
        self.metrics_log_interval = metrics_log_interval
        self.started_at = time.time()
        self.userspace_drops = 0
        self.write_errors = 0
        self.records = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_max)
        self._capture_thread: threading.Thread | None = None
        self._writer_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        source: LiveSource,
        database: Database | None,
        *,
        sensor: str | None = None,
    ) -> CaptureWorker:
        """Worker as configured: flow table, recent-connection table and (with a database)
        the batched writer with its spool directory."""
        c = settings.capture
        writer = None
        if database is not None:
            from ja3svc.store.sighting_writer import SightingWriter

            writer = SightingWriter(
                database,
                sensor=sensor or c.sensor or default_sensor(source.interfaces),
                batch_size=settings.store.batch_size,
                spool_dir=settings.resolved_spool_dir(),
                retry_interval=settings.store.retry_interval_seconds,
            )
        return cls(
            source,
            writer=writer,
            recent=RecentConnections(c.recent_connections_max, c.correlation_window_seconds),
            engine=live_engine(
                settings.dovecot_openssl_profile, c.max_flows, c.flow_idle_seconds
            ),
            flush_interval=c.flush_interval_seconds,
            metrics_log_interval=c.metrics_log_seconds,
            queue_max=c.write_queue_max,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the capture in a background thread (``ja3svc serve --capture``)."""
        if self._capture_thread is not None:
            raise RuntimeError("capture already started")
        self._capture_thread = threading.Thread(
            target=self._run_guarded, name="ja3svc-capture", daemon=True
        )
        self._capture_thread.start()

    def run(self) -> None:
        """Capture in the calling thread until ``stop()``; flushes and closes on the way out."""
        self._start_writer()
        try:
            self._capture_loop()
        finally:
            self._finish()

    def stop(self, timeout: float = 10.0) -> None:
        """End capture promptly; wait up to ``timeout`` s for the last flush (thread mode)."""
        self._stopping.set()
        self.source.stop()
        if (
            self._capture_thread is not None
            and self._capture_thread is not threading.current_thread()
        ):
            self._capture_thread.join(timeout)

    @property
    def error(self) -> BaseException | None:
        """What ended the capture thread abnormally, if anything (thread mode)."""
        return self._error

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # the service stays up; /metrics and logs show it
            self._error = exc
            log.exception("capture stopped by an error")

    def _start_writer(self) -> None:
        self._writer_thread = threading.Thread(
            target=self._writer_loop, name="ja3svc-capture-writer", daemon=True
        )
        self._writer_thread.start()

    def _finish(self) -> None:
        self._stopping.set()
        self.source.stop()
        # Before the writer's stop mark: whatever the engine still completes must be stored.
        for record in self.engine.finish():
            self._take(record)
        try:
            # A full queue must not block shutdown: the writer drains it, and waits get bounded.
            self._queue.put(_STOP, timeout=10.0)
        except queue.Full:
            log.error("writer queue stuck; %d sightings not stored", self._queue.qsize())
        if self._writer_thread is not None:
            self._writer_thread.join(30.0)
        self._log_metrics("capture stopped")
        self.source.close()

    # --- capture thread ------------------------------------------------------------------------

    @property
    def engine_errors(self) -> int:
        return self.engine.errors

    def _capture_loop(self) -> None:
        feed = self.engine.feed
        take = self._take
        for batch in self.source.batches():
            try:
                found = feed(batch)
            except Exception:
                # The engines count a bad packet themselves; this is anything else (a bug):
                # counted, and the capture goes on with the next block.
                self.engine.errors += 1
                if self.engine.errors <= 10:
                    log.exception("error fingerprinting packets (counted, capture continues)")
                continue
            for record in found:
                take(record)

    def _take(self, record: HelloRecord) -> None:
        self.records += 1
        self.recent.put(record)  # client hellos only: the table ignores the others
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.userspace_drops += 1

    # --- writer thread -------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        q = self._queue
        writer = self.writer
        interval = self.flush_interval
        now = time.monotonic()
        next_flush = now + interval
        next_log = now + self.metrics_log_interval if self.metrics_log_interval else float("inf")
        last_drops = 0
        done = False
        while not done:
            try:
                item = q.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = None
            batch: list[object] = [] if item is None else [item]
            while len(batch) < _DRAIN_MAX:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            for rec in batch:
                if rec is _STOP:
                    done = True
                elif writer is not None:
                    self._write(writer.add, rec)
            now = time.monotonic()
            if now >= next_flush or done:
                if writer is not None:
                    self._write(writer.flush)
                next_flush = now + interval
                self.recent.expire(time.time())
                drops = self.kernel_drops()
                if drops > last_drops:
                    log.warning(
                        "kernel dropped packets",
                        extra={"fields": {"kernel_drops": drops, "new": drops - last_drops}},
                    )
                    last_drops = drops
            if now >= next_log:
                self._log_metrics("capture metrics")
                next_log = now + self.metrics_log_interval
        if writer is not None:
            self._write(writer.close)

    def _write(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except Exception as exc:
            # Outages are spooled by the writer itself; what arrives here is a real error
            # (bad row, schema drift). Count and keep capturing.
            self.write_errors += 1
            if self.write_errors <= 10:
                log.error("storing sightings failed", extra={"fields": {"error": repr(exc)}})

    # --- metrics -------------------------------------------------------------------------------

    def kernel_drops(self) -> int:
        return sum(s.kernel_drops for s in self.source.read_kernel_stats())

    def interface_stats(self) -> list[InterfaceStats]:
        return self.source.read_kernel_stats()

    def metrics(self) -> dict[str, int | float]:
        """Counters as a flat dict of numbers (cheap; safe from any thread)."""
        ifaces = self.source.read_kernel_stats()
        figures = self.engine.figures()
        out: dict[str, int | float] = {
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "packets": sum(s.packets for s in ifaces),
            "bytes": sum(s.bytes for s in ifaces),
            "truncated_packets": sum(s.truncated for s in ifaces),
            "kernel_packets": sum(s.kernel_packets for s in ifaces),
            "kernel_drops": sum(s.kernel_drops for s in ifaces),
            "kernel_ring_freezes": sum(s.kernel_freezes for s in ifaces),
            "ring_interfaces": sum(s.mode == "ring" for s in ifaces),
            "userspace_drops": self.userspace_drops,
            "hellos": figures["hellos"],
            "server_hellos": figures["server_hellos"],
            "tcp_gaps": figures["tcp_gaps"],
            "engine_errors": self.engine_errors,
            "flows": figures["flows"],
            "flows_active": figures["flows_active"],
            "flows_evicted": figures["flows_evicted"],
            "flows_expired": figures["flows_expired"],
            "write_queue": self._queue.qsize(),
            "write_errors": self.write_errors,
        }
        recent = self.recent.snapshot()
        out["recent_connections"] = recent["entries"]
        out["recent_evicted"] = recent["evicted_full"]
        out["recent_expired"] = recent["expired"]
        if self.writer is not None:
            ws = self.writer.stats
            out["sightings_stored"] = ws.stored
            out["sightings_duplicates"] = ws.duplicates
            out["sightings_spooled"] = ws.spooled
            out["sightings_replayed"] = ws.replayed
        return out

    def _log_metrics(self, message: str) -> None:
        try:
            fields: dict[str, Any] = dict(self.metrics())
        except Exception as exc:  # metrics must never take the capture down
            fields = {"error": repr(exc)}
        log.info(message, extra={"fields": fields})

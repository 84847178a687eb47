"""The fingerprint engine behind a live capture: the Rust one, fed whole ring blocks, or the
pure-Python reference where the extension is absent.

The choice follows ``ja3svc pcap``'s (``capture.pcap_run.default_engine``): ``JA3SVC_ENGINE``
(``native`` or ``python``) if set, else the Rust engine when it is built. The Rust engine gets a
whole TPACKET_V3 block (or a recv batch) per call and works with the GIL released, so no Python
code runs per packet; Python sees only the hellos. The Python engine reads the same blocks
packet by packet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ja3svc.capture.live_source import Batch, RingBlock
from ja3svc.capture.pcap_run import ENGINE_ENV, default_engine, native_module

from ja3svc.record import HelloRecord

if TYPE_CHECKING:
    from ja3svc.engine import FingerprintEngine

__all__ = [
    "EngineUnavailable",
    "LiveEngine",
    "NativeLiveEngine",
    "PythonLiveEngine",
    "live_engine",
]

log = logging.getLogger("ja3svc.capture")


class EngineUnavailable(RuntimeError):
    """``JA3SVC_ENGINE=native`` in an install without the extension; the message is one line."""


class LiveEngine(Protocol):
    """What the capture worker needs of an engine."""

    name: str
    dovecot_profile: str
    errors: int  # packets (or batches) the engine failed on; counted, capture continues

    def feed(self, batch: Batch) -> Sequence[HelloRecord]: ...
    def finish(self) -> Sequence[HelloRecord]: ...
    def figures(self) -> dict[str, int]:
        """hellos, server_hellos, tcp_gaps, flows, flows_active, flows_evicted, flows_expired."""
        ...


class PythonLiveEngine:
    """The pure-Python reference engine, one call per packet."""

    name = "python"

    def __init__(self, engine: FingerprintEngine) -> None:
        self.engine = engine
        self.dovecot_profile = engine.dovecot_profile
        self.errors = 0

    def feed(self, batch: Batch) -> Sequence[HelloRecord]:
        packets = batch.packets() if isinstance(batch, RingBlock) else batch
        feed = self.engine.feed_frame
        out: list[HelloRecord] = []
        for ts, linktype, frame, wire_length in packets:
            try:
                found = feed(ts, linktype, frame, wire_length)
            except Exception:
                # One odd packet must not end days of capture; the count shows it happened.
                self.errors += 1
                if self.errors <= 10:
                    log.exception("error fingerprinting a packet (counted, capture continues)")
                continue
            if found:
                out.extend(found)
        return out

    def finish(self) -> Sequence[HelloRecord]:
        self.engine.finish()  # the Python engine reports no hello at the end, only counts
        return ()

    def figures(self) -> dict[str, int]:
        es, flows = self.engine.stats, self.engine.flows
        return {
            "hellos": es.get("hellos.client", 0),
            "server_hellos": es.get("hellos.server", 0),
            "tcp_gaps": es.get("skipped.tcp_gap", 0),
            "flows": flows.stats.flows,
            "flows_active": len(flows),
            "flows_evicted": flows.stats.evicted_full,
            "flows_expired": flows.stats.expired_idle,
        }


class NativeLiveEngine:
    """The Rust engine (``ja3svc._native.LiveRun``), one call per ring block."""

    name = "native"

    def __init__(self, dovecot_profile: str, max_flows: int, idle_timeout: float) -> None:
        native = native_module()
        if native is None:
            raise EngineUnavailable("the Rust engine (ja3svc._native) is not built in this install")
        self.run: Any = native.LiveRun(dovecot_profile, max_flows, idle_timeout)
        self.dovecot_profile = dovecot_profile
        self.errors = 0
        self._malformed_logged = False

    def feed(self, batch: Batch) -> Sequence[HelloRecord]:
        if isinstance(batch, RingBlock):
            found, packets, wire_bytes, truncated, malformed = self.run.feed_block(
                batch.data, batch.linktype
            )
            batch.count(packets, wire_bytes, truncated)
            if malformed:
                self.errors += 1
                if not self._malformed_logged:
                    self._malformed_logged = True
                    log.error("ring block with a broken layout (counted, rest of it skipped)")
        else:
            found = self.run.feed_packets(batch)
        return [HelloRecord.from_dict(d) for d in found] if found else ()

    def finish(self) -> Sequence[HelloRecord]:
        return [HelloRecord.from_dict(d) for d in self.run.finish()]

    def figures(self) -> dict[str, int]:
        counters, flows = self.run.counters(), self.run.flow_stats()
        return {
            "hellos": counters.get("hellos.client", 0),
            "server_hellos": counters.get("hellos.server", 0),
            "tcp_gaps": counters.get("skipped.tcp_gap", 0),
            "flows": flows["flows"],
            "flows_active": flows["active"],
            "flows_evicted": flows["evicted_full"],
            "flows_expired": flows["expired_idle"],
        }


def live_engine(dovecot_profile: str, max_flows: int, idle_timeout: float) -> LiveEngine:
    """The engine a capture uses (see the module docstring). ``JA3SVC_ENGINE=native`` without
    the extension is ``EngineUnavailable`` with one clear line; unset, a missing extension means the
    Python engine and one warning."""
    chosen = default_engine()
    if chosen == "native":
        if native_module() is None:
            raise EngineUnavailable(
                "the Rust engine is not built in this install (it needs a Rust toolchain at "
                f"install time); unset {ENGINE_ENV} or set it to python"
            )
        return NativeLiveEngine(dovecot_profile, max_flows, idle_timeout)
    if native_module() is None and not os.environ.get(ENGINE_ENV):
        log.warning("the Rust engine is not built in this install; using the slower Python one")
    from ja3svc.engine import FingerprintEngine
    from ja3svc.flow_table import FlowTable

    return PythonLiveEngine(
        FingerprintEngine(FlowTable(max_flows, idle_timeout), dovecot_profile=dovecot_profile)
    )

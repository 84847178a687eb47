"""What QUIC/DTLS detection costs `ja3svc pcap` on traffic without QUIC (issue 6: at most 5%).

Runs the engine over the benchmark capture (benchmarks/make_capture.py: TCP, HTTP and DNS, no
QUIC) with its UDP path as shipped, and with the UDP path replaced by what it did before QUIC
support (count and skip), alternating, and prints the best CPU time of each and the difference.

    python benchmarks/quic_overhead.py [CAPTURE] [--runs N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ja3svc.capture.capture_file import open_capture

from ja3svc.engine import FingerprintEngine

DEFAULT = Path(__file__).parent / ".cache" / "mixed-1000000-s20250520-v2.pcap"


def _udp_skipped(self: FingerprintEngine, *args: Any) -> tuple[()]:
    self.stats["skipped.not_tcp"] += 1
    return ()


def run(path: Path, without_udp: bool) -> tuple[float, int]:
    engine = FingerprintEngine()
    if without_udp:
        engine._udp = _udp_skipped.__get__(engine)  # type: ignore[method-assign]
    feed = engine.feed_frame
    started = time.process_time()
    with open(path, "rb") as fh:
        for ts, linktype, frame, wire_length in open_capture(fh, str(path)):
            feed(ts, linktype, frame, wire_length)
    return time.process_time() - started, engine.stats["hellos.client"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.capture.exists():
        raise SystemExit(f"{args.capture} missing: run benchmarks/pcap_throughput.py once first")
    best = {True: float("inf"), False: float("inf")}
    hellos = {}
    for _ in range(max(1, min(args.runs, 10))):
        for without in (True, False):
            seconds, hellos[without] = run(args.capture, without)
            best[without] = min(best[without], seconds)
    print(f"without QUIC/DTLS detection: {best[True]:.3f} s CPU, {hellos[True]} ClientHellos")
    print(f"with QUIC/DTLS detection:    {best[False]:.3f} s CPU, {hellos[False]} ClientHellos")
    print(f"cost: {100 * (best[False] - best[True]) / best[True]:+.1f}% (target: at most +5%)")


if __name__ == "__main__":
    main()

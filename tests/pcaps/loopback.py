"""Recording a test connection on the loopback interface, for the UDP capture scripts
(tests/pcaps/quic/regenerate.py, regenerate_versions.py and tests/pcaps/dtls/regenerate.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tcpdump_lo(out: Path, bpf: Sequence[str]) -> Iterator[None]:
    """tcpdump writes what ``bpf`` matches on lo to ``out`` while the block runs."""
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "-w", str(out), *bpf], stderr=subprocess.PIPE, text=True
    )
    try:
        # Packets sent before tcpdump prints "listening on" are lost, and a few hundred
        # milliseconds more pass before the filter really sees anything.
        assert dump.stderr is not None
        dump.stderr.readline()
        time.sleep(2)
        yield
        time.sleep(1)
    finally:
        dump.terminate()
        dump.wait(timeout=10)


def record_until_captured(out: Path, record: Callable[[], None], attempts: int = 5) -> None:
    """Run ``record`` (which writes ``out`` through ``tcpdump_lo``) until ``out`` holds a packet.

    tcpdump on lo now and then records nothing although it said "listening"; such a capture is
    simply made again, at most ``attempts`` times (the last empty one is left for the caller's
    checks to refuse)."""
    for _ in range(attempts):
        record()
        if out.stat().st_size > 24:  # more than the pcap file header
            return

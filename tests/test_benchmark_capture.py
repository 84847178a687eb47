"""The benchmark's generated capture: reproducible, and its planted hello count is the truth.

The throughput benchmark scores every tool against the number of ClientHellos the generator says
it planted, so that number is checked here against an independent dissector (tshark), on a small
capture that takes well under a second to make.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MAKE_CAPTURE = Path(__file__).resolve().parent.parent / "benchmarks" / "make_capture.py"
PACKETS = 5000


def _make(out: Path, packets: int = PACKETS) -> dict:
    subprocess.run([sys.executable, str(MAKE_CAPTURE), "--packets", str(packets), "--out",
                    str(out), "--quiet"], check=True, capture_output=True, timeout=120)
    return json.loads(out.with_name(out.name + ".planted.json").read_text())


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench") / "small.pcap"
    return out, _make(out)


def test_same_bytes_twice(capture: tuple[Path, dict], tmp_path: Path) -> None:
    first, meta = capture
    again = tmp_path / "again.pcap"
    meta2 = _make(again)
    assert first.read_bytes() == again.read_bytes()
    assert meta2 == meta
    hellos = first.with_name(first.name + ".hellos.jsonl")
    assert hellos.read_bytes() == again.with_name(again.name + ".hellos.jsonl").read_bytes()


def test_sidecar_is_consistent(capture: tuple[Path, dict]) -> None:
    path, meta = capture
    assert meta["packets"] == PACKETS
    assert meta["bytes"] == path.stat().st_size
    total = meta["client_hellos"]
    assert total == meta["single_segment"] + meta["multi_segment"]
    assert total == sum(meta["per_port"].values()) == sum(meta["per_template"].values())
    assert 0.01 * PACKETS <= total <= 0.03 * PACKETS
    # Roughly half the hellos must span segments: that is what the benchmark is about.
    assert 0.3 * total <= meta["multi_segment"] <= 0.7 * total
    assert meta["starttls"] > 0 and meta["ipv6"] > 0
    lines = path.with_name(path.name + ".hellos.jsonl").read_text().splitlines()
    assert len(lines) == total


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_finds_exactly_the_planted_hellos(capture: tuple[Path, dict]) -> None:
    path, meta = capture
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", "tls.handshake.type==1", "-T", "fields",
         "-e", "tls.handshake.ja3_full"],
        check=True, capture_output=True, text=True, timeout=240,
    )
    found = [line for line in out.stdout.splitlines() if line]
    assert len(found) == meta["client_hellos"]
    # And the JA3 strings the generator recorded are the ones tshark computes from the bytes.
    planted = [json.loads(line)["ja3"]
               for line in path.with_name(path.name + ".hellos.jsonl").read_text().splitlines()]
    assert sorted(found) == sorted(planted)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_checksums_and_tcp_are_clean(capture: tuple[Path, dict]) -> None:
    # Bad checksums or TCP anomalies would make some tools drop packets (Suricata does), and the
    # benchmark would then measure the generator's bugs instead of the tools.
    path, _ = capture
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
         "-Y", "tcp.checksum.status==0 || ip.checksum.status==0 || udp.checksum.status==0"
               " || _ws.malformed || tcp.analysis.flags"],
        check=True, capture_output=True, text=True, timeout=240,
    )
    assert out.stdout.strip() == ""

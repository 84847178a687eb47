"""The capture file readers against tshark on real captures, read in place.

tshark is the independent oracle: every packet's time and lengths as it reads them, and where a
cut-short file ends.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ja3svc.capture.capture_file import CaptureDamagedError, open_capture

from tests.support.paths import FOXIO, PCAPS

# --------------------------------------------------------------------------------------------
# Real captures, read in place; tshark is the independent oracle.

REAL_CAPTURE_DIRS = [PCAPS, FOXIO / "pcap"]
CAPTURE_SUFFIXES = {".pcap", ".pcapng", ".cap"}


def real_captures() -> Iterator[object]:
    found = False
    for folder in REAL_CAPTURE_DIRS:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix in CAPTURE_SUFFIXES and path.is_file():
                    found = True
                    yield pytest.param(path, id=f"{folder.name}/{path.name}")
    if not found:
        yield pytest.param(
            None,
            marks=pytest.mark.skip(
                reason=f"no real captures in {', '.join(map(str, REAL_CAPTURE_DIRS))}"
            ),
            id="no-real-captures",
        )


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", list(real_captures()))
def test_real_capture_matches_tshark(path: Path) -> None:
    fields = ["-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len"]
    result = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", *fields],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    packets: list[tuple[float, int, bytes, int]] = []
    with path.open("rb") as stream:
        reader = open_capture(stream, str(path))
        try:
            for packet in reader:
                packets.append(packet)
        except CaptureDamagedError as exc:
            # A damaged capture is acceptable only where tshark also complains about it.
            assert result.returncode != 0, f"tshark reads it cleanly, we say: {exc}"
        else:
            assert reader.bytes_read == path.stat().st_size
    assert len(packets) == len(rows), f"tshark counts {len(rows)} packets"
    for number, (packet, (epoch, wire_length, captured)) in enumerate(
        zip(packets, rows, strict=True), 1
    ):
        assert packet[0] == pytest.approx(float(epoch), abs=1e-6), f"frame {number}"
        assert (len(packet[2]), packet[3]) == (int(captured), int(wire_length)), f"frame {number}"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize(
    ("name", "keep"), [("CVE-2018-6794.pcap", 7000), ("browsers-x509.pcapng", 60000)]
)
def test_truncated_real_capture_matches_tshark(name: str, keep: int, tmp_path: Path) -> None:
    source = REAL_CAPTURE_DIRS[1] / name
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    cut = tmp_path / name
    cut.write_bytes(source.read_bytes()[:keep])
    result = subprocess.run(
        ["tshark", "-n", "-r", str(cut), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0  # tshark also reports the file as cut short
    with cut.open("rb") as stream:
        reader = open_capture(stream, name)
        with pytest.raises(CaptureDamagedError) as info:
            for _packet in reader:
                pass
    assert reader.packets_read == len(result.stdout.split())
    assert 0 < info.value.offset < keep
    assert "file ends inside" in str(info.value)

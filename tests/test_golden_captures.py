"""The engine against tshark on captures of real client stacks made for this project.

Each ``tests/pcaps/<capture>.expected.json`` holds what tshark 4.0.17 reported for that capture
(written by tests/pcaps/regenerate.py). Every hello tshark reports must come out of
``ja3svc pcap`` with the same endpoints and the same JA3/JA3S string and hash, and nothing more.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import fingerprint_file

PCAPS = Path(__file__).parent / "pcaps"
EXPECTED = sorted(PCAPS.rglob("*.expected.json"))

Hello = tuple[str, str, int, str, int, str, str]


def _capture_of(expected: Path) -> Path:
    return expected.with_name(json.loads(expected.read_text())["capture"])


def _tcp_expected(expected: Path) -> Counter[Hello]:
    out: Counter[Hello] = Counter()
    for h in json.loads(expected.read_text())["hellos"]:
        if h.get("transport", "tcp") != "tcp":
            continue
        full, digest = (
            (h["ja3"], h["ja3_hash"]) if h["hello"] == "client" else (h["ja3s"], h["ja3s_hash"])
        )
        out[(h["hello"], h["src"], h["sport"], h["dst"], h["dport"], full, digest)] += 1
    return out


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_every_hello_tshark_reports(expected: Path) -> None:
    want = _tcp_expected(expected)
    if not want:
        pytest.skip("no TCP hellos in this capture (QUIC/DTLS are tested on their own)")
    records, status = fingerprint_file(_capture_of(expected))
    assert status == 0
    got: Counter[Hello] = Counter()
    for d in records:
        if d["transport"] != "tcp":
            continue
        if d["hello"] == "client":
            got[
                ("client", d["src"], d["sport"], d["dst"], d["dport"], d["ja3"], d["ja3_hash"])
            ] += 1
        else:
            got[
                ("server", d["src"], d["sport"], d["dst"], d["dport"], d["ja3s"], d["ja3s_hash"])
            ] += 1
    assert want - got == Counter(), f"missing or different: {want - got}"
    assert got - want == Counter(), f"not reported by tshark: {got - want}"


def test_golden_captures_exist() -> None:
    # The suite must not pass vacuously because the captures went missing.
    assert len(EXPECTED) >= 20

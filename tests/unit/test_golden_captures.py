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
from ja3svc.capture.pcap_run import native_module

from tests.support.cli import fingerprint_file
from tests.support.paths import PCAPS

EXPECTED = sorted(PCAPS.rglob("*.expected.json"))
# Both engines against the oracle: the Rust one must be built (pip install with a Rust toolchain).
ENGINES = ("python", "native")


def _udp_in(engine: str) -> None:
    """Skip the Rust engine on QUIC/DTLS until their port is in it (ja3svc._native.COMPLETE)."""
    native = native_module()
    if engine == "native" and native is not None and not native.COMPLETE:
        pytest.skip("QUIC/DTLS are not in this build of the Rust engine yet")

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


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_every_hello_tshark_reports(expected: Path, engine: str) -> None:
    want = _tcp_expected(expected)
    if not want:
        pytest.skip("no TCP hellos in this capture (QUIC/DTLS are tested on their own)")
    records, status = fingerprint_file(_capture_of(expected), "--engine", engine)
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


def _udp_cases() -> list[tuple[str, Path, dict[str, list[dict[str, str]]]]]:
    cases = []
    for transport in ("quic", "dtls"):
        table = json.loads((PCAPS / transport / "expected.json").read_text())
        for name, hellos in sorted(table.items()):
            cases.append((transport, PCAPS / transport / name, hellos))
    return cases


# After a Retry, aioquic sends a new ClientHello under the new keys; tshark takes it for a resend
# and does not dissect it (tests/unit/test_quic.py explains). Its JA3 is that of the first hello.
TSHARK_MISSES_SECOND_HELLO = {"retry.pcap"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("transport", "capture", "hellos"), _udp_cases(),
                         ids=lambda v: v.name if isinstance(v, Path) else "")  # fmt: skip
def test_quic_and_dtls_hellos_equal_tshark(
    transport: str, capture: Path, hellos: dict[str, list[dict[str, str]]], engine: str
) -> None:
    _udp_in(engine)
    want = Counter(("client", h["ja3"], h["ja3_hash"]) for h in hellos["client"])
    want += Counter(("server", h["ja3s"], h["ja3s_hash"]) for h in hellos["server"])
    if capture.name in TSHARK_MISSES_SECOND_HELLO:
        first = hellos["client"][0]
        want[("client", first["ja3"], first["ja3_hash"])] += 1
    records, status = fingerprint_file(capture, "--engine", engine)
    assert status == 0
    assert {d["transport"] for d in records} == {transport}
    got = Counter(
        (d["hello"], d["ja3"], d["ja3_hash"])
        if d["hello"] == "client"
        else (d["hello"], d["ja3s"], d["ja3s_hash"])
        for d in records
    )
    assert got == want
    assert all(d["ja4"].startswith(transport[0]) for d in records if d["hello"] == "client")

"""The engine against independent implementations on third-party captures.

Oracles (read in place from ../shared/conformance/foxio, never copied here): tshark 4.0.17's
``tls.handshake.ja3_full``/``ja3s_full`` for every TCP hello it reports, and the JA4 values
FoxIO's reference implementation records. Each capture is one test case, run on both engines:
the Rust one (the default) and the pure-Python reference.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from typing import Any

import pytest
from ja3svc.capture.pcap_run import ENGINES, native_module

from tests.support.cli import fingerprint_file
from tests.support.paths import FOXIO, PCAPS

if not FOXIO.is_dir():
    pytest.skip(
        f"conformance data not found at {FOXIO} (CI places ../shared beside the checkout)",
        allow_module_level=True,
    )


def _tshark_rows() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(FOXIO / "expected-ja3-tshark-4.0.17.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            rows[row["pcap"]].append(row)
    return rows


TSHARK = _tshark_rows()
CAPTURES = sorted(p.name for p in (FOXIO / "pcap").iterdir())


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine by name; the Rust one is part of every install this suite runs on."""
    if request.param == "native":
        assert native_module() is not None, "ja3svc._native is not built: pip install -e ."
    return str(request.param)


def _ours(name: str, engine: str) -> list[dict[str, Any]]:
    records, status = fingerprint_file(FOXIO / "pcap" / name, "--engine", engine)
    assert status in (0, 2), f"ja3svc pcap --engine {engine} exited {status}"
    return records


Row = tuple[str, str, str, int, str, int, str, str]


@pytest.mark.parametrize("name", [n for n in CAPTURES if TSHARK.get(n)])
def test_ja3_and_ja3s_equal_tshark(name: str, engine: str) -> None:
    """Every TCP and QUIC hello, client and server, with its endpoints, string and MD5."""
    expected: Counter[Row] = Counter()
    for r in TSHARK[name]:
        hello = "client" if r["handshake_type"] == "1" else "server"
        addr = (r["src"], int(r["sport"]), r["dst"], int(r["dport"]))
        expected[(r["transport"], hello, *addr, r["ja3_or_ja3s_full"], r["md5"])] += 1
    got: Counter[Row] = Counter()
    for d in _ours(name, engine):
        client = d["hello"] == "client"
        full, md5 = (d["ja3"], d["ja3_hash"]) if client else (d["ja3s"], d["ja3s_hash"])
        addr = (d["src"], d["sport"], d["dst"], d["dport"])
        got[(d["transport"], d["hello"], *addr, full, md5)] += 1
    missing = expected - got
    assert not missing, f"hellos tshark reports that we do not (or differently): {missing}"
    extra = got - expected
    assert not extra, f"hellos we report that tshark does not: {extra}"


def _foxio_expectations(name: str) -> list[tuple[tuple[str, int, str, int, int], str, str]]:
    out = []
    for entry in json.loads((FOXIO / "expected-ja4" / f"{name}.json").read_text()):
        for key, value in entry.items():
            if not key.startswith("JA4."):
                continue
            index = int(key.split(".")[1])
            conn = (entry["src"], int(entry["srcport"]), entry["dst"], int(entry["dstport"]), index)
            out.append((conn, value, entry[f"JA4_r.{index}"]))
    return out


# Where we believe FoxIO's recorded value is wrong. The JA4 specification says that when the first
# or last byte of the first ALPN value is not alphanumeric, the first and last hex digits of the
# value are used: ALPN 0xba 0xad gives "bd". FoxIO's recorded output (their Python tool) prints
# "99" there, contradicting its own specification, so we hold ourselves to the specification.
KNOWN_DIVERGENCES = {
    ("tls-non-ascii-alpn.pcapng", ("192.168.1.168", 50112, "142.251.16.94", 443, 1)): (
        "t13d151699",
        "t13d1516bd",
    ),
}

# Captures for which FoxIO records at least one JA4 (some list only connections without a hello).
JA4_CASES = [
    n
    for n in CAPTURES
    if (FOXIO / "expected-ja4" / f"{n}.json").exists() and _foxio_expectations(n)
]

# FoxIO's JSON files carry no QUIC entries; the QUIC JA4 values FoxIO publishes for these
# captures were typed, with their source, into tests/pcaps/quic/foxio-ja4.json.
FOXIO_QUIC = json.loads((PCAPS / "quic" / "foxio-ja4.json").read_text())


@pytest.mark.parametrize("name", sorted(k for k in FOXIO_QUIC if not k.startswith("_")))
def test_quic_ja4_equals_foxio(name: str, engine: str) -> None:
    # Keyed by the client's UDP source port, as FoxIO's snapshots list them.
    ours = {
        str(d["sport"]): d["ja4"]
        for d in _ours(name, engine)
        if d["transport"] == "quic" and d["hello"] == "client"
    }
    expected = FOXIO_QUIC[name]
    assert expected, "no expectations recorded"
    assert {port: ours.get(port) for port in expected} == expected


@pytest.mark.parametrize("name", JA4_CASES)
def test_ja4_equals_foxio(name: str, engine: str) -> None:
    expected = _foxio_expectations(name)
    ours = {
        (d["src"], d["sport"], d["dst"], d["dport"], d["index"]): d
        for d in _ours(name, engine)
        if d["hello"] == "client"
    }
    problems = []
    for conn, ja4, ja4_raw in expected:
        divergence = KNOWN_DIVERGENCES.get((name, conn))
        if divergence is not None:
            foxio_a, spec_a = divergence
            assert ja4.startswith(foxio_a + "_"), "FoxIO's data changed; revisit the divergence"
            ja4 = spec_a + ja4[len(foxio_a) :]
            ja4_raw = spec_a + ja4_raw[len(foxio_a) :]
        d = ours.get(conn)
        if d is None:
            problems.append(f"{conn}: not found (FoxIO: {ja4})")
        elif (d["ja4"], d["ja4_r"]) != (ja4, ja4_raw):
            problems.append(f"{conn}: ours {d['ja4']} / {d['ja4_r']}, FoxIO {ja4} / {ja4_raw}")
    assert not problems, "\n".join(problems)

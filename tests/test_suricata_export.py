"""`ja3svc labels export suricata` checked by the consumer: the real Suricata 7 alerts on it.

Suricata (bookworm-backports, installed by .ci/system-setup) reads real captures with the
exported dataset and rule. Which connection carries which fingerprint comes from independent
oracles: tshark's JA3/JA3S in tests/pcaps/*.expected.json, FoxIO's recorded JA4 for its own
captures in ../shared/conformance/foxio. An alert is attributed to the connection it fired on,
so the test sees both a label that should fire and did not, and an alert where none belonged.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.paths import FOXIO, PCAPS

ABSENT_MD5 = "b386946a5a44d1ddcc843bc75336dfce"  # SSLBL's Dridex entry: in no test capture
ABSENT_JA4 = "t13d311000_e8f1e7e78f70_d41ae481755e"  # no FoxIO test capture has it

# Suricata's own defaults compute neither fingerprint unless asked; midstream lets it follow the
# FoxIO captures that start after the TCP handshake.
SURICATA_YAML = """%YAML 1.1
---
vars:
  address-groups: {HOME_NET: "any", EXTERNAL_NET: "any"}
default-log-dir: LOGDIR
outputs:
  - eve-log: {enabled: yes, filetype: regular, filename: eve.json, types: [alert]}
app-layer:
  protocols:
    tls: {enabled: yes, detection-ports: {dp: 443}, ja3-fingerprints: yes, ja4-fingerprints: yes}
stream: {midstream: true, async-oneside: true}
logging: {default-log-level: warning, outputs: [{console: {enabled: yes}}]}
"""

Conn = tuple[str, int]  # the client's address and port


def _suricata() -> str:
    path = shutil.which("suricata")
    assert path, "suricata is not installed: run .ci/system-setup (Suricata 7 from backports)"
    return path


def _conn(addr: str, port: int | str) -> Conn:
    return str(ipaddress.ip_address(addr)), int(port)


def _run_suricata(capture: Path, rules: Path, workdir: Path) -> set[tuple[Conn, int]]:
    """(client connection, signature id) of every alert Suricata raises on the capture."""
    logdir = workdir / f"log-{capture.name}"
    logdir.mkdir()
    config = workdir / "suricata.yaml"
    config.write_text(SURICATA_YAML.replace("LOGDIR", str(logdir)))
    proc = subprocess.run(
        [_suricata(), "-c", str(config), "-r", str(capture), "-S", str(rules), "-l", str(logdir),
         "-k", "none"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    alerts = set()
    for line in (logdir / "eve.json").read_text().splitlines():
        event = json.loads(line)
        if event["event_type"] == "alert":
            flow = event["flow"]
            alerts.add((_conn(flow["src_ip"], flow["src_port"]), event["alert"]["signature_id"]))
    return alerts


def _export(db_url: str, workdir: Path, kind: str, sid: int) -> Path:
    dataset = workdir / f"deny-{kind}.lst"
    rules = workdir / f"{kind}.rules"
    status, _, err = run_cli(
        "labels", "export", "suricata", str(dataset), "--kind", kind, "--action", "deny",
        "--rules", str(rules), "--sid", str(sid), "--database-url", db_url,
    )  # fmt: skip
    assert status == 0, err
    entries = len(dataset.read_text().splitlines())
    assert f"wrote {entries} {kind} fingerprints" in err
    return rules


def _label(db_url: str, kind: str, value: str, action: str) -> None:
    extra = ["--tarpit-seconds", "3"] if action == "tarpit" else []
    status, _, err = run_cli(
        "labels", "add", value, "--kind", kind, "--action", action, *extra,
        "--database-url", db_url,
    )  # fmt: skip
    assert status == 0, err


JA3_CAPTURES = (
    "openssl-tls12", "openssl-tls13", "gnutls-cli-sni", "curl-cffi-chrome-mtu576", "ipv6",
    "python-ssl-port4433", "curl-https",
)  # fmt: skip
DENY_JA3 = {
    "871a754af286dfb70c1b53c6887c62e0",  # openssl s_client -tls1_2
    "f35ce21b44ac0b87d3266294bb1b0e20",  # gnutls-cli
    "b8c8973ccb72b3e059edae317a14f162",  # curl_cffi Chrome, hello over several segments
    "0149f47eabf9a20d0893e2a44e5a6323",  # curl (one of two connections in two captures)
    "93c7d42c0df602fb91589311534831f5",  # Python ssl on port 4433
    ABSENT_MD5,
}
TARPIT_JA3 = {"a3afc2c46ba4a7d7fbe1cfb7a3031c2f", "304734bb1c086c3453b387400cf83f11"}
DENY_JA3S = {
    "ec74a5c51106f0419184d0dd08fb05bc",
    "f4febc55ea12b31ae17cfb7e614afda8",
    "e54965894d6b45ecb4323c7ea3d6c115",
    ABSENT_MD5,
}
TARPIT_JA3S = {"15af977ce25de452b96affa2addb1036"}


def test_suricata_alerts_on_exactly_the_exported_ja3_and_ja3s_deny_labels(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'labels.sqlite3'}"
    for kind, values, action in (
        ("ja3", DENY_JA3, "deny"), ("ja3", TARPIT_JA3, "tarpit"),
        ("ja3s", DENY_JA3S, "deny"), ("ja3s", TARPIT_JA3S, "tarpit"),
    ):  # fmt: skip
        for value in values:
            _label(db_url, kind, value, action)
    rules = tmp_path / "all.rules"
    rules.write_text(
        _export(db_url, tmp_path, "ja3", 1).read_text()
        + _export(db_url, tmp_path, "ja3s", 2).read_text()
    )
    fired_somewhere = set()
    for name in JA3_CAPTURES:
        oracle = json.loads((PCAPS / f"{name}.expected.json").read_text())
        expected = set()
        for h in oracle["hellos"]:
            if h["hello"] == "client" and h["ja3_hash"] in DENY_JA3:
                expected.add((_conn(h["src"], h["sport"]), 1))
                fired_somewhere.add(h["ja3_hash"])
            elif h["hello"] == "server" and h["ja3s_hash"] in DENY_JA3S:
                expected.add((_conn(h["dst"], h["dport"]), 2))
                fired_somewhere.add(h["ja3s_hash"])
        assert _run_suricata(PCAPS / f"{name}.pcap", rules, tmp_path) == expected, name
    # Every deny label but the absent ones had a connection to fire on.
    assert fired_somewhere == (DENY_JA3 | DENY_JA3S) - {ABSENT_MD5}


JA4_CAPTURES = ("tls12.pcap", "badcurveball.pcap", "browsers-x509.pcapng", "tls3.pcapng",
                "ipv6.pcapng", "latest.pcapng")  # fmt: skip


def _foxio_ja4(capture: str) -> dict[Conn, str]:
    entries = json.loads((FOXIO / "expected-ja4" / f"{capture}.json").read_text())
    return {
        _conn(e["src"], e["srcport"]): v
        for e in entries
        for k, v in e.items()
        if k.startswith("JA4.") and v.startswith("t")  # TLS over TCP: the rule says `tls`
    }


def test_suricata_alerts_on_exactly_the_exported_ja4_deny_labels(tmp_path):
    if not FOXIO.is_dir():
        pytest.skip(f"conformance data not found at {FOXIO} (CI places ../shared beside it)")
    oracle = {name: _foxio_ja4(name) for name in JA4_CAPTURES}
    values = sorted({v for conns in oracle.values() for v in conns.values()})
    assert len(values) >= 6 and ABSENT_JA4 not in values
    deny = set(values[::2]) | {ABSENT_JA4}
    db_url = f"sqlite:///{tmp_path / 'labels.sqlite3'}"
    for value in deny:
        _label(db_url, "ja4", value, "deny")
    for value in set(values[1::2]):
        _label(db_url, "ja4", value, "tarpit")
    rules = _export(db_url, tmp_path, "ja4", 3)
    assert len((tmp_path / "deny-ja4.lst").read_text().splitlines()) == len(deny)
    for name, conns in oracle.items():
        expected = {(conn, 3) for conn, value in conns.items() if value in deny}
        assert _run_suricata(FOXIO / "pcap" / name, rules, tmp_path) == expected, name


@pytest.mark.parametrize("kind", ["ja3n", "ja3_dovecot"])
def test_kinds_suricata_does_not_compute_are_refused(tmp_path, kind):
    db_url = f"sqlite:///{tmp_path / 'labels.sqlite3'}"
    _label(db_url, kind, "871a754af286dfb70c1b53c6887c62e0", "deny")
    out = tmp_path / "x.lst"
    status, _, err = run_cli(
        "labels", "export", "suricata", str(out), "--kind", kind, "--database-url", db_url
    )
    assert status == 1 and f"Suricata computes no {kind} fingerprint" in err
    assert not out.exists()

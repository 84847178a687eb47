"""Make the DTLS test captures and their tshark expectations.

    python tests/pcaps/dtls/regenerate.py capture       # needs root, tcpdump and openssl
    python tests/pcaps/dtls/regenerate.py one-way       # only the one-way captures
    python tests/pcaps/dtls/regenerate.py expectations  # needs tshark

``capture`` runs ``openssl s_client`` against ``openssl s_server -listen`` on 127.0.0.1 for each
scenario, recording the loopback interface with tcpdump. ``-listen`` makes the server answer the
first ClientHello with a HelloVerifyRequest, so every capture holds two ClientHellos (without and
with cookie). ``expectations`` asks tshark, an oracle independent of ja3svc, for the JA3 of every
ClientHello and the JA3S of every ServerHello, into ``expected.json``.

``one-way`` records the same exchange with a tcpdump filter that keeps only the server's
datagrams (``udp src port``), as a tap on one direction of an asymmetric route does: the
association must be recognised from the server's side alone (HelloVerifyRequest, ServerHello).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 24444

# name -> extra s_client options (the server gets the protocol option too)
SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "hvr-dtls12": ("-dtls1_2", []),
    # A 256-byte MTU (OpenSSL's smallest that works) and ~600 bytes of ALPN names force the
    # ClientHello into four handshake fragments, one per datagram.
    "fragmented-dtls12": (
        "-dtls1_2",
        ["-mtu", "256", "-alpn", ",".join(f"proto-{i:02d}-padding" for i in range(30))],
    ),
    "hvr-dtls10": ("-dtls1", ["-cipher", "DEFAULT:@SECLEVEL=0"]),
}

# name -> (protocol, s_client options, tcpdump filter): one direction only.
ONE_WAY: dict[str, tuple[str, list[str], list[str]]] = {
    "server-only-dtls12": ("-dtls1_2", [], ["udp", "src", "port", str(PORT)]),
}


def one_way() -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import record_until_captured

    with tempfile.TemporaryDirectory() as tmp:
        key, cert = _key_and_cert(Path(tmp))
        for name, (protocol, client_options, bpf) in ONE_WAY.items():
            out = HERE / f"{name}.pcap"
            record_until_captured(
                out, partial(_record, out, protocol, client_options, key, cert, bpf)
            )
            print(f"wrote {out.name}")


def _key_and_cert(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-days", "3"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def capture() -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import record_until_captured

    with tempfile.TemporaryDirectory() as tmp:
        key, cert = _key_and_cert(Path(tmp))
        for name, (protocol, client_options) in SCENARIOS.items():
            out = HERE / f"{name}.pcap"
            record_until_captured(out, partial(_record, out, protocol, client_options, key, cert))
            print(f"wrote {out.name}")
    _write_reordered(HERE / "fragmented-dtls12.pcap", HERE / "fragmented-reordered-dtls12.pcap")


def _write_reordered(src: Path, dst: Path) -> None:
    """Copy a classic pcap, swapping the 2nd and 3rd client-to-server packets (not their times),
    so that the ClientHello's third fragment arrives before its second."""
    data = src.read_bytes()
    header, records, pos = data[:24], [], 24
    e = "little" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    while pos + 16 <= len(data):
        caplen = int.from_bytes(data[pos + 8 : pos + 12], e)
        records.append(bytearray(data[pos : pos + 16 + caplen]))
        pos += 16 + caplen
    # Ethernet + IPv4 without options on loopback: UDP destination port at bytes 36-37.
    client = [i for i, r in enumerate(records) if int.from_bytes(r[16 + 36 : 16 + 38]) == PORT]
    a, b = client[1], client[2]
    times_a, times_b = bytes(records[a][:8]), bytes(records[b][:8])
    records[a], records[b] = records[b], records[a]
    records[a][:8], records[b][:8] = times_a, times_b  # keep timestamps increasing
    dst.write_bytes(header + b"".join(records))
    print(f"wrote {dst.name} (swapped packets {a + 1} and {b + 1})")


def _record(
    out: Path,
    protocol: str,
    client_options: list[str],
    key: Path,
    cert: Path,
    bpf: list[str] | None = None,
) -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import tcpdump_lo

    with tcpdump_lo(out, bpf or ["udp", "port", str(PORT)]):
        server = subprocess.Popen(
            ["openssl", "s_server", protocol, "-listen", "-accept", str(PORT),
             "-key", str(key), "-cert", str(cert), "-naccept", "1", "-quiet",
             "-cipher", "DEFAULT:@SECLEVEL=0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)
            client = subprocess.run(
                ["openssl", "s_client", protocol, "-connect", f"127.0.0.1:{PORT}",
                 "-servername", "dtls.test", *client_options],
                input=b"hello\n", capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            if b"Cipher is" not in client.stdout:
                print(client.stdout.decode()[-500:], client.stderr.decode()[-500:])
        finally:
            server.kill()
            server.wait()


def expectations() -> None:
    # tshark is the oracle; the shared helper runs it the same way for QUIC and DTLS.
    sys.path.insert(0, str(HERE.parent))
    from tshark_hellos import write_expected

    out = write_expected(HERE, "dtls", [f"udp.port=={PORT},dtls"])
    print(f"wrote {out.name}")


if __name__ == "__main__":
    for step in sys.argv[1:] or ["capture", "expectations"]:
        {"capture": capture, "one-way": one_way, "expectations": expectations}[step]()

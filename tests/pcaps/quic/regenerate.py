"""Make the QUIC test captures and their tshark expectations.

    python tests/pcaps/quic/regenerate.py capture       # needs root, tcpdump and aioquic
    python tests/pcaps/quic/regenerate.py expectations  # needs tshark (decrypts Initials itself)

``capture`` runs an aioquic client against an aioquic server on 127.0.0.1 for each scenario below,
recording the loopback interface with tcpdump, then writes ``split-reordered.pcap``: a copy of
``split.pcap`` with the first two client datagrams swapped, so that the ClientHello's second
half arrives before its first. ``expectations`` asks tshark, an oracle independent of ja3svc,
for the JA3 of every ClientHello and JA3S of every ServerHello, into ``expected.json``.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 24433  # an unusual port, so the capture filter sees nothing but the test connection

# name -> (QUIC versions, ALPN list, server sends Retry)
SCENARIOS: dict[str, tuple[list[int], list[str], bool]] = {
    "basic": ([1], ["h3"], False),
    # ~2.5 KB of ALPN names: the ClientHello needs three Initial packets.
    "split": ([1], ["h3", *[f"fake-protocol-{i:03d}-" + "x" * 8 for i in range(90)]], False),
    "retry": ([1], ["h3"], True),
    "v2": ([0x6B3343CF], ["h3"], False),
}


def _certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _one_connection(
    versions: list[int], alpn: list[str], retry: bool, cert: Path, key: Path
) -> None:
    import ssl

    from aioquic.asyncio import connect, serve
    from aioquic.quic.configuration import QuicConfiguration

    server_config = QuicConfiguration(
        is_client=False, alpn_protocols=["h3"], supported_versions=versions
    )
    server_config.load_cert_chain(cert, key)
    server = await serve("127.0.0.1", PORT, configuration=server_config, retry=retry)
    client_config = QuicConfiguration(
        is_client=True,
        alpn_protocols=alpn,
        server_name="quic.test",
        supported_versions=versions,
        verify_mode=ssl.CERT_NONE,
    )
    try:
        async with connect("127.0.0.1", PORT, configuration=client_config) as client:
            await client.ping()
    finally:
        server.close()


def capture() -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import record_until_captured

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = _certificate(Path(tmp))
        for name, (versions, alpn, retry) in SCENARIOS.items():
            out = HERE / f"{name}.pcap"
            record_until_captured(out, partial(_record, out, versions, alpn, retry, cert, key))
            print(f"wrote {out.name}")
    _write_reordered(HERE / "split.pcap", HERE / "split-reordered.pcap")


def _record(
    out: Path, versions: list[int], alpn: list[str], retry: bool, cert: Path, key: Path
) -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import tcpdump_lo

    with tcpdump_lo(out, ["udp", "port", str(PORT)]):
        asyncio.run(_one_connection(versions, alpn, retry, cert, key))


def _write_reordered(src: Path, dst: Path) -> None:
    """Copy a classic pcap, swapping the first two client-to-server packets (and their times)."""
    data = src.read_bytes()
    header, records, pos = data[:24], [], 24
    e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    while pos + 16 <= len(data):
        caplen = struct.unpack(e + "I", data[pos + 8 : pos + 12])[0]
        records.append(bytearray(data[pos : pos + 16 + caplen]))
        pos += 16 + caplen
    # Ethernet + IPv4 without options on loopback: UDP destination port at bytes 36-37.
    client = [i for i, r in enumerate(records) if int.from_bytes(r[16 + 36 : 16 + 38]) == PORT]
    a, b = client[0], client[1]
    times_a, times_b = bytes(records[a][:8]), bytes(records[b][:8])
    records[a], records[b] = records[b], records[a]
    records[a][:8], records[b][:8] = times_a, times_b  # keep timestamps increasing
    dst.write_bytes(header + b"".join(records))
    print(f"wrote {dst.name} (swapped packets {a + 1} and {b + 1})")


def expectations() -> None:
    # tshark is the oracle; the shared helper runs it the same way for QUIC and DTLS.
    sys.path.insert(0, str(HERE.parent))
    from tshark_hellos import write_expected

    out = write_expected(HERE, "tls")
    print(f"wrote {out.name}")


if __name__ == "__main__":
    steps = sys.argv[1:] or ["capture", "expectations"]
    for step in steps:
        {"capture": capture, "expectations": expectations}[step]()

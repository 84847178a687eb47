#!/usr/bin/env python3
"""A server whose first record is a warning alert (unrecognized_name) before its ServerHello,
and what tshark reports for it (expected.json).

Run as root (network namespaces):

    python tests/pcaps/server-alert/regenerate.py

openssl s_server with ``-servername`` and ``-cert2`` answers a client whose SNI is another name
with a warning alert unrecognized_name, then the ServerHello (TLS 1.2: TLS 1.3 has no warning
alerts). A second connection (TLS 1.0, refused) gets the warning alert and then a fatal alert:
no ServerHello there. Recorded with tcpdump on the client's veth between two fresh network
namespaces (testbed/netns.py). Expected values come from tshark only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent / "tunnels"))

from regenerate import tshark_hellos, tshark_version  # noqa: E402  (tunnels/regenerate.py)

from testbed.netns import spawn, tcpdump, veth_pair, wait_for_listen  # noqa: E402

CAPTURE = "unrecognized-name-alert.pcap"
KNOWN = "known.ja3svc.test"  # the only name the server is configured for
ASKED = "other.ja3svc.test"  # what the clients ask for


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def record(out: Path) -> list[str]:
    labels = []
    with tempfile.TemporaryDirectory() as tmp, veth_pair() as net:
        cert, key = make_cert(Path(tmp), "default")
        cert2, key2 = make_cert(Path(tmp), KNOWN)
        server = ["openssl", "s_server", "-accept", "443", "-www", "-quiet",
                  "-cert", str(cert), "-key", str(key), "-servername", KNOWN,
                  "-cert2", str(cert2), "-key2", str(key2)]  # fmt: skip
        with spawn(net.server, server):
            wait_for_listen(net.server, 443)
            with tcpdump(net.client, out):
                for version in ("-tls1_2", "-tls1"):
                    argv = ["openssl", "s_client", "-connect", f"{net.server.ipv4}:443",
                            "-servername", ASKED, version]  # fmt: skip
                    if version == "-tls1":
                        # The server keeps its default security level and refuses TLS 1.0: the
                        # warning alert is then followed by a fatal one and no ServerHello.
                        argv += ["-cipher", "DEFAULT:@SECLEVEL=0"]
                    net.client.run(argv, timeout=20, check=False)
                    labels.append(f"openssl s_client {version} -servername {ASKED}")
                    time.sleep(0.1)
    return labels


def main() -> None:
    out = HERE / CAPTURE
    labels = record(out)
    hellos = tshark_hellos(out)
    alerts = subprocess.run(
        ["tshark", "-r", str(out), "-Y", "tls.alert_message.desc == 112", "-T", "fields",
         "-e", "frame.number"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    doc = {
        "capture": CAPTURE,
        "oracle": f"tshark {tshark_version()}",
        "covers": "warning alert unrecognized_name (112) before the ServerHello",
        "connections": labels,
        "alert_frames": [int(a) for a in alerts],
        "hellos": hellos,
    }
    (HERE / "unrecognized-name-alert.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{CAPTURE}: {len(hellos)} hellos, alerts in frames {alerts}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerate the Dovecot 2.4.1 golden captures: Debian 13's clients against Debian 13's Dovecot.

Run as root from the repository (needs the trixie root of .ci/trixie-root, network namespaces,
tcpdump, javac and curl_cffi in this interpreter)::

    python tests/pcaps/dovecot24/regenerate.py [--logins N] [--stability M]

For every client family it records N logins (default 2) over IMAPS, IMAP STARTTLS, POP3S or POP3
STLS on the server's veth (client-to-server packets) into ``<client>-<proto>-<mode>.pcap`` and
writes, beside it,
``.dovecot-log.json``: for each connection Dovecot's own log line, i.e. the client port, the
``%{ssl_ja3}`` string and ``%{ssl_ja3_hash}`` Dovecot 2.4.1 on OpenSSL 3.5.9 logged. Those are
the oracle of tests/unit/test_golden_dovecot24.py; nothing here runs ja3svc.

``--stability M`` also logs every client in M more times (not recorded) and writes
``stability.json``: how many distinct Dovecot hashes M logins gave, per client (the README's
table of which client families give a stable hash).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from testbed.netns import spawn, tcpdump, veth_pair, wait_for_listen  # noqa: E402
from tests.support import trixie  # noqa: E402

# (client, proto, mode): one capture each.
CAPTURES = [
    ("curl", "imap", "tls"), ("curl", "imap", "starttls"), ("curl", "pop3", "tls"),
    ("python", "imap", "tls"), ("python", "pop3", "starttls"),
    ("gnutls", "imap", "tls"), ("gnutls", "imap", "starttls"),
    ("nss", "imap", "tls"), ("nss-permute", "imap", "tls"),
    ("java", "imap", "tls"), ("chrome", "imap", "tls"),
]  # fmt: skip
USERS = [f"g{i:03d}" for i in range(400)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logins", type=int, default=2, help="recorded logins per capture")
    ap.add_argument("--stability", type=int, default=0, help="extra logins per client family")
    args = ap.parse_args()
    root = trixie.trixie_root()
    users = iter(USERS)
    with (
        veth_pair(mtu=1500, ipv6=None) as net,
        trixie.root_workdir(root, "ja3svc-golden24-") as wd,
    ):
        trixie.prepare_files(wd, USERS)
        # No policy service here: only the base configuration (the login log is the point).
        (wd.host / "dovecot.conf").write_text(
            trixie.dovecot24_conf(wd.inner, net.server.ipv4, net.client.ipv4, "")
        )
        dovecot = trixie.in_root(root, ["dovecot", "-F", "-c", f"{wd.inner}/dovecot.conf"])
        with spawn(net.server, dovecot):
            for port in trixie.PORTS.values():
                wait_for_listen(net.server, port, timeout=30)
            log = wd.host / "dovecot.log"

            def login(client: str, proto: str, mode: str) -> str:
                user = next(users)
                port = trixie.PORTS[(proto, mode)]
                argv = trixie.client_argv(
                    wd, sys.executable, client, proto, mode, net.server.ipv4, port, user
                )
                res = net.client.run(argv, timeout=120, check=False)
                out = trixie.parse_client_output(client, res)
                if not out["ok"]:
                    raise SystemExit(f"{client} {proto} {mode}: {out}")
                return user

            for client, proto, mode in CAPTURES:
                name = f"{client}-{proto}-{mode}"
                pcap = HERE / f"{name}.pcap"
                port = trixie.PORTS[(proto, mode)]
                # The client's side only: the hellos are there (a second one after a
                # HelloRetryRequest too), and the captures stay small.
                with tcpdump(net.server, pcap, bpf=f"tcp dst port {port}"):
                    logged = [login(client, proto, mode) for _ in range(args.logins)]
                rows = []
                for user in logged:
                    line = trixie.wait_login_lines(log, user, 1)[0]
                    rows.append(
                        {
                            "sport": line["rport"],
                            "ja3_dovecot": line["ja3"],
                            "ja3_dovecot_hash": line["ja3_hash"],
                        }
                    )
                expected = {
                    "client": trixie.CLIENT_FAMILIES[client],
                    "server": "Dovecot 2.4.1 (Debian 13, OpenSSL 3.5.9)",
                    "protocol": f"{proto} {'implicit TLS' if mode == 'tls' else 'STARTTLS'}",
                    "oracle": "Dovecot's login log: %{ssl_ja3}, %{ssl_ja3_hash}",
                    "connections": rows,
                }
                (HERE / f"{name}.dovecot-log.json").write_text(
                    json.dumps(expected, indent=1) + "\n"
                )
                print(f"{name}: {len(rows)} connections, {pcap.stat().st_size} bytes")

            if args.stability:
                table = {}
                for client in trixie.CLIENT_FAMILIES:
                    users_of = [login(client, "imap", "tls") for _ in range(args.stability)]
                    hashes = [trixie.wait_login_lines(log, u, 1)[0]["ja3_hash"] for u in users_of]
                    table[client] = {
                        "client": trixie.CLIENT_FAMILIES[client],
                        "logins": len(hashes),
                        "distinct_dovecot_hashes": len(set(hashes)),
                    }
                    print(f"{client}: {len(set(hashes))} distinct of {len(hashes)}")
                (HERE / "stability.json").write_text(json.dumps(table, indent=1) + "\n")
    subprocess.run(["sync"], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

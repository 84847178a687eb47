#!/usr/bin/env python3
"""Record the golden captures in tests/pcaps and their tshark-derived expectations.

Run as root from the repository root (or anywhere):

    python tests/pcaps/regenerate.py                 # everything (a few minutes)
    python tests/pcaps/regenerate.py --only openssl-hrr --only dovecot-starttls-imap
    python tests/pcaps/regenerate.py --expect-only   # re-run tshark on the existing files

Every capture is made by real TLS client stacks talking to real local servers across a veth
pair between two fresh network namespaces (testbed/netns.py); nothing leaves the machine.
The expected values in `<capture>.expected.json` come from tshark only (an oracle independent of
ja3svc), never from our own engine. README.md here is rewritten from those files at the end.

Needs: tcpdump, dumpcap/editcap/mergecap/capinfos/tshark (Wireshark 4.0), openssl, curl,
gnutls-bin, ethtool, nftables, dovecot-imapd, dovecot-pop3d, dovecot-submissiond, and the
curl_cffi package for the interpreter running this script. Java, Node and nftables captures
are skipped (with a message) when `java`/`node`/`nft` are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from testbed.netns import (  # noqa: E402  (path set up just above)
    DEFAULT_IPV4,
    DEFAULT_IPV6,
    ROUTED_IPV4,
    Endpoint,
    NetnsError,
    VethPair,
    dumpcap,
    routed_path,
    spawn,
    tcpdump,
    veth_pair,
    wait_for_listen,
)

SERVER_NAME = "server.ja3svc.test"
SERVER_NAME6 = "server6.ja3svc.test"
HOSTS = {SERVER_NAME: DEFAULT_IPV4[1], SERVER_NAME6: DEFAULT_IPV6[1]}
CLIENT_TIMEOUT = 20.0  # seconds per client invocation; handshakes take milliseconds
TOTAL_TIMEOUT = 900  # seconds for the whole script (SIGALRM), far above a normal run
PY = sys.executable

# Pinned curl_cffi targets (rather than the moving "chrome"/"firefox" aliases) so a regenerated
# capture shows the same stack as the README says. edge101 is curl_cffi's only Edge target and
# predates post-quantum key shares, so its hello stays small.
CURL_CFFI_TARGETS = {
    "chrome": "chrome152",
    "firefox": "firefox155",
    "safari": "safari270",
    "edge": "edge101",
}

# What each impersonated hello shows (checked on the recorded captures with tshark).
BROWSER_TRAITS = {
    "chrome": "Chrome: GREASE, extension order permuted per connection, X25519MLKEM768 share",
    "firefox": "Firefox: no GREASE, fixed extension order, X25519MLKEM768 share, ffdhe groups",
    "safari": "Safari: GREASE, X25519MLKEM768 share, legacy CBC/3DES suites",
    "edge": "Edge 101 (2022 Chromium): GREASE, fixed order, ALPS 17513, small hello",
}

# ---------------------------------------------------------------------------------------------
# Client programs run inside the client namespace (argv after the code: see each docstring).

PY_INSECURE = """
import ssl
def insecure() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
"""

# argv: url
PY_URLLIB = (
    PY_INSECURE
    + """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], context=insecure(), timeout=10) as resp:
    resp.read()
"""
)

# argv: host port -- SSLContext.wrap_socket with ALPN; urllib given its own context sends none
PY_SOCKET = (
    PY_INSECURE
    + """
import socket, sys
ctx = insecure()
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sys.argv[1]) as tls:
        tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        tls.recv(4096)
"""
)

# argv: host
PY_IMAP = (
    PY_INSECURE
    + """
import imaplib, sys
imap = imaplib.IMAP4(sys.argv[1], 143, timeout=10)
imap.starttls(ssl_context=insecure())
imap.logout()
"""
)

# argv: host
PY_POP3 = (
    PY_INSECURE
    + """
import poplib, sys
pop = poplib.POP3(sys.argv[1], 110, timeout=10)
pop.stls(context=insecure())
pop.quit()
"""
)

# argv: host
PY_SMTP = (
    PY_INSECURE
    + """
import smtplib, sys
smtp = smtplib.SMTP(sys.argv[1], 587, timeout=10)
smtp.ehlo()
smtp.starttls(context=insecure())
smtp.ehlo()
smtp.quit()
"""
)

# argv: host port mode -- CPython/OpenSSL's own ClientHello, driven through MemoryBIO so the
# script controls how the first flight is framed and segmented (the TLS bytes stay the stack's):
#   header-alone:  the 5-byte record header in one TCP segment, the body in the next;
#   split-records: the ClientHello message split across two TLS records, one per segment.
# The rest of the handshake is passed through untouched (the transcript hash covers handshake
# messages, not records, so re-framing keeps it valid).
PY_REFRAME = (
    PY_INSECURE
    + """
import socket, ssl, struct, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
context = insecure()
if mode == "midsession-null":
    # TLS 1.2 with a NULL cipher: the application data records carry their plaintext as is.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("NULL-SHA256:@SECLEVEL=0")
tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
sock = socket.create_connection((host, port), timeout=10)
# Nagle off plus a pause between sends: each send leaves as its own segment.
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def send_pieces(pieces):
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(0.05)

def first_flight(data):
    assert data[0] == 22, "expected a handshake record"
    length = struct.unpack(">H", data[3:5])[0]
    record, rest = data[: 5 + length], data[5 + length :]
    if mode == "header-alone":
        send_pieces([record[:5], record[5:] + rest])
    elif mode == "tiny-first":
        send_pieces([record[:1], record[1:2], record[2:5], record[5:] + rest])
    elif mode == "midsession-null":
        send_pieces([data])
    elif mode == "split-records":
        body = record[5:]
        cut = len(body) // 2
        frame = lambda b: record[:3] + struct.pack(">H", len(b)) + b
        send_pieces([frame(body[:cut]), frame(body[cut:]) + rest])
    else:
        raise SystemExit(f"unknown mode {mode}")

first = True
hello_record = b""
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        tls.do_handshake()
        done = True
    except ssl.SSLWantReadError:
        done = False
    data = outgoing.read()
    if data:
        if first:
            first_flight(data)
            hello_record = data
            first = False
        else:
            sock.sendall(data)
    if done:
        break
    chunk = sock.recv(65536)
    if not chunk:
        raise SystemExit("server closed during the handshake")
    incoming.write(chunk)
else:
    raise SystemExit("handshake timed out")
if mode == "midsession-null":
    # One application data record whose (unencrypted) payload is a newline and then this
    # connection's own ClientHello record; its first byte leaves in a segment of its own (the
    # capture is cut to start there, as if it had joined the session then).
    tls.write(b"x\\n" + hello_record)
    record = outgoing.read()
    assert record[0] == 23, "expected an application data record"
    send_pieces([record[:1], record[1:]])
    time.sleep(0.2)
sock.close()
"""
)

# The start of the two IMAP clients below: hello_record() is one of this client's ClientHello
# records (from OpenSSL via MemoryBIO, with ALPN, unlike the real hello after STARTTLS: the two
# differ in JA3); line() reads one line of the server's.
PY_IMAP_HELLO_RECORD = (
    PY_INSECURE
    + """
import socket, ssl, sys, time
host = sys.argv[1]

def hello_record():
    ctx = insecure()
    ctx.set_alpn_protocols(["imap"])
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=host)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()

def line(sock):
    buf = b""
    while not buf.endswith(b"\\r\\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise SystemExit("server closed")
        buf += chunk
    return buf
"""
)

# argv: host -- IMAP before STARTTLS with a command argument that starts a TCP segment with a
# whole TLS ClientHello record (one of this client's, from OpenSSL via MemoryBIO; its newline bytes,
# e.g. in extension type 10, make Dovecot answer a few junk lines with BAD), then a real
# STARTTLS handshake.
PY_IMAP_PLAINTEXT_RECORD = (
    PY_IMAP_HELLO_RECORD
    + """
sock = socket.create_connection((host, 143), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
line(sock)  # greeting
sock.sendall(b"a001 NOOP ")
time.sleep(0.05)
sock.sendall(hello_record() + b"\\r\\n")
time.sleep(0.3)
sock.sendall(b"a002 STARTTLS\\r\\n")
while not line(sock).startswith(b"a002 OK"):
    pass
with insecure().wrap_socket(sock, server_hostname=host) as tls:
    tls.sendall(b"a003 LOGOUT\\r\\n")
    tls.recv(4096)
"""
)

# argv: host -- IMAP before STARTTLS with command arguments sent as literals (RFC 9051 4.3,
# RFC 7888) whose bytes are a whole TLS ClientHello record (one of this client's, from OpenSSL
# via MemoryBIO, with ALPN so its JA3 differs from the real hello's): a synchronising literal
# sent after Dovecot's "+" continuation, so it starts a segment of its own; LITERAL+ literals in
# the announcing segment, and with segments split inside "{N+}", between "}" and CRLF and
# inside the literal. Then STARTTLS and a real handshake, the only hello tshark reports.
PY_IMAP_LITERAL = (
    PY_IMAP_HELLO_RECORD
    + """
def tagged(sock, tag):
    while True:
        ln = line(sock)
        if ln.startswith(tag + b" "):
            return ln

def pieces(sock, *parts):
    for part in parts:
        sock.sendall(part)
        time.sleep(0.05)

sock = socket.create_connection((host, 143), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
greeting = line(sock)
if b"LITERAL+" not in greeting:
    raise SystemExit(f"no LITERAL+ in {greeting!r}")
rec = hello_record()
n = str(len(rec)).encode()
# Synchronising: the literal waits for the continuation request.
pieces(sock, b'a001 ID ("x" {' + n + b"}\\r\\n")
cont = line(sock)
if not cont.startswith(b"+"):
    raise SystemExit(f"no continuation: {cont!r}")
pieces(sock, rec, b")\\r\\n")
print("a001", tagged(sock, b"a001"), file=sys.stderr)
# LITERAL+: announcement and literal in one segment.
pieces(sock, b'a002 ID ("x" {' + n + b"+}\\r\\n" + rec + b")\\r\\n")
print("a002", tagged(sock, b"a002"), file=sys.stderr)
# LITERAL+ in pieces: inside "{N+}", between "}" and CRLF, inside the literal.
pieces(sock, b'a003 ID ("x" {' + n[:1], n[1:] + b"+}", b"\\r\\n", rec[:3], rec[3:] + b")\\r\\n")
print("a003", tagged(sock, b"a003"), file=sys.stderr)
pieces(sock, b"a004 STARTTLS\\r\\n")
print("a004", tagged(sock, b"a004"), file=sys.stderr)
with insecure().wrap_socket(sock, server_hostname=host) as tls:
    tls.sendall(b"a005 LOGOUT\\r\\n")
    tls.recv(4096)
"""
)

# argv: url target
PY_CURL_CFFI = """
import sys
from curl_cffi import requests
requests.get(sys.argv[1], impersonate=sys.argv[2], verify=False, timeout=10)
"""

NODE_HTTPS = """
const https = require('https');
const req = https.get({host: process.argv[1], port: 443, path: '/', rejectUnauthorized: false,
                       timeout: 10000}, (res) => { res.resume(); res.on('end', () => {}); });
req.on('error', (e) => { console.error(e.message); process.exit(1); });
"""

# argv: host port -- plain JSSE SSLSocket (SNI from the host name; no ALPN). Java's HttpClient
# would wait for EOF from s_server -www, which never closes first.
JAVA_TLS = """
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class Client {
    public static void main(String[] args) throws Exception {
        TrustManager[] all = { new X509TrustManager() {
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
        } };
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, all, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory()
                .createSocket(args[0], Integer.parseInt(args[1]))) {
            s.setSoTimeout(10000);
            s.startHandshake();
        }
    }
}
"""


# ---------------------------------------------------------------------------------------------
# Scenario plumbing


@dataclass
class Conn:
    """One client connection a scenario made, with the hellos it should put on the wire."""

    label: str
    client_hellos: int = 1
    server_hellos: int = 1


@dataclass
class Ctx:
    """Shared state for one run: temp dir with the server certificate, and a log."""

    tmp: Path
    cert: Path
    key: Path
    log: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        print(msg, flush=True)
        self.log.append(msg)


Scenario = Callable[[Path, Ctx], list[Conn]]


@dataclass(frozen=True)
class Capture:
    """One golden capture file and what it is for (the README table is built from this)."""

    name: str  # file name in tests/pcaps
    client: str  # client stack(s)
    covers: str  # the edge case it pins down
    make: Scenario
    decode_as: tuple[int, ...] = ()  # non-standard TLS ports tshark must be told about
    depends: tuple[str, ...] = ()  # derived captures: made from these files
    needs: tuple[str, ...] = ()  # optional executables; the capture is skipped without them

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def client_run(ep: Endpoint, ctx: Ctx, label: str, argv: list[str], **kw: object) -> Conn:
    """Run one client to completion; a non-zero exit is logged, not fatal.

    Clients may legitimately fail *after* their hello (e.g. an HTTP/2-only expectation against
    s_server -www); what counts is the hello on the wire, which tshark then confirms.
    """
    res = ep.run(argv, timeout=CLIENT_TIMEOUT, check=False, **kw)  # type: ignore[arg-type]
    if res.returncode != 0:
        ctx.say(f"    ! {label}: exit {res.returncode}: {res.stderr.strip()[-300:]}")
    time.sleep(0.1)  # keep connections apart in time (readable captures, ordered frames)
    return Conn(label)


@contextlib.contextmanager
def s_server(
    ep: Endpoint, ctx: Ctx, *extra: str, port: int = 443, bind: str | None = None
) -> Iterator[None]:
    """openssl s_server answering HTTP (-www) on `port`, until the block ends."""
    argv = [
        "openssl",
        "s_server",
        "-accept",
        f"{bind}:{port}" if bind else str(port),
        "-cert",
        str(ctx.cert),
        "-key",
        str(ctx.key),
        "-www",
        "-quiet",
        *extra,
    ]
    with spawn(ep, argv):
        wait_for_listen(ep, port)
        yield


def s_client(host: str, port: int, *extra: str) -> list[str]:
    # Stdin is /dev/null: s_client completes the handshake, sees EOF and closes cleanly.
    return ["openssl", "s_client", "-connect", f"{host}:{port}", *extra]


@contextlib.contextmanager
def https_net(ctx: Ctx, *server_args: str, mtu: int = 1500, port: int = 443) -> Iterator[VethPair]:
    """A veth pair with s_server on the server side, for the simple HTTPS scenarios."""
    with veth_pair(mtu=mtu, ipv6=DEFAULT_IPV6 if mtu >= 1280 else None, hosts=HOSTS) as net:
        with s_server(net.server, ctx, *server_args, port=port):
            yield net


def openssl_scenario(
    *client_args: str, server_args: tuple[str, ...] = (), host: str = SERVER_NAME, hrr: bool = False
) -> Scenario:
    def run(out: Path, ctx: Ctx) -> list[Conn]:
        with https_net(ctx, *server_args) as net, tcpdump(net.client, out):
            conn = client_run(
                net.client,
                ctx,
                "openssl s_client " + " ".join(client_args),
                s_client(host, 443, *client_args),
            )
        if hrr:
            # ClientHello, HelloRetryRequest (a ServerHello), ClientHello again, ServerHello.
            conn.client_hellos = conn.server_hellos = 2
        return [conn]

    return run


def make_curl(out: Path, ctx: Ctx) -> list[Conn]:
    url = f"https://{SERVER_NAME}/"
    with https_net(ctx) as net, tcpdump(net.client, out):
        return [
            client_run(net.client, ctx, "curl default", ["curl", "-sk", "-m", "10", url]),
            client_run(
                net.client,
                ctx,
                "curl --tls-max 1.2",
                ["curl", "-sk", "-m", "10", "--tls-max", "1.2", url],
            ),
        ]


def make_gnutls(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, tcpdump(net.client, out):
        return [
            client_run(
                net.client,
                ctx,
                "gnutls-cli with SNI",
                ["gnutls-cli", "--insecure", "--port", "443", SERVER_NAME],
            )
        ]


def make_python(out: Path, ctx: Ctx) -> list[Conn]:
    # Port 4433 on purpose: nothing registers it for TLS, so tshark needs -d and an engine
    # must find the hello by content.
    with https_net(ctx, port=4433) as net, tcpdump(net.client, out):
        return [
            client_run(
                net.client,
                ctx,
                "python urllib (no ALPN)",
                [PY, "-c", PY_URLLIB, f"https://{SERVER_NAME}:4433/"],
            ),
            client_run(
                net.client,
                ctx,
                "python SSLContext.wrap_socket, ALPN http/1.1",
                [PY, "-c", PY_SOCKET, SERVER_NAME, "4433"],
            ),
        ]


def make_reframed(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, tcpdump(net.client, out):
        return [
            client_run(
                net.client,
                ctx,
                f"python MemoryBIO, {mode}",
                [PY, "-c", PY_REFRAME, SERVER_NAME, "443", mode],
            )
            for mode in ("header-alone", "split-records")
        ]


def make_tiny_first_segments(out: Path, ctx: Ctx) -> list[Conn]:
    whole = ctx.tmp / "tiny-first-segments-whole.pcap"
    # TLS 1.2 offers only NULL-SHA256 (TLS 1.3 suites are set apart and stay the default).
    with https_net(ctx, "-cipher", "NULL-SHA256:@SECLEVEL=0") as net:
        with tcpdump(net.client, whole):
            conns = [
                client_run(
                    net.client,
                    ctx,
                    "python MemoryBIO, TLS 1.2 NULL-SHA256, capture cut to start at the "
                    "1-byte first segment of an application data record (joined mid-session)",
                    [PY, "-c", PY_REFRAME, SERVER_NAME, "443", "midsession-null"],
                ),
                client_run(
                    net.client,
                    ctx,
                    "python MemoryBIO, hello record header in segments of 1, 1 and 3 bytes",
                    [PY, "-c", PY_REFRAME, SERVER_NAME, "443", "tiny-first"],
                ),
            ]
    conns[0].client_hellos = conns[0].server_hellos = 0
    # The first frame the capture keeps: the client's 1-byte segment (the application data
    # record's content type) of the first connection.
    first = run_tool(
        ["tshark", "-r", str(whole), "-Y", "tcp.len == 1 && tcp.stream == 0",
         "-T", "fields", "-e", "frame.number"]
    ).split()[0]  # fmt: skip
    run_tool(["editcap", "-F", "pcap", "-r", str(whole), str(out), f"{first}-1000000"])
    return conns


def dovecot_python_client(what: str, script: str) -> Scenario:
    """One connection to Dovecot 2.3 by ``script`` (a Python client; argv: host)."""

    def run(out: Path, ctx: Ctx) -> list[Conn]:
        with veth_pair(hosts=HOSTS) as net, dovecot(net.server, ctx), tcpdump(net.client, out):
            return [client_run(net.client, ctx, what, [PY, "-c", script, SERVER_NAME])]

    return run


def drop_second_full_segment(ep: Endpoint, family: str, hook: str, match: str, mtu: int) -> None:
    """Install an nftables rule that drops, once, the 2nd MTU-sized client->server segment.

    `numgen inc` counts only packets that passed the earlier matches, so exactly one packet
    (the second full segment of the multi-segment ClientHello) is dropped; its retransmission
    is the third match and passes.
    """
    device = f' device "{ep.ifname}"' if family == "netdev" else ""
    ep.run(
        ["nft", "-f", "-"],
        input=(
            f"table {family} ja3golden {{\n"
            f"  chain c {{ type filter hook {hook}{device} priority 0; policy accept;\n"
            f"    {match} tcp dport 443 ip length {mtu} numgen inc mod 1000000 1 drop\n"
            "  }\n}\n"
        ),
        timeout=10,
    )


def make_reorder(out: Path, ctx: Ctx) -> list[Conn]:
    # No netem/prio qdiscs on this kernel, so reordering comes from a real loss: a router
    # namespace drops segment 2 of Chrome's 4-segment hello *after* the client sent it, so the
    # server-side capture sees 1, 3, 4 and then the retransmitted 2 (out of order). In the
    # second connection the server drops segment 2 at ingress, *after* tcpdump's tap: the
    # capture holds segment 2 twice (original and retransmission, an exact overlap).
    mtu = 576
    server_ip = ROUTED_IPV4[3]
    target = CURL_CFFI_TARGETS["chrome"]
    url = f"https://{SERVER_NAME}/"
    with routed_path(mtu=mtu, hosts={SERVER_NAME: server_ip}) as net:
        with s_server(net.server, ctx), tcpdump(net.server, out):
            conns = []
            drop_second_full_segment(
                net.router_client_side, "ip", "forward", f"ip daddr {server_ip}", mtu
            )
            conns.append(
                client_run(
                    net.client,
                    ctx,
                    f"curl_cffi {target}, router drops seg 2",
                    [PY, "-c", PY_CURL_CFFI, url, target],
                )
            )
            net.router_client_side.run(["nft", "flush", "ruleset"], timeout=10)
            drop_second_full_segment(net.server, "netdev", "ingress", f"ip daddr {server_ip}", mtu)
            conns.append(
                client_run(
                    net.client,
                    ctx,
                    f"curl_cffi {target}, server drops seg 2 after capture",
                    [PY, "-c", PY_CURL_CFFI, url, target],
                )
            )
            return conns


def make_node(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, tcpdump(net.client, out):
        return [
            client_run(net.client, ctx, "node https.get", ["node", "-e", NODE_HTTPS, SERVER_NAME])
        ]


def make_java(out: Path, ctx: Ctx) -> list[Conn]:
    src = ctx.tmp / "Client.java"
    src.write_text(JAVA_TLS)
    with https_net(ctx) as net, tcpdump(net.client, out):
        return [
            client_run(net.client, ctx, "java SSLSocket", ["java", str(src), SERVER_NAME, "443"])
        ]


def curl_cffi_scenario(browser: str, mtu: int) -> Scenario:
    def run(out: Path, ctx: Ctx) -> list[Conn]:
        target = CURL_CFFI_TARGETS[browser]
        with https_net(ctx, mtu=mtu) as net, tcpdump(net.client, out):
            return [
                client_run(
                    net.client,
                    ctx,
                    f"curl_cffi impersonate={target}",
                    [PY, "-c", PY_CURL_CFFI, f"https://{SERVER_NAME}/", target],
                )
            ]

    return run


def make_ipv6(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, tcpdump(net.client, out):
        assert net.server.ipv6 is not None
        return [
            client_run(
                net.client,
                ctx,
                "openssl s_client over IPv6",
                s_client(f"[{net.server.ipv6}]", 443, "-servername", SERVER_NAME6),
            ),
            client_run(
                net.client,
                ctx,
                "curl -6",
                ["curl", "-6", "-sk", "-m", "10", f"https://{SERVER_NAME6}/"],
            ),
        ]


def make_sll2(out: Path, ctx: Ctx) -> list[Conn]:
    # `tcpdump -i any` in the client namespace sees the veth *and* lo: one connection on each.
    with https_net(ctx) as net:
        with (
            s_server(net.client, ctx, bind="127.0.0.1"),
            tcpdump(net.client, out, interface="any", link_type="LINUX_SLL2"),
        ):
            return [
                client_run(
                    net.client,
                    ctx,
                    "curl over the veth",
                    ["curl", "-sk", "-m", "10", f"https://{SERVER_NAME}/"],
                ),
                client_run(
                    net.client,
                    ctx,
                    "openssl s_client over lo",
                    s_client("127.0.0.1", 443, "-servername", "localhost"),
                ),
            ]


def make_pcapng(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, dumpcap(net.client, out):
        return [
            client_run(
                net.client,
                ctx,
                "gnutls-cli with SNI",
                ["gnutls-cli", "--insecure", "--port", "443", SERVER_NAME],
            ),
            client_run(
                net.client, ctx, "openssl s_client -tls1_3", s_client(SERVER_NAME, 443, "-tls1_3")
            ),
        ]


def make_nsec(out: Path, ctx: Ctx) -> list[Conn]:
    with https_net(ctx) as net, tcpdump(net.client, out, nanosecond=True):
        return [
            client_run(
                net.client, ctx, "openssl s_client -tls1_2", s_client(SERVER_NAME, 443, "-tls1_2")
            ),
            client_run(
                net.client,
                ctx,
                "curl default",
                ["curl", "-sk", "-m", "10", f"https://{SERVER_NAME}/"],
            ),
        ]


def make_big_endian(out: Path, ctx: Ctx) -> list[Conn]:
    src = HERE / "openssl-tls12.pcap"
    pcap_to_big_endian(src, out)
    return load_conns(src)


def make_multi_linktype(out: Path, ctx: Ctx) -> list[Conn]:
    # mergecap interleaves by time and keeps one pcapng IDB per input: Ethernet + LINUX_SLL2.
    srcs = [HERE / "openssl-tls12.pcap", HERE / "sll2-any.pcap"]
    run_tool(["mergecap", "-F", "pcapng", "-w", str(out), *map(str, srcs)])
    return [c for s in srcs for c in load_conns(s)]


# ---------------------------------------------------------------------------------------------
# Dovecot (STARTTLS on IMAP 143, POP3 110, submission 587)

DOVECOT_CONF = """\
# Private Dovecot for golden captures: nothing from /etc/dovecot is read.
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap pop3 submission
listen = *
hostname = {server_name}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = <{dh}
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = static
  args = password=golden
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
mail_location = maildir:~/Maildir
submission_relay_host = 127.0.0.1
submission_relay_port = 2525
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
# The auth worker runs as the internal user and cannot open root's 0600 penalty socket in a
# private base_dir ("net_connect_unix(anvil-auth-penalty) failed"): let it.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0666
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 587
  }}
}}
"""


@contextlib.contextmanager
def dovecot(ep: Endpoint, ctx: Ctx) -> Iterator[None]:
    d = ctx.tmp / f"dovecot-{ep.netns}"
    d.mkdir()
    # Dovecot's login processes run as dovenull and must reach the cert through the dir.
    d.chmod(0o755)
    conf = d / "dovecot.conf"
    dh = Path("/usr/share/dovecot/dh.pem")
    conf.write_text(
        DOVECOT_CONF.format(d=d, server_name=SERVER_NAME, cert=ctx.cert, key=ctx.key, dh=dh)
    )
    try:
        with spawn(ep, ["dovecot", "-F", "-c", str(conf)]):
            for port in (143, 110, 587):
                wait_for_listen(ep, port)
            yield
    finally:
        log = d / "dovecot.log"
        if log.exists():
            errors = [ln for ln in log.read_text().splitlines() if "Error" in ln or "Fatal" in ln]
            for ln in errors[:5]:
                ctx.say(f"    dovecot: {ln}")


def dovecot_scenario(proto: str) -> Scenario:
    port, starttls, py = {
        "imap": (143, "imap", PY_IMAP),
        "pop3": (110, "pop3", PY_POP3),
        "submission": (587, "smtp", PY_SMTP),
    }[proto]

    def run(out: Path, ctx: Ctx) -> list[Conn]:
        with veth_pair(hosts=HOSTS) as net, dovecot(net.server, ctx), tcpdump(net.client, out):
            return [
                client_run(
                    net.client,
                    ctx,
                    f"openssl s_client -starttls {starttls}",
                    s_client(SERVER_NAME, port, "-starttls", starttls),
                ),
                client_run(
                    net.client, ctx, f"python {proto} STARTTLS", [PY, "-c", py, SERVER_NAME]
                ),
            ]

    return run


# ---------------------------------------------------------------------------------------------
# The capture list (order matters only for derived captures, which come after their sources)

CAPTURES: list[Capture] = [
    Capture(
        "openssl-tls13.pcap",
        "openssl s_client (TLS 1.3 default, SNI)",
        "baseline TLS 1.3 hello; ServerHello version 771 + supported_versions",
        openssl_scenario(),
    ),
    Capture(
        "openssl-tls12.pcap",
        "openssl s_client -tls1_2",
        "TLS 1.2 only hello (no supported_versions/key_share)",
        openssl_scenario("-tls1_2"),
    ),
    Capture(
        "openssl-tls10.pcap",
        "openssl s_client -tls1 (SECLEVEL=0 both sides)",
        "TLS 1.0 hello, legacy_version 769",
        openssl_scenario(
            "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", server_args=("-cipher", "DEFAULT@SECLEVEL=0")
        ),
    ),
    Capture(
        "openssl-nosni.pcap",
        "openssl s_client -noservername",
        "hello without server_name (JA4 'i')",
        openssl_scenario("-noservername", host=DEFAULT_IPV4[1]),
    ),
    Capture(
        "openssl-alpn.pcap",
        "openssl s_client -alpn h2,http/1.1",
        "ALPN in the hello and in the ServerHello (JA4 'h2')",
        openssl_scenario("-alpn", "h2,http/1.1", server_args=("-alpn", "http/1.1")),
    ),
    Capture(
        "openssl-hrr.pcap",
        "openssl s_client -groups X25519:P-384 vs server P-384",
        "HelloRetryRequest: two ClientHellos in one flow, CCS before the second",
        openssl_scenario("-groups", "X25519:P-384", server_args=("-groups", "P-384"), hrr=True),
    ),
    Capture(
        "curl-https.pcap",
        "curl (OpenSSL backend), default and --tls-max 1.2",
        "libcurl hello with ALPN h2,http/1.1",
        make_curl,
    ),
    Capture(
        "gnutls-cli-sni.pcap",
        "gnutls-cli with SNI",
        "GnuTLS hello (ext 28 record_size_limit; Dovecot JA3 differs)",
        make_gnutls,
    ),
    Capture(
        "python-ssl-port4433.pcap",
        "Python ssl: urllib and SSLContext.wrap_socket",
        "TLS on a non-standard port (4433), with and without ALPN",
        make_python,
        decode_as=(4433,),
    ),
    Capture(
        "python-reframed.pcap",
        "Python ssl via MemoryBIO (hello bytes from OpenSSL, framing by the script)",
        "5-byte record header alone in a segment; ClientHello split across two records",
        make_reframed,
    ),
    Capture(
        "tiny-first-segments.pcap",
        "Python ssl via MemoryBIO (TLS bytes from OpenSSL, segmentation by the script)",
        "capture joined mid-session at a 1-byte segment (NULL cipher, a hello record inside "
        "the application data); hello record header in 1-, 1- and 3-byte segments",
        make_tiny_first_segments,
    ),
    Capture(
        "node-https.pcap",
        "Node.js https.get",
        "Node's OpenSSL-based hello",
        make_node,
        needs=("node",),
    ),
    Capture(
        "java-sslsocket.pcap",
        "Java 17 JSSE SSLSocket",
        "JSSE hello (its own cipher/extension order)",
        make_java,
        needs=("java",),
    ),
    *[
        Capture(
            f"curl-cffi-{browser}-mtu{mtu}.pcap",
            f"curl_cffi impersonate={CURL_CFFI_TARGETS[browser]}",
            f"{BROWSER_TRAITS[browser]}; veth MTU {mtu}",
            curl_cffi_scenario(browser, mtu),
        )
        for mtu in (1500, 576)
        for browser in CURL_CFFI_TARGETS
    ],
    Capture(
        "tcp-reorder-retransmit.pcap",
        f"curl_cffi impersonate={CURL_CFFI_TARGETS['chrome']} via a router, MTU 576",
        "real loss: hello segment 2 arrives after 3-4 (out of order), and twice (retransmission)",
        make_reorder,
        needs=("nft",),
    ),
    Capture(
        "dovecot-starttls-imap.pcap",
        "openssl s_client -starttls imap, Python imaplib",
        "hello after IMAP STARTTLS plaintext on port 143 (Dovecot 2.3)",
        dovecot_scenario("imap"),
    ),
    Capture(
        "dovecot-starttls-plaintext-record.pcap",
        "Python socket and ssl against Dovecot 2.3 IMAP",
        "before STARTTLS, a command argument starting a segment with a ClientHello record "
        "(plaintext, not TLS); then the real STARTTLS hello",
        dovecot_python_client(
            "python socket: IMAP command whose argument starts a segment with a ClientHello "
            "record, then STARTTLS and Python ssl",
            PY_IMAP_PLAINTEXT_RECORD,
        ),
    ),
    Capture(
        "dovecot-starttls-literal.pcap",
        "Python socket and ssl against Dovecot 2.3 IMAP",
        "before STARTTLS, IMAP literals (synchronising and LITERAL+, segments split inside "
        "{N+}, before CRLF and inside the literal) holding a ClientHello record (plaintext, not "
        "TLS); then the real STARTTLS hello",
        dovecot_python_client(
            "python socket: IMAP ID commands whose literals (synchronising, LITERAL+, split "
            "segments) are a ClientHello record, then STARTTLS and Python ssl",
            PY_IMAP_LITERAL,
        ),
    ),
    Capture(
        "dovecot-starttls-pop3.pcap",
        "openssl s_client -starttls pop3, Python poplib",
        "hello after POP3 STLS plaintext on port 110 (Dovecot 2.3)",
        dovecot_scenario("pop3"),
    ),
    Capture(
        "dovecot-starttls-submission.pcap",
        "openssl s_client -starttls smtp, Python smtplib",
        "hello after SMTP STARTTLS on submission port 587 (dovecot-submissiond)",
        dovecot_scenario("submission"),
    ),
    Capture("ipv6.pcap", "openssl s_client and curl over IPv6", "IPv6 over Ethernet", make_ipv6),
    Capture(
        "sll2-any.pcap",
        "curl (veth) and openssl s_client (lo)",
        "tcpdump -i any: LINUX_SLL2 (276), two interfaces behind one link type",
        make_sll2,
    ),
    Capture(
        "dumpcap.pcapng",
        "gnutls-cli and openssl s_client -tls1_3",
        "pcapng written by dumpcap (SHB/IDB/EPB, nanosecond if_tsresol)",
        make_pcapng,
    ),
    Capture(
        "nsec.pcap",
        "openssl s_client -tls1_2 and curl",
        "classic pcap with nanosecond timestamps (magic a1b23c4d)",
        make_nsec,
    ),
    Capture(
        "openssl-tls12-bigendian.pcap",
        "(copy of openssl-tls12.pcap)",
        "big-endian classic pcap (file starts a1 b2 c3 d4; headers byte-swapped)",
        make_big_endian,
        depends=("openssl-tls12.pcap",),
    ),
    Capture(
        "multi-linktype.pcapng",
        "(merge of openssl-tls12.pcap and sll2-any.pcap)",
        "pcapng with two interfaces of different link types (Ethernet + LINUX_SLL2)",
        make_multi_linktype,
        depends=("openssl-tls12.pcap", "sll2-any.pcap"),
    ),
]


# ---------------------------------------------------------------------------------------------
# Helpers: tools, format conversion


def run_tool(argv: list[str], timeout: float = 60) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed: {res.stderr.strip()}")
    return res.stdout


def pcap_to_big_endian(src: Path, dst: Path) -> None:
    """Rewrite a little-endian classic pcap with big-endian headers.

    No standard tool writes big-endian pcap (editcap/mergecap always write host order), so this
    swaps the 24-byte file header and every 16-byte record header; packet bytes are unchanged.
    tshark then reads the result as an independent check.
    """
    data = src.read_bytes()
    if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        raise ValueError(f"{src}: not a little-endian classic pcap")
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0)))
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            raise ValueError(f"{src}: truncated record header at {off}")
        hdr = struct.unpack_from("<IIII", data, off)
        incl = hdr[2]
        out += struct.pack(">IIII", *hdr)
        out += data[off + 16 : off + 16 + incl]
        off += 16 + incl
    dst.write_bytes(bytes(out))


def make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    # RSA rather than ECDSA so that every client, down to TLS 1.0 suites, can negotiate.
    run_tool(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={SERVER_NAME}",
            "-addext",
            f"subjectAltName=DNS:{SERVER_NAME},DNS:{SERVER_NAME6}",
        ]
    )
    # Dovecot's unprivileged login processes read the key through ssl_key = </path.
    key.chmod(0o644)
    return cert, key


def tool_versions() -> dict[str, str]:
    """The versions that made the captures (recorded in every expected file)."""

    def first_line(argv: list[str]) -> str:
        if shutil.which(argv[0]) is None:
            return "not installed"
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        text = (res.stdout or res.stderr).strip()
        return text.splitlines()[0] if text else "unknown"

    try:
        import curl_cffi

        cffi = str(curl_cffi.__version__)
    except ImportError:
        cffi = "not installed"
    return {
        "openssl": first_line(["openssl", "version"]),
        "curl": first_line(["curl", "--version"]),
        "gnutls-cli": first_line(["gnutls-cli", "--version"]),
        "python": sys.version.split()[0],
        "curl_cffi": cffi,
        "node": first_line(["node", "--version"]),
        "java": first_line(["java", "-version"]),
        "dovecot": first_line(["dovecot", "--version"]),
        "tcpdump": first_line(["tcpdump", "--version"]),
        "tshark": first_line(["tshark", "--version"]),
        "kernel": os.uname().release,
    }


# ---------------------------------------------------------------------------------------------
# The oracle: tshark


TSHARK_FIELDS = [
    "frame.number",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.segment.count",
    "tls.handshake.type",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3",
    "tls.handshake.ja3s_full",
    "tls.handshake.ja3s",
    "tls.handshake.extensions_server_name",
]


def tshark_argv(path: Path, decode_as: tuple[int, ...]) -> list[str]:
    argv = ["tshark", "-r", str(path), "-o", "tcp.desegment_tcp_streams:TRUE"]
    for port in decode_as:
        argv += ["-d", f"tcp.port=={port},tls"]
    argv += ["-Y", "tls.handshake.type==1 || tls.handshake.type==2", "-T", "json"]
    for f in TSHARK_FIELDS:
        argv += ["-e", f]
    return argv


def tshark_hellos(
    path: Path, decode_as: tuple[int, ...]
) -> tuple[list[dict[str, object]], list[str]]:
    """One row per hello tshark reports, plus notes on anything that did not line up."""
    notes: list[str] = []
    packets = json.loads(run_tool(tshark_argv(path, decode_as), timeout=120) or "[]")
    rows: list[dict[str, object]] = []
    for pkt in packets:
        layers: dict[str, list[str]] = pkt["_source"]["layers"]

        def one(name: str, layers: dict[str, list[str]] = layers) -> str | None:
            vals = layers.get(name)
            return vals[0] if vals else None  # first = outermost header if tunnelled

        frame = int(one("frame.number") or 0)
        types = layers.get("tls.handshake.type", [])
        # A frame may hold several handshake messages (ServerHello + Certificate + ...) and,
        # in principle, several hellos: tshark emits one ja3/ja3s value per hello, in order.
        for kind, code, full_f, hash_f in (
            ("client", "1", "tls.handshake.ja3_full", "tls.handshake.ja3"),
            ("server", "2", "tls.handshake.ja3s_full", "tls.handshake.ja3s"),
        ):
            n = types.count(code)
            fulls, hashes = layers.get(full_f, []), layers.get(hash_f, [])
            snis = layers.get("tls.handshake.extensions_server_name", [])
            if n and (len(fulls) != n or len(hashes) != n):
                notes.append(
                    f"frame {frame}: {n} {kind} hello(s) but {len(fulls)} {full_f} "
                    f"values; unmatched hellos get null"
                )
            if kind == "client" and n > 1 and len(snis) not in (0, n):
                notes.append(
                    f"frame {frame}: cannot pair {len(snis)} SNI values with {n} "
                    "client hellos; sni left null"
                )
            for i in range(n):
                full = fulls[i] if i < len(fulls) else None
                digest = hashes[i] if i < len(hashes) else None
                sni = None
                if kind == "client" and (n == 1 or len(snis) == n) and i < len(snis):
                    sni = snis[i]
                segs = layers.get("tcp.segment.count", [])
                rows.append(
                    {
                        "frame": frame,
                        "tcp_stream": int(one("tcp.stream") or -1),
                        "src": one("ip.src") or one("ipv6.src"),
                        "sport": int(one("tcp.srcport") or 0),
                        "dst": one("ip.dst") or one("ipv6.dst"),
                        "dport": int(one("tcp.dstport") or 0),
                        "hello": kind,
                        "ja3": full if kind == "client" else None,
                        "ja3_hash": digest if kind == "client" else None,
                        "ja3s": full if kind == "server" else None,
                        "ja3s_hash": digest if kind == "server" else None,
                        "sni": sni,
                        # TCP segments of the PDU tshark completed in this frame (1: none were
                        # reassembled); null when ambiguous (several hellos or several PDUs).
                        "tcp_segments": (
                            1 if not segs else int(segs[0]) if len(segs) == 1 else None
                        )
                        if n == 1
                        else None,
                    }
                )
    return rows, notes


LINKTYPES = {
    "ether": "EN10MB (1)",
    "linux-sll": "LINUX_SLL (113)",
    "linux-sll2": "LINUX_SLL2 (276)",
}


def capinfos(path: Path) -> dict[str, object]:
    """File format facts from capinfos (another Wireshark tool, not our reader)."""
    text = run_tool(["capinfos", "-t", "-E", "-c", "-s", "-T", "-M", "-r", str(path)])
    line = text.strip().splitlines()[-1].split("\t")
    info: dict[str, object] = {
        "file_type": line[1],
        "encapsulation": line[2],
        "packets": int(line[3]),
        "bytes": int(line[4]),
    }
    detail = run_tool(["capinfos", "-M", str(path)])
    # One entry per pcapng interface (a classic pcap has exactly one).
    info["interfaces"] = [e.strip() for e in re.findall(r"Encapsulation = (.+)", detail)]
    # capinfos prints Wireshark's internal encapsulation numbers; the README wants the pcap
    # LINKTYPE_ values a reader sees in the file.
    names = [m.group(1) for e in info["interfaces"] if (m := re.search(r"- ([\w-]+)\)", e))]
    info["linktypes"] = [LINKTYPES.get(n, n) for n in names]
    prec = re.search(r"File timestamp precision:\s+(.+)", detail)
    info["timestamp_precision"] = prec.group(1).strip() if prec else "unknown"
    raw = path.read_bytes()[:4]
    info["magic"] = raw.hex()
    return info


def expected_path(cap: Capture) -> Path:
    return HERE / f"{cap.stem}.expected.json"


def load_conns(path: Path) -> list[Conn]:
    """Connections recorded for an existing capture (derived captures reuse them)."""
    cap = next(c for c in CAPTURES if c.name == path.name)
    data = json.loads(expected_path(cap).read_text())
    return [Conn(**c) for c in data["connections"]]


def write_expected(cap: Capture, conns: list[Conn], versions: dict[str, str]) -> dict[str, object]:
    path = HERE / cap.name
    rows, notes = tshark_hellos(path, cap.decode_as)
    want_c = sum(c.client_hellos for c in conns)
    want_s = sum(c.server_hellos for c in conns)
    got_c = sum(1 for r in rows if r["hello"] == "client")
    got_s = sum(1 for r in rows if r["hello"] == "server")
    if (got_c, got_s) != (want_c, want_s):
        notes.append(
            f"tshark reports {got_c} client / {got_s} server hellos; the scenario "
            f"made {want_c} / {want_s} (see connections)"
        )
    for r in rows:
        if r["hello"] == "client" and not r["ja3"]:
            notes.append(f"frame {r['frame']}: tshark gave no ja3_full for a ClientHello")
    argv = tshark_argv(Path(cap.name), cap.decode_as)
    doc: dict[str, object] = {
        "capture": cap.name,
        "oracle": "tshark "
        + (m.group(1) if (m := re.search(r"(\d+\.\d+\.\d+)", versions["tshark"])) else "?"),
        "command": shlex.join(argv),
        "client": cap.client,
        "covers": cap.covers,
        "format": capinfos(path),
        "connections": [c.__dict__ for c in conns],
        "counts": {
            "client_hellos": got_c,
            "server_hellos": got_s,
            "expected_client_hellos": want_c,
            "expected_server_hellos": want_s,
        },
        "recorded_with": versions,
        "notes": notes,
        "hellos": rows,
    }
    expected_path(cap).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# ---------------------------------------------------------------------------------------------
# README


def write_readme() -> None:
    rows: list[str] = []
    hashes: list[str] = []
    versions: dict[str, str] = {}
    for cap in CAPTURES:
        p = expected_path(cap)
        if not p.exists():
            continue
        doc = json.loads(p.read_text())
        versions = versions or doc["recorded_with"]
        fmt, counts = doc["format"], doc["counts"]
        links = " + ".join(fmt["linktypes"]) or fmt["encapsulation"]
        size = (HERE / cap.name).stat().st_size
        flag = " ⚠" if doc["notes"] else ""
        clients = [h for h in doc["hellos"] if h["hello"] == "client"]
        segs = ",".join(str(h["tcp_segments"]) for h in clients)
        rows.append(
            f"| `{cap.name}` | {cap.client} | {fmt['file_type']}, {links}, "
            f"{fmt['timestamp_precision'].split(' (')[0]} | {cap.covers} | "
            f"{counts['client_hellos']} / {counts['server_hellos']}{flag} | {segs} | "
            f"{size // 1024} KiB |"
        )
        for h in clients:
            hashes.append(
                f"| `{cap.name}` | {h['frame']} | {h['tcp_stream']} | {h['sni'] or '-'} | "
                f"`{h['ja3_hash']}` |"
            )
    total = sum((HERE / c.name).stat().st_size for c in CAPTURES if (HERE / c.name).exists())
    vers = "\n".join(f"| {k} | {v} |" for k, v in versions.items())
    text = f"""# Golden captures

Real TLS client stacks recorded on this project's machines, each with the values the independent
oracle **tshark** reports for it (`<capture>.expected.json`). Nothing here comes from ja3svc.
Do not edit the expected files by hand: rerun the script.

Every live capture is a veth pair between two fresh network namespaces (client 198.18.0.1 /
fd4a:3373:7663::1, server 198.18.0.2 / fd4a:3373:7663::2, names `{SERVER_NAME}` and
`{SERVER_NAME6}`), TSO/GSO/GRO off so packets are wire-sized, recorded on the client's veth with
`tcpdump -U -s 0` (or `-i any`, or dumpcap) and stopped with SIGINT.
`tcp-reorder-retransmit.pcap` adds a forwarding router namespace (198.18.0.254/198.18.1.254,
server 198.18.1.2) whose nftables rule drops one hello segment, recorded at the server.
Servers: `openssl s_server -www` with a throw-away RSA certificate, or a private Dovecot
(static passdb, own base_dir).

## Captures

Hellos = ClientHellos / ServerHellos tshark reports (a HelloRetryRequest counts as a
ServerHello); ⚠ = the expected file has `notes` (tshark disagreed with what the scenario did).
Segments = TCP segments tshark reassembled for each ClientHello, in order. Total size of the
captures: {total // 1024} KiB.

| file | client stack | format, link, timestamps | edge case | hellos C / S | segments | size |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Not covered by live captures (no standard tool produces them here; crafted fixtures elsewhere):
partially overlapping TCP segments, 802.1Q/QinQ, SLL v1, NULL/LOOP, raw IP,
IPv4 options, IPv6 extension headers, GRE/VXLAN/GENEVE, SSLv2-compatible hellos, truncated
files. `tunnels/` holds IP-in-IP (4in4, 6in4, 4in6, 6in6), GTP-U, CAPWAP (802.11 frame control
in the standard order, and byte-swapped as Cisco sends it) and PPP (link type 9): the real packets
of `openssl-tls13.pcap` and `ipv6.pcap` wrapped by `tunnels/regenerate.py` (this machine's kernel
has no ipip/sit/ip6_tunnel), with their own tshark expectations.
`quic/` holds aioquic connections on loopback (`quic/regenerate.py`: v1, v2, Retry, a hello split
over three Initials) and, from `quic/regenerate_versions.py`, the versions before RFC 9000:
draft-27 (aioquic 0.8.8), draft-29 and draft-32 (aioquic 0.9.25) recorded live; every other draft
from 23 to 34, mvfst's 0xfaceb001/0xfaceb002/0xfaceb00e and Google's T050/T051 re-protected from
`draft29.pcap` (same plaintext under that version's salt; Google framing for T050/T051), as no
stack available here speaks them. `quic/expected.json` is tshark's answer for all of them.

## ClientHello JA3 per capture (tshark)

| file | frame | tcp stream | SNI | JA3 (MD5) |
| --- | --- | --- | --- | --- |
{chr(10).join(hashes)}

## Expected files

`<capture>.expected.json`:

```
{{"capture": ..., "oracle": "tshark 4.0.17", "command": "<exact tshark command>",
  "client": ..., "covers": ..., "format": {{capinfos facts}},
  "connections": [{{"label", "client_hellos", "server_hellos"}}],   # what the scenario did
  "counts": {{...}}, "recorded_with": {{tool versions}}, "notes": [...],
  "hellos": [{{"frame", "tcp_stream", "src", "sport", "dst", "dport",
              "hello": "client"|"server", "ja3", "ja3_hash", "ja3s", "ja3s_hash", "sni",
              "tcp_segments"}}]}}
```

- `tcp_segments`: TCP segments of the PDU tshark completed in that frame (1 = no TCP
  reassembly; a hello split across TLS *records* in one segment each still shows 1 here).
- `frame` is the 1-based frame where tshark finished reassembling the hello (for a hello spread
  over several TCP segments that is the *last* segment).
- `ja3`/`ja3s` are tshark's `ja3_full`/`ja3s_full` strings, `*_hash` their MD5. tshark 4.0
  strips GREASE from ciphers, extensions and groups, and from JA3S extensions.
- Rows are in tshark's order (frame order); a HelloRetryRequest flow has two client rows and two
  server rows in the same `tcp_stream`.
- Port 4433 (`python-ssl-port4433.pcap`) needs `-d tcp.port==4433,tls`, which is in `command`.
  STARTTLS (IMAP/POP3/SMTP) is followed by tshark's own dissectors on the standard ports.
- `openssl-tls12-bigendian.pcap` is `openssl-tls12.pcap` with every header byte-swapped by the
  script (no standard tool writes big-endian pcap); its expectations were re-derived by tshark.

## Regenerate

As root, with the tools above installed (Debian: `tshark tcpdump openssl curl gnutls-bin
ethtool nftables dovecot-imapd dovecot-pop3d dovecot-submissiond iproute2`, `pip install
curl_cffi`; `java`/`node`/`nft` captures are skipped when the tool is missing):

```
python tests/pcaps/regenerate.py                  # all captures, ~1-2 minutes
python tests/pcaps/regenerate.py --only openssl-hrr --only curl-cffi-chrome-mtu576
python tests/pcaps/regenerate.py --expect-only    # only rerun tshark + README
```

`--only` also remakes the captures derived from the named ones. Captures change on every run
(random values, keys, Chrome's extension order), so commit pcap and expected file together.

## Recorded with

| tool | version |
| --- | --- |
{vers}
"""
    (HERE / "README.md").write_text(text)


# ---------------------------------------------------------------------------------------------
# Main


def select(only: list[str]) -> list[Capture]:
    if not only:
        return list(CAPTURES)
    names = set()
    for o in only:
        match = [c for c in CAPTURES if o in (c.name, c.stem)]
        if not match:
            raise SystemExit(f"unknown capture {o!r}; known: {[c.stem for c in CAPTURES]}")
        names.add(match[0].name)
    changed = True
    while changed:  # add derived captures of selected ones, and missing sources of derived ones
        changed = False
        for c in CAPTURES:
            if c.name not in names and any(d in names for d in c.depends):
                names.add(c.name)
                changed = True
            if c.name in names:
                for d in c.depends:
                    if d not in names and not (HERE / d).exists():
                        names.add(d)
                        changed = True
    return [c for c in CAPTURES if c.name in names]


def on_alarm(signum: int, frame: FrameType | None) -> None:
    # Raised in the main thread: context managers unwind, so namespaces and servers go away.
    raise TimeoutError(f"regenerate.py exceeded {TOTAL_TIMEOUT}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="capture name (with or without extension); repeatable",
    )
    ap.add_argument(
        "--expect-only",
        action="store_true",
        help="do not capture; rerun tshark on existing files and rewrite README",
    )
    args = ap.parse_args()
    if os.geteuid() != 0 and not args.expect_only:
        raise SystemExit("run as root: captures need network namespaces and tcpdump")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_TIMEOUT)
    versions = tool_versions()
    caps = select(args.only)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ja3svc-pcaps-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        cert, key = make_cert(tmp)
        ctx = Ctx(tmp, cert, key)
        for cap in caps:
            missing = [t for t in cap.needs if shutil.which(t) is None]
            if missing:
                ctx.say(f"- {cap.name}: skipped, {', '.join(missing)} not installed")
                continue
            if args.expect_only:
                if not (HERE / cap.name).exists():
                    continue
                conns = [
                    Conn(**c) for c in json.loads(expected_path(cap).read_text())["connections"]
                ]
            else:
                ctx.say(f"- {cap.name}")
                partial = tmp / cap.name
                try:
                    conns = cap.make(partial, ctx)
                except (NetnsError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    ctx.say(f"    FAILED: {exc}")
                    failures.append(cap.name)
                    continue
                # Move into place only once complete, so a failed run keeps the old file.
                shutil.move(partial, HERE / cap.name)
                # tcpdump drops to its own user when writing; hand the file to the repo owner.
                st = HERE.stat()
                os.chown(HERE / cap.name, st.st_uid, st.st_gid)
                os.chmod(HERE / cap.name, 0o644)  # dumpcap creates 0600 files
            doc = write_expected(cap, conns, versions)
            counts = doc["counts"]
            ctx.say(f"    {counts}")
            for note in doc["notes"]:  # type: ignore[attr-defined]
                ctx.say(f"    note: {note}")
    write_readme()
    signal.alarm(0)
    if failures:
        print(f"failed: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

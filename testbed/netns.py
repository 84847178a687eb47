"""Two network namespaces joined by a veth pair, for live-capture tests and golden captures.

Why namespaces: real TLS stacks (openssl, curl, browsers via curl_cffi, Dovecot) talk over a real
kernel TCP/IP path whose MTU we choose, so large ClientHellos really span several segments, and
nothing leaves the machine. Everything created here has a random, unique name and is torn down
on exit, also when the body raises or a step of the setup itself fails.

Typical use::

    with veth_pair(mtu=576) as net:
        with spawn(net.server, ["openssl", "s_server", ...]) as server:
            wait_for_listen(net.server, 443)
            with tcpdump(net.client, "out.pcap"):
                net.client.run(["curl", "-k", f"https://{net.server.ipv4}/"], timeout=10)

Needs root (CAP_NET_ADMIN), iproute2 (`ip`, `ss`) and, unless ``offloads=True``, ethtool.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_IPV4",
    "DEFAULT_IPV6",
    "ROUTED_IPV4",
    "Endpoint",
    "NetnsError",
    "RoutedPath",
    "VethPair",
    "dumpcap",
    "netns_available",
    "routed_path",
    "spawn",
    "tcpdump",
    "veth_pair",
    "wait_for_listen",
]

# RFC 2544 benchmarking range and an RFC 4193 unique-local prefix: never routed anywhere, and
# they only exist inside the namespaces made here.
DEFAULT_IPV4: tuple[str, str] = ("198.18.0.1", "198.18.0.2")
DEFAULT_IPV6: tuple[str, str] = ("fd4a:3373:7663::1", "fd4a:3373:7663::2")
IPV4_PREFIX = 24
IPV6_PREFIX = 64
# RFC 8200: IPv6 needs a link MTU of at least 1280; Linux disables IPv6 on smaller links.
IPV6_MIN_MTU = 1280
NETNS_ETC = Path("/etc/netns")


class NetnsError(RuntimeError):
    """A namespace, link or capture step failed; the message carries the command's stderr."""


def _ip(*args: str, timeout: float = 10.0) -> None:
    """Run one `ip` command in the root namespace, raising NetnsError with its stderr."""
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def netns_available() -> tuple[bool, str]:
    """Whether this process can create namespaces; the reason when not (for pytest skips)."""
    if os.geteuid() != 0:
        return False, "needs root for network namespaces"
    for tool in ("ip", "ss"):
        if shutil.which(tool) is None:
            return False, f"{tool} (iproute2) not installed"
    try:
        # Unique name: concurrent probes (pytest-xdist workers) must not collide.
        with _namespace(f"j3{_unique_token()}p"):
            pass
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot create a network namespace: {exc}"
    return True, ""


@dataclass(frozen=True)
class Endpoint:
    """One veth end: its namespace, interface name, addresses and MTU."""

    netns: str
    ifname: str
    ipv4: str
    ipv6: str | None
    mtu: int

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside this namespace (`ip netns exec` execs, no shell)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace; the timeout is mandatory.

        On timeout the whole process group is killed (not just `ip netns exec`'s child), so a
        hung client cannot outlive the call.
        """
        proc = subprocess.Popen(
            self.wrap(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            # Bounded too: a daemonised grandchild could still hold the pipes open.
            err = ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                err = proc.communicate(timeout=5)[1] or ""
            raise NetnsError(
                f"timed out after {timeout}s in {self.netns}: {list(argv)}\n{err.strip()}"
            ) from None
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise NetnsError(f"exit {proc.returncode} in {self.netns}: {list(argv)}\n{err.strip()}")
        return result

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a command in the namespace in its own process group (see `spawn`)."""
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(self.wrap(argv), **kwargs)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True)
class VethPair:
    """Client and server endpoints joined by one veth link."""

    client: Endpoint
    server: Endpoint
    mtu: int
    hosts: Mapping[str, str] = field(default_factory=dict)


def _kill_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int) -> None:
    # The child leads its own session (start_new_session), so its pid is the group id; this
    # reaches forked workers too (dovecot, s_server children) and nothing outside them.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def spawn(
    endpoint: Endpoint,
    argv: Sequence[str],
    *,
    stop_signal: int = signal.SIGTERM,
    stop_timeout: float = 5.0,
    stdout: int | object = subprocess.DEVNULL,
    stderr: int | object = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a background process (a server) in the namespace for the duration of the block.

    On exit: `stop_signal` to its process group, then SIGKILL after `stop_timeout` seconds.
    """
    proc = endpoint.popen(
        argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            _kill_group(proc, stop_signal)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=stop_timeout)
        # Workers that escaped the leader's death (daemons re-parented to init) die here too.
        _kill_group(proc, signal.SIGKILL)


def wait_for_listen(endpoint: Endpoint, port: int, *, timeout: float = 10.0) -> None:
    """Block until something listens on TCP `port` in the namespace.

    Polls `ss` rather than connecting, so no probe connection pollutes a capture.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = endpoint.run(["ss", "-Hltn", f"sport = :{port}"], timeout=5, check=False)
        if res.stdout.strip():
            return
        time.sleep(0.05)
    raise NetnsError(f"nothing listens on tcp/{port} in {endpoint.netns} after {timeout}s")


@contextlib.contextmanager
def _capture(
    endpoint: Endpoint,
    argv: list[str],
    ready_marker: str,
    header_file: Path | None,
    *,
    ready_timeout: float,
    settle: float,
    stop_timeout: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a capture tool; enter the block once it is capturing, SIGINT it on exit.

    "Capturing" means: the tool printed `ready_marker` and, if `header_file` is given, has
    written that file's header. dumpcap prints "Capturing on" before it opens the interface, so
    its marker alone loses the first packets; it writes the header once the handle is live.
    tcpdump prints "listening on" after activation (its header may sit in stdio buffers).
    """
    if header_file is not None:
        # A stale file from an earlier run would look like a header already written.
        header_file.unlink(missing_ok=True)
    proc = endpoint.popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: list[str] = []
    ready = threading.Event()

    def _reader() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if ready_marker in line:
                ready.set()
        ready.set()  # EOF: the tool died; the caller sees it through poll()

    reader = threading.Thread(target=_reader, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + ready_timeout
        started = ready.wait(ready_timeout)
        while (
            started
            and header_file
            and not (header_file.exists() and header_file.stat().st_size > 0)
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                started = False
                break
            time.sleep(0.01)
        if not started or proc.poll() is not None:
            raise NetnsError(f"{argv[0]} did not start in {endpoint.netns}: {''.join(lines)}")
        yield proc
        # Let the last packets (FIN/ACK) reach the ring buffer before stopping.
        time.sleep(settle)
    finally:
        if proc.poll() is None:
            # SIGINT is the documented clean stop: both tools flush and close the file.
            _kill_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=stop_timeout)
        reader.join(timeout=stop_timeout)


def tcpdump(
    endpoint: Endpoint,
    path: str | os.PathLike[str],
    *,
    interface: str | None = None,
    nanosecond: bool = False,
    link_type: str | None = None,
    bpf: str | None = None,
    ready_timeout: float = 10.0,
    settle: float = 0.3,
    stop_timeout: float = 10.0,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """Capture to a pcap file with tcpdump in the namespace while the block runs.

    `interface` defaults to the endpoint's veth (Ethernet); "any" gives Linux cooked capture
    (libpcap 1.10 picks LINUX_SLL2 there; `link_type` forces one, e.g. "LINUX_SLL2").
    `nanosecond` writes the nanosecond pcap variant (magic a1b23c4d).
    The block starts only after tcpdump reports "listening on"; on exit we wait `settle`
    seconds, then SIGINT. -U and --immediate-mode: every packet is written as it arrives.
    """
    argv = ["tcpdump", "-n", "-U", "--immediate-mode", "-s", "0", "-w", os.fspath(path)]
    argv += ["-i", interface or endpoint.ifname]
    if nanosecond:
        argv += ["--time-stamp-precision", "nano"]
    if link_type:
        argv += ["-y", link_type]
    if bpf:
        argv.append(bpf)
    return _capture(
        endpoint,
        argv,
        "listening on",
        None,
        ready_timeout=ready_timeout,
        settle=settle,
        stop_timeout=stop_timeout,
    )


def dumpcap(
    endpoint: Endpoint,
    path: str | os.PathLike[str],
    *,
    interfaces: Sequence[str] | None = None,
    bpf: str | None = None,
    ready_timeout: float = 10.0,
    settle: float = 0.3,
    stop_timeout: float = 10.0,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """Capture to a pcapng file with Wireshark's dumpcap (one IDB per interface given).

    `interfaces` defaults to the endpoint's veth; several may be given (e.g. the veth and
    "any"), each becoming its own pcapng interface with its own link type.
    """
    argv = ["dumpcap", "-q", "-w", os.fspath(path)]
    for iface in interfaces or [endpoint.ifname]:
        argv += ["-i", iface]
        if bpf:
            argv += ["-f", bpf]
    return _capture(
        endpoint,
        argv,
        "Capturing on",
        Path(path),
        ready_timeout=ready_timeout,
        settle=settle,
        stop_timeout=stop_timeout,
    )


@contextlib.contextmanager
def _namespace(name: str, hosts: Mapping[str, str] | None = None) -> Iterator[str]:
    """Create namespace `name` with loopback up; on exit kill what runs in it and delete it."""
    _ip("netns", "add", name)
    etc_dir = NETNS_ETC / name
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*, so every resolver (glibc,
        # c-ares in curl_cffi, Python, gnutls) sees these files inside this namespace only.
        etc_dir.mkdir(parents=True, exist_ok=True)
        # DNS goes to the namespace's own loopback, where nothing listens: lookups not in
        # `hosts` (AAAA, HTTPS records for ECH...) fail at once instead of waiting for a server
        # that is out of reach (and no query can leave through a routed test topology).
        (etc_dir / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        text = "127.0.0.1 localhost\n::1 localhost\n"
        text += "".join(f"{addr} {host}\n" for host, addr in (hosts or {}).items())
        (etc_dir / "hosts").write_text(text)
        yield name
    finally:
        _teardown_namespace(name, etc_dir)


def _teardown_namespace(name: str, etc_dir: Path) -> None:
    # Processes left inside our uniquely named namespace can only be ours; killing them first
    # lets the namespace (and the veth end in it) actually disappear on delete.
    res = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
    )
    for pid in res.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(NetnsError, subprocess.SubprocessError):
        _ip("netns", "del", name)
    shutil.rmtree(etc_dir, ignore_errors=True)


def _unique_token() -> str:
    # 6 hex digits keep interface names within IFNAMSIZ (15 chars) with a short prefix.
    for _ in range(20):
        token = secrets.token_hex(3)
        if not Path(f"/run/netns/j3{token}c").exists():
            return token
    raise NetnsError("could not find an unused namespace name")


def _check_link_args(mtu: int, ipv6: object, offloads: bool) -> None:
    if ipv6 is not None and mtu < IPV6_MIN_MTU:
        raise ValueError(f"IPv6 needs an MTU >= {IPV6_MIN_MTU}, got {mtu}; pass ipv6=None")
    if not 68 <= mtu <= 65535:
        raise ValueError(f"MTU out of range: {mtu}")
    if not offloads and shutil.which("ethtool") is None:
        raise NetnsError("ethtool is needed to disable offloads (apt-get install ethtool)")


def _veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    # Both ends are created directly inside their namespaces: nothing ever appears in (or
    # leaks into) the root namespace, and deleting a namespace removes the pair.
    _ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)


def _configure(
    ns: str, ifname: str, mtu: int, ipv4: str, ipv6: str | None, offloads: bool
) -> Endpoint:
    """Address one veth end, bring it up, and (unless `offloads`) make packets wire-sized."""
    if ipv6 is not None:
        # No link-local address: keeps router solicitations out of captures; neighbour
        # discovery works with the global address alone.
        _ip("-n", ns, "link", "set", ifname, "addrgenmode", "none")
    _ip("-n", ns, "link", "set", ifname, "mtu", str(mtu))
    _ip("-n", ns, "addr", "add", f"{ipv4}/{IPV4_PREFIX}", "dev", ifname)
    if ipv6 is not None:
        _ip("-n", ns, "-6", "addr", "add", f"{ipv6}/{IPV6_PREFIX}", "dev", ifname, "nodad")
    _ip("-n", ns, "link", "set", ifname, "up")
    if not offloads:
        argv = ["ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off"]
        res = subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if res.returncode != 0:
            raise NetnsError(f"ethtool -K {ifname} in {ns}: {res.stderr.strip()}")
    return Endpoint(ns, ifname, ipv4, ipv6, mtu)


@contextlib.contextmanager
def veth_pair(
    *,
    mtu: int = 1500,
    ipv4: tuple[str, str] = DEFAULT_IPV4,
    ipv6: tuple[str, str] | None = DEFAULT_IPV6,
    offloads: bool = False,
    hosts: Mapping[str, str] | None = None,
) -> Iterator[VethPair]:
    """Two fresh namespaces ("client", "server") joined by a veth pair with the given MTU.

    - `ipv4`/`ipv6`: (client, server) addresses, /24 and /64. IPv6 needs `mtu >= 1280`; pass
      `ipv6=None` for smaller MTUs (ValueError otherwise, rather than a silently missing v6).
    - `offloads=False` (default) turns TSO/GSO/GRO off with ethtool: otherwise the kernel hands
      tcpdump one 64 KB "super-segment" and a capture never shows a hello split at the MTU.
    - `hosts`: name -> address entries visible to resolvers in both namespaces.
    Teardown (always): processes still inside are killed, namespaces and the veth deleted.
    """
    _check_link_args(mtu, ipv6, offloads)
    token = _unique_token()
    c_ns, s_ns = f"j3{token}c", f"j3{token}s"
    with contextlib.ExitStack() as stack:
        for name in (c_ns, s_ns):
            stack.enter_context(_namespace(name, hosts))
        _veth(c_ns, c_ns, s_ns, s_ns)
        v6 = ipv6 or (None, None)
        client = _configure(c_ns, c_ns, mtu, ipv4[0], v6[0], offloads)
        server = _configure(s_ns, s_ns, mtu, ipv4[1], v6[1], offloads)
        yield VethPair(client, server, mtu, dict(hosts or {}))


# Routed path addresses: two /24s with the router at .254 on both.
ROUTED_IPV4: tuple[str, str, str, str] = (
    "198.18.0.1",
    "198.18.0.254",
    "198.18.1.254",
    "198.18.1.2",
)


@dataclass(frozen=True)
class RoutedPath:
    """client --veth-- router --veth-- server; the router forwards IPv4 between them."""

    client: Endpoint
    router_client_side: Endpoint
    router_server_side: Endpoint
    server: Endpoint
    mtu: int
    hosts: Mapping[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def routed_path(
    *,
    mtu: int = 1500,
    offloads: bool = False,
    hosts: Mapping[str, str] | None = None,
) -> Iterator[RoutedPath]:
    """Three fresh namespaces: client, a forwarding router, server (IPv4 only).

    A middle hop lets a test drop or alter a packet *after* one capture point and before
    another (e.g. an nftables forward rule), which is how real out-of-order segments are made
    on a kernel without netem. Addresses: ROUTED_IPV4 (client, router x2, server).
    """
    _check_link_args(mtu, None, offloads)
    token = _unique_token()
    c_ns, r_ns, s_ns = f"j3{token}c", f"j3{token}r", f"j3{token}s"
    c_ip, rc_ip, rs_ip, s_ip = ROUTED_IPV4
    with contextlib.ExitStack() as stack:
        for name in (c_ns, r_ns, s_ns):
            stack.enter_context(_namespace(name, hosts))
        _veth(c_ns, c_ns, r_ns, f"{r_ns}c")
        _veth(r_ns, f"{r_ns}s", s_ns, s_ns)
        client = _configure(c_ns, c_ns, mtu, c_ip, None, offloads)
        r_client = _configure(r_ns, f"{r_ns}c", mtu, rc_ip, None, offloads)
        r_server = _configure(r_ns, f"{r_ns}s", mtu, rs_ip, None, offloads)
        server = _configure(s_ns, s_ns, mtu, s_ip, None, offloads)
        _ip("-n", c_ns, "route", "add", "default", "via", rc_ip)
        _ip("-n", s_ns, "route", "add", "default", "via", rs_ip)
        r_client.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], timeout=10)
        yield RoutedPath(client, r_client, r_server, server, mtu, dict(hosts or {}))

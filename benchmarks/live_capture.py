#!/usr/bin/env python3
"""Live capture benchmark: replay the benchmark capture onto a veth at rising rates.

For each rate, tcpreplay sends the capture (benchmarks/make_capture.py; its FILE.planted.json and
FILE.hellos.jsonl say which ClientHellos are in it) from one end of a veth pair, and on the other
end `ja3svc capture` (the real command, storing into a SQLite file) and tshark capture it, with
the same 64 MiB kernel buffer. ja3svc uses its default filter (client->server); tshark gets the
same ports in both directions, which its STARTTLS dissectors need. By default both capture the
same replay at once (as a sensor host would run them side by side); `--separate` gives each tool
a replay of its own, so they do not share the CPUs.

Timeliness: a sensor that finds every hello but reports it seconds late is of no use to the
policy service, which waits at most capture.correlation_wait_seconds (0.5 s) for the hello of a
login's connection, inside Dovecot's own 2 s auth-policy budget. So each step also measures the
lag: the time from the end of the replay (tcpreplay exits) until the tool has reported the last
planted hello it reports. The reader threads timestamp every output line as it arrives. tshark
(`-l`) prints one line per hello, so its lag is exact. ja3svc prints no line per hello; its JSON
metrics line (every METRICS_LOG_SECONDS) carries the engine's client-hello count, so its lag is
the arrival of the first metrics line showing the final count (an upper bound) and the last one
showing less is a lower bound. The lag is 0 when the last hello came before tcpreplay exited.

A tool passes a rate when every planted hello is found, with its JA3 (matched by source address,
source port and JA3 hash against FILE.hellos.jsonl), the kernel reports zero drops, and the lag
(ja3svc: its upper bound) is at most --max-lag seconds (default 2.0, Dovecot's budget). The
report also shows which steps pass without the lag bound (the earlier criterion), and each
tool's highest passing rate under both.

Rates are packets/s for tcpreplay --pps, or `max` for --topspeed (as fast as tcpreplay can send;
the figure reported is the rate tcpreplay prints). The capture is always preloaded (-K).

Runs as root; creates two network namespaces of its own (testbed/netns.py) and removes
them, and every process it started, on exit. Each step is bounded in time.

Tools: ja3svc (the Rust engine, the default), ja3svc-py (the same command with
JA3SVC_ENGINE=python) and tshark; --tools picks among them.

Usage: python benchmarks/live_capture.py [--packets 200000]
           [--rates 20000,50000,100000,200000,max] [--separate] [--buffer-mib 64]
           [--tools ja3svc,ja3svc-py,tshark] [--max-lag 2.0] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ja3svc.capture.live_source import default_filter  # noqa: E402
from ja3svc.config.settings import DEFAULT_CAPTURE_PORTS  # noqa: E402

from testbed.netns import Endpoint, veth_pair  # noqa: E402

DEFAULT_RATES = "20000,50000,100000,200000,max"
MAX_RATE = "max"  # tcpreplay --topspeed
START_TIMEOUT = 30.0  # seconds for a capture tool to report it is listening
DRAIN_TIMEOUT = 60.0  # after the replay: seconds for a tool to finish what it has buffered
STOP_TIMEOUT = 30.0
# Kernel buffer for both tools (ja3svc's default receive buffer). A buffer this size holds the
# client side of the whole 200k-packet replay, so only --buffer-mib small measures sustained
# processing speed rather than buffering.
BUFFER_MIB = 64
# ja3svc logs its metrics line (with the hello count the lag is read from) this often. The line
# also comes whenever the writer thread wakes for a record or its 1 s flush, so a short interval
# tightens the lower bound of ja3svc's lag; the upper bound can still trail by up to the flush
# interval.
METRICS_LOG_SECONDS = 0.1
MAX_LAG = 2.0  # seconds: Dovecot's auth-policy budget


@dataclass
class StepResult:
    tool: str
    rate: int | str  # packets/s requested, or MAX_RATE
    achieved_pps: float = 0.0
    planted: int = 0
    found: int = 0
    kernel_drops: int | None = None
    packets: int | None = None
    # Seconds from the end of the replay until the last planted hello was reported (None: none
    # reported). ja3svc: lag_seconds is an upper bound and lag_low_seconds a lower bound.
    lag_seconds: float | None = None
    lag_low_seconds: float | None = None
    # Until the end-of-drain check stopped the tool (includes its 2 s of stillness).
    seconds_after_replay: float = 0.0
    max_lag: float = MAX_LAG
    note: str = ""

    @property
    def complete(self) -> bool:
        """The criterion without the lag bound: every planted hello, no kernel drops."""
        return self.found == self.planted and self.kernel_drops == 0

    @property
    def passed(self) -> bool:
        return self.complete and self.lag_seconds is not None and self.lag_seconds <= self.max_lag


@dataclass
class Planted:
    keys: set[tuple[str, int, str]] = field(default_factory=set)

    @classmethod
    def load(cls, pcap: Path) -> Planted:
        out = cls()
        with open(pcap.with_name(pcap.name + ".hellos.jsonl")) as fh:
            for line in fh:
                h = json.loads(line)
                md5 = hashlib.md5(h["ja3"].encode()).hexdigest()
                out.keys.add((_norm(h["src"]), int(h["sport"]), md5))
        return out


def _norm(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


# --- the two capture tools ---------------------------------------------------------------------


class _Lines:
    """Collects a process's output lines in a thread: counts them all, keeps the ones `keep`
    accepts, each with its arrival time (time.monotonic())."""

    def __init__(self, stream: object, keep: Callable[[str], bool]) -> None:
        self.count = 0
        self.kept: list[str] = []
        self.times: list[float] = []  # arrival of each kept line
        self._keep = keep
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            now = time.monotonic()
            line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            self.count += 1
            if self._keep(line):
                self.times.append(now)
                self.kept.append(line)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


def _lag(t: float | None, replay_done: float) -> float | None:
    return None if t is None else round(max(0.0, t - replay_done), 2)


def _wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Ja3svcRun:
    name = "ja3svc"
    engine = "native"  # JA3SVC_ENGINE: the Rust engine, fed whole ring blocks

    def __init__(self, ep: Endpoint, work: Path, bpf: str) -> None:
        self.db = work / f"{self.name}.sqlite3"
        (work / self.name).mkdir(exist_ok=True)  # its own data directory (spool)
        env = {
            **os.environ,
            "JA3SVC_ENGINE": self.engine,
            "JA3SVC_DATA_DIR": str(work / self.name),
            "JA3SVC_CAPTURE__METRICS_LOG_SECONDS": str(METRICS_LOG_SECONDS),
            "JA3SVC_CAPTURE__RECEIVE_BUFFER_BYTES": str(BUFFER_MIB << 20),
        }
        argv = ["ja3svc", "capture", "-i", ep.ifname, "-f", bpf, "--sensor", "bench",
                "--database-url", f"sqlite:///{self.db}"]  # fmt: skip
        self.proc = ep.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)  # fmt: skip
        self.err = _Lines(self.proc.stderr, lambda line: line.startswith("{"))

    def ready(self) -> bool:
        return any("capture started" in x for x in self.err.kept) or self.proc.poll() is not None

    def _last(self, msg: str) -> dict[str, int] | None:
        for line in reversed(self.err.kept):
            if f'"msg":"{msg}"' in line:
                return json.loads(line)
        return None

    def progress(self) -> int:
        m = self._last("capture metrics")
        return int(m["packets"]) + int(m["write_queue"]) * 1_000_000 if m else -1

    def lag(self, result: StepResult, replay_done: float, planted: Planted) -> None:
        """Lag from the metrics lines: the engine's client-hello count, timestamped on arrival.
        Upper bound: the first line showing the highest count; lower bound: the last before it
        showing less (the hello was not processed yet when that line's metrics were read)."""
        seen = [
            (t, int(json.loads(line).get("hellos", 0)))
            for t, line in zip(self.err.times, self.err.kept, strict=True)
            if '"msg":"capture metrics"' in line
        ]
        final = max((h for _, h in seen), default=0)
        if not final:
            return
        first = next(i for i, (_, h) in enumerate(seen) if h == final)
        result.lag_seconds = _lag(seen[first][0], replay_done)
        result.lag_low_seconds = _lag(seen[first - 1][0], replay_done) if first else 0.0

    def finish(self, result: StepResult, planted: Planted) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.err.join(10)
        final = self._last("capture stopped") or {}
        result.kernel_drops = final.get("kernel_drops")
        result.packets = final.get("packets")
        if final.get("userspace_drops"):
            result.note = f"userspace_drops {final['userspace_drops']}"
        found: set[tuple[str, int, str]] = set()
        if self.db.exists():
            with contextlib.closing(sqlite3.connect(self.db)) as conn:
                for src, sport, ja3 in conn.execute(
                    "SELECT src, sport, ja3_hash FROM sightings WHERE hello = 'client'"
                ):
                    found.add((_norm(src), int(sport), ja3))
        result.found = len(found & planted.keys)


class Ja3svcPythonRun(Ja3svcRun):
    """The same command on the pure-Python engine (one call per packet): the fallback where
    the extension is absent, for comparison."""

    name = "ja3svc-py"
    engine = "python"


class TsharkRun:
    name = "tshark"

    def __init__(self, ep: Endpoint, work: Path, bpf: str) -> None:
        # Both directions of the same ports: tshark's STARTTLS dissectors need the server's
        # reply ("OK Begin TLS") to know TLS follows; ja3svc detects the hello by content.
        bpf = bpf.replace("dst port", "port")
        argv = ["tshark", "-n", "-l", "-i", ep.ifname, "-B", str(BUFFER_MIB), "-f", bpf,
                "-Y", "tls.handshake.type==1", "-T", "fields", "-e", "ip.src", "-e", "ipv6.src",
                "-e", "tcp.srcport", "-e", "tls.handshake.ja3"]  # fmt: skip
        self.proc = ep.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)  # fmt: skip
        self.out = _Lines(self.proc.stdout, lambda line: True)
        self.err = _Lines(self.proc.stderr, lambda line: True)

    def ready(self) -> bool:
        return any("Capturing on" in x for x in self.err.kept) or self.proc.poll() is not None

    def progress(self) -> int:
        return self.out.count

    @staticmethod
    def _keys(line: str) -> list[tuple[str, int, str]]:
        f = line.rstrip("\n").split("\t")
        if len(f) < 4 or not f[3]:
            return []
        src = _norm((f[0] or f[1]).split(",")[0])
        sport = int(f[2].split(",")[0] or 0)
        return [(src, sport, h) for h in f[3].split(",")]

    def lag(self, result: StepResult, replay_done: float, planted: Planted) -> None:
        """Lag from the arrival of the last stdout line (one per hello) with a planted hello."""
        last = None
        for t, line in zip(self.out.times, self.out.kept, strict=True):
            if any(k in planted.keys for k in self._keys(line)):
                last = t
        result.lag_seconds = result.lag_low_seconds = _lag(last, replay_done)

    def finish(self, result: StepResult, planted: Planted) -> None:
        _stop(self.proc, signal.SIGINT)
        self.out.join(10)
        self.err.join(10)
        text = "".join(self.err.kept)
        m = re.search(r"(\d+) packets? dropped", text)
        result.kernel_drops = int(m.group(1)) if m else 0
        found = {k for line in self.out.kept for k in self._keys(line)}
        result.found = len(found & planted.keys)


TOOLS: dict[str, Callable[[Endpoint, Path, str], Ja3svcRun | TsharkRun]] = {
    "ja3svc": Ja3svcRun,
    "ja3svc-py": Ja3svcPythonRun,
    "tshark": TsharkRun,
}


# --- one step ------------------------------------------------------------------------------------


def replay(ep: Endpoint, pcap: Path, rate: int | str, packets: int) -> float:
    """tcpreplay the capture at `rate` packets/s, or as fast as it can (MAX_RATE: --topspeed);
    returns the rate tcpreplay reports. -K preloads the whole file before sending."""
    speed = ["--topspeed"] if rate == MAX_RATE else ["--pps", str(rate)]
    timeout = packets / (100_000 if rate == MAX_RATE else int(rate)) * 4 + 60
    res = ep.run(["tcpreplay", "-q", "-K", "-i", ep.ifname, *speed, str(pcap)],
                 timeout=timeout, check=False)  # fmt: skip
    m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", res.stdout + res.stderr)
    if res.returncode != 0:
        print(f"  tcpreplay exit {res.returncode}: {res.stderr.strip()[-300:]}", file=sys.stderr)
    return float(m.group(1)) if m else 0.0


def run_step(
    net: object,
    pcap: Path,
    planted: Planted,
    rate: int | str,
    tools: list[str],
    packets: int,
    bpf: str,
    max_lag: float,
) -> list[StepResult]:
    work = Path(tempfile.mkdtemp(prefix=f"j3live-{rate}-", dir="/tmp"))
    runs: list[Ja3svcRun | TsharkRun] = []
    try:
        for name in tools:
            runs.append(TOOLS[name](net.client, work, bpf))  # type: ignore[attr-defined]
        for r in runs:
            if not _wait_for(r.ready, START_TIMEOUT) or r.proc.poll() is not None:
                raise RuntimeError(f"{r.name} did not start")
        time.sleep(0.5)
        achieved = replay(net.server, pcap, rate, packets)  # type: ignore[attr-defined]
        replay_done = time.monotonic()
        results = []
        for r in runs:
            # Done when the tool's progress has not moved for two seconds (bounded).
            last, still_since = r.progress(), time.monotonic()
            deadline = replay_done + DRAIN_TIMEOUT
            while time.monotonic() < deadline and time.monotonic() - still_since < 2.0:
                time.sleep(0.25)
                now = r.progress()
                if now != last:
                    last, still_since = now, time.monotonic()
            res = StepResult(r.name, rate, achieved, len(planted.keys), max_lag=max_lag)
            res.seconds_after_replay = round(time.monotonic() - replay_done, 2)
            r.finish(res, planted)
            r.lag(res, replay_done, planted)
            results.append(res)
        return results
    finally:
        for r in runs:
            _stop(r.proc, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def _lag_text(res: StepResult) -> str:
    if res.lag_seconds is None:
        return "-"
    if res.lag_low_seconds is not None and res.lag_low_seconds != res.lag_seconds:
        return f"{res.lag_low_seconds}-{res.lag_seconds}s"
    return f"{res.lag_seconds}s"


def main(argv: list[str] | None = None) -> int:
    global BUFFER_MIB  # the tool classes read it; one run, one buffer size
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--pcap", type=Path, help="existing capture (default: made and cached)")
    ap.add_argument("--rates", default=DEFAULT_RATES, help=f"packets/s, or {MAX_RATE}")
    ap.add_argument("--tools", default="ja3svc,tshark")
    ap.add_argument("--separate", action="store_true", help="one replay per tool and rate")
    ap.add_argument("--json", type=Path, help="write every step's figures here")
    ap.add_argument("--buffer-mib", type=int, default=BUFFER_MIB, help="kernel buffer per tool")
    ap.add_argument("--max-lag", type=float, default=MAX_LAG,
                    help="seconds after the replay by which the last hello must be reported "
                    "(default: Dovecot's 2 s auth-policy budget)")  # fmt: skip
    args = ap.parse_args(argv)
    BUFFER_MIB = args.buffer_mib
    if os.geteuid() != 0:
        print("needs root (network namespaces, tcpreplay)", file=sys.stderr)
        return 1
    for exe in ("tcpreplay", "ja3svc", *(["tshark"] if "tshark" in args.tools else [])):
        if shutil.which(exe) is None:
            print(f"{exe} not found (apt-get install tcpreplay tshark; pip install -e .)")
            return 1
    pcap = args.pcap or Path(tempfile.gettempdir()) / f"ja3svc-live-{args.packets}.pcap"
    if not pcap.exists() or not pcap.with_name(pcap.name + ".hellos.jsonl").exists():
        print(f"making {pcap} ({args.packets} packets) ...", flush=True)
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_capture.py"), "--packets",
                        str(args.packets), "--out", str(pcap), "--quiet"], check=True,
                       timeout=1800)  # fmt: skip
    meta = json.loads(pcap.with_name(pcap.name + ".planted.json").read_text())
    planted = Planted.load(pcap)
    rates: list[int | str] = [
        MAX_RATE if r.strip() == MAX_RATE else int(r) for r in args.rates.split(",") if r.strip()
    ]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bpf = default_filter(DEFAULT_CAPTURE_PORTS)
    print(f"capture {pcap.name}: {meta['packets']} packets, {len(planted.keys)} planted hellos "
          f"({meta['multi_segment']} multi-segment); filter: {bpf}; "
          f"{'separate replays' if args.separate else 'both tools on the same replay'}; "
          f"{os.cpu_count()} CPUs; kernel buffer {BUFFER_MIB} MiB; max lag {args.max_lag}s",
          flush=True)  # fmt: skip
    results: list[StepResult] = []
    # MTU 9000: the replayed frames are up to 1514 bytes plus tags; a sniffer does not care.
    with veth_pair(mtu=9000, ipv6=None) as net:
        for rate in rates:
            groups = [[t] for t in tools] if args.separate else [tools]
            for group in groups:
                steps = run_step(net, pcap, planted, rate, group, meta["packets"], bpf,
                                 args.max_lag)  # fmt: skip
                for res in steps:
                    results.append(res)
                    print(f"  {res.tool:<9} {rate:>7} requested, {res.achieved_pps:>9,.0f} pps "
                          f"sent: {res.found}/{res.planted} hellos, kernel drops "
                          f"{res.kernel_drops}, packets {res.packets}, lag {_lag_text(res)}, "
                          f"stopped {res.seconds_after_replay}s after replay {res.note} "
                          f"{'PASS' if res.passed else 'FAIL'} (without lag bound: "
                          f"{'PASS' if res.complete else 'FAIL'})", flush=True)  # fmt: skip
    for title, ok in (
        (f"100% of planted hellos, zero kernel drops, lag <= {args.max_lag}s", "passed"),
        ("100% of planted hellos, zero kernel drops (no lag bound)", "complete"),
    ):
        print(f"highest rate with {title}:")
        for tool in tools:
            best = max(
                (r for r in results if r.tool == tool and getattr(r, ok)),
                key=lambda r: r.achieved_pps,
                default=None,
            )
            text = f"{best.rate} requested, {best.achieved_pps:,.0f} pps sent" if best else "none"
            print(f"  {tool:<9} {text}")
    if args.json:
        rows = [{**asdict(r), "complete": r.complete, "passed": r.passed} for r in results]
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

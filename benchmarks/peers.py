"""The tools compared in the pcap throughput benchmark: how to find, install, run and score each.

Each tool is run as a child process with stdout/stderr sent to files (so a pipe never throttles
it). Peak RSS needs care: Linux carries the parent's peak RSS into a vfork()ed child across exec,
so os.wait4's ru_maxrss never reads below this script's own peak. The child's VmHWM in
/proc/PID/status (a fresh counter after exec) is therefore sampled while it runs, and wait4's
figure is only used when it exceeds what the parent itself could have contributed.
Hellos are then read back from the tool's output and matched to the planted ones by the client's
(address, port), which is unique per connection in the generated capture.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
PYJA3_VENV = CACHE / "venv-pyja3"

# Suricata only needs a few non-default settings; everything else keeps its built-in default.
# IMAP is detection-only in Suricata 7 (it has no IMAP parser), so STARTTLS on 143 is not followed:
# that is Suricata's behaviour, measured as such, not a configuration slip.
SURICATA_YAML = """%YAML 1.1
---
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - tls:
            extended: yes
app-layer:
  protocols:
    tls:
      enabled: yes
      detection-ports:
        dp: 443
      ja3-fingerprints: yes
    smtp:
      enabled: yes
    imap:
      enabled: detection-only
"""

BACKPORTS_LINE = "deb http://deb.debian.org/debian bookworm-backports main"
BACKPORTS_FILE = Path("/etc/apt/sources.list.d/bookworm-backports.list")


@dataclass
class Found:
    """One ClientHello a tool reported: the client's endpoint and the JA3 MD5 (if any)."""

    src: str
    sport: int
    ja3_hash: str | None


@dataclass
class Run:
    """Result of one tool run on the capture."""

    tool: str
    status: str  # ok | failed | timeout | not installed | skipped
    detail: str = ""
    command: list[str] = field(default_factory=list)
    wall_s: float | None = None
    user_s: float | None = None
    sys_s: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    version: str = ""
    load_before: float | None = None  # 1-minute load average: other work on the machine
    found: list[Found] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    install: str  # the command that installs it, printed when it is missing
    locate: Callable[[], list[str] | None]  # argv prefix, or None when not installed
    argv: Callable[[list[str], Path, Path], list[str]]  # (prefix, pcap, workdir) -> argv
    parse: Callable[[Path], Iterator[Found]]  # workdir -> hellos found
    version: Callable[[list[str]], str]
    setup: Callable[[], None] | None = None


def norm_ip(text: str) -> str:
    """Suricata writes IPv6 addresses fully expanded; compare in canonical form."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


# -- ja3svc --------------------------------------------------------------------------------------


def _ja3svc_locate() -> list[str] | None:
    exe = shutil.which("ja3svc")
    return [exe] if exe else None


def _ja3svc_parse(work: Path) -> Iterator[Found]:
    with (work / "stdout").open(errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("hello") == "client":
                yield Found(norm_ip(str(rec.get("src"))), int(rec.get("sport") or 0),
                            rec.get("ja3_hash"))


def _ja3svc_version(prefix: list[str]) -> str:
    try:
        from importlib.metadata import version

        return f"ja3svc {version('ja3svc')}"
    except Exception:
        return "ja3svc"


def _ja3svc_native_locate() -> list[str] | None:
    # The Rust engine is part of the install when a Rust toolchain was there to build it.
    try:
        from ja3svc import _native  # noqa: F401
    except ImportError:
        return None
    return _ja3svc_locate()


# The Rust engine (the default of `ja3svc pcap` when built) and the pure-Python reference
# engine, each asked for by name so that the figures do not depend on the default.
JA3SVC = Tool(
    name="ja3svc",
    install="pip install -e .   (from the repository root, with a Rust toolchain)",
    locate=_ja3svc_native_locate,
    argv=lambda p, pcap, work: [*p, "pcap", "--engine", "native", str(pcap)],
    parse=_ja3svc_parse,
    version=lambda prefix: _ja3svc_version(prefix) + " (Rust engine)",
)
JA3SVC_PY = Tool(
    name="ja3svc-py",
    install="pip install -e .   (from the repository root)",
    locate=_ja3svc_locate,
    argv=lambda p, pcap, work: [*p, "pcap", "--engine", "python", str(pcap)],
    parse=_ja3svc_parse,
    version=lambda prefix: _ja3svc_version(prefix) + " (Python engine)",
)


# -- pyja3 (salesforce ja3.py on PyPI) -------------------------------------------------------------


def _pyja3_locate() -> list[str] | None:
    exe = PYJA3_VENV / "bin" / "ja3"
    return [str(exe)] if exe.exists() else None


def _pyja3_setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(PYJA3_VENV)], check=True)
    subprocess.run([str(PYJA3_VENV / "bin" / "pip"), "install", "-q", "pyja3", "dpkt"],
                   check=True)


def _pyja3_parse(work: Path) -> Iterator[Found]:
    # `ja3 --json` prints one JSON array at the end (it keeps every result in memory until then).
    text = (work / "stdout").read_text(errors="replace").strip()
    if not text:
        return
    for rec in json.loads(text):
        yield Found(norm_ip(rec["source_ip"]), int(rec["source_port"]), rec.get("ja3_digest"))


def _pyja3_version(prefix: list[str]) -> str:
    py = PYJA3_VENV / "bin" / "python"
    code = ("from importlib.metadata import version as v; "
            "print('pyja3', v('pyja3'), '+ dpkt', v('dpkt'))")
    return _first_line([str(py), "-c", code])


PYJA3 = Tool(
    name="pyja3",
    install=f"python3 -m venv {PYJA3_VENV} && {PYJA3_VENV}/bin/pip install pyja3 dpkt "
            "(or: python benchmarks/pcap_throughput.py --setup)",
    locate=_pyja3_locate,
    # --any_port: otherwise it looks at port 443 only and would skip the mail ports by design.
    argv=lambda p, pcap, work: [*p, "--any_port", "--json", str(pcap)],
    parse=_pyja3_parse,
    version=_pyja3_version,
    setup=_pyja3_setup,
)


# -- tshark --------------------------------------------------------------------------------------


def _tshark_locate() -> list[str] | None:
    exe = shutil.which("tshark")
    return [exe] if exe else None


def _tshark_parse(work: Path) -> Iterator[Found]:
    with (work / "stdout").open(errors="replace") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) < 4:
                continue
            src = f[0] or f[1]
            # A frame that completes several hellos lists each field comma-separated.
            for h in (f[3].split(",") if f[3] else [None]):
                yield Found(norm_ip(src.split(",")[0]), int(f[2].split(",")[0] or 0), h)


TSHARK = Tool(
    name="tshark",
    install="apt-get install -y tshark",
    locate=_tshark_locate,
    # The 4-tuple fields cost little and let hellos be matched to the planted ones.
    argv=lambda p, pcap, work: [*p, "-n", "-r", str(pcap), "-Y", "tls.handshake.type==1",
                                "-T", "fields", "-e", "ip.src", "-e", "ipv6.src",
                                "-e", "tcp.srcport", "-e", "tls.handshake.ja3"],
    parse=_tshark_parse,
    version=lambda p: _first_line([*p, "-v"]),
)


# -- Suricata ------------------------------------------------------------------------------------


def _suricata_locate() -> list[str] | None:
    exe = shutil.which("suricata")
    return [exe] if exe else None


def _suricata_setup() -> None:
    sources = "\n".join(p.read_text(errors="replace") for p in
                        [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
                        if p.is_file())
    if "bookworm-backports" not in sources:
        BACKPORTS_FILE.write_text(BACKPORTS_LINE + "\n")
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "-t", "bookworm-backports", "suricata"],
                   check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _suricata_argv(prefix: list[str], pcap: Path, work: Path) -> list[str]:
    conf = work / "suricata.yaml"
    conf.write_text(SURICATA_YAML)
    # -S /dev/null: no rules (fingerprinting only, the default rule path may not exist).
    return [*prefix, "-c", str(conf), "-r", str(pcap), "-l", str(work), "-S", "/dev/null"]


def _suricata_parse(work: Path) -> Iterator[Found]:
    eve = work / "eve.json"
    if not eve.exists():
        return
    with eve.open(errors="replace") as fh:
        for line in fh:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event_type") != "tls":
                continue
            ja3 = (ev.get("tls") or {}).get("ja3") or {}
            if not ja3.get("hash"):
                continue  # a TLS flow whose ClientHello Suricata did not fingerprint
            yield Found(norm_ip(ev["src_ip"]), int(ev["src_port"]), ja3["hash"])


SURICATA = Tool(
    name="suricata",
    install=f"echo '{BACKPORTS_LINE}' > {BACKPORTS_FILE} && apt-get update && "
            "apt-get install -y -t bookworm-backports suricata "
            "(or: python benchmarks/pcap_throughput.py --setup)",
    locate=_suricata_locate,
    argv=_suricata_argv,
    parse=_suricata_parse,
    version=lambda p: _first_line([*p, "-V"]),
    setup=_suricata_setup,
)

TOOLS: dict[str, Tool] = {t.name: t for t in (JA3SVC, JA3SVC_PY, PYJA3, TSHARK, SURICATA)}


# -- running -------------------------------------------------------------------------------------


def run_tool(tool: Tool, pcap: Path, work: Path, timeout_s: float) -> Run:
    """Run one tool on `pcap` in a fresh `work` dir; wall time, CPU and peak RSS of the child."""
    prefix = tool.locate()
    if prefix is None:
        return Run(tool.name, "not installed", f"install with: {tool.install}")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    argv = tool.argv(prefix, pcap, work)
    run = Run(tool.name, "ok", command=argv, version=tool.version(prefix),
              load_before=os.getloadavg()[0])
    with (work / "stdout").open("wb") as out, (work / "stderr").open("wb") as err:
        parent_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        hwm_kib = 0
        started = time.monotonic()
        # A new session so that a timeout can end the tool and anything it started, by its id.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm_kib = max(hwm_kib, _vm_hwm_kib(proc.pid))
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                run.status = "timeout"
                run.detail = f"killed after {timeout_s:.0f} s"
                break
            time.sleep(0.025)  # VmHWM is a high-water mark: sparse sampling loses little
        run.wall_s = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    run.exit_code = proc.returncode
    run.user_s, run.sys_s = usage.ru_utime, usage.ru_stime
    peak_kib = hwm_kib
    if usage.ru_maxrss > parent_peak_kib:  # then it is the child's own high-water mark
        peak_kib = max(peak_kib, usage.ru_maxrss)
    run.peak_rss_mb = peak_kib / 1024
    if run.status == "ok" and run.exit_code != 0:
        run.status = "failed"
        run.detail = f"exit {run.exit_code}: {_tail(work / 'stderr')}"
    try:
        run.found = list(tool.parse(work))
    except Exception as exc:  # a tool's unparseable output is a result to report, not a crash
        if run.status == "ok":
            run.status = "failed"
        run.detail = (run.detail + f"; output not parseable: {exc!r}").lstrip("; ")
    return run


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tail(path: Path, limit: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-limit:]

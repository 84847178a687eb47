#!/usr/bin/env python3
"""Throughput benchmark: `ja3svc pcap` against pyja3, tshark and Suricata on one large capture.

Makes (once, cached in benchmarks/.cache/) a deterministic mixed capture with a known number of
planted ClientHellos (see make_capture.py), then runs every tool on that same file in this one
session, one after the other, and reports for each: wall time, packets/s, MB/s, ClientHellos
found versus planted (all, and multi-segment ones), how many of the found hellos carry the JA3
hash the generator computed itself, peak RSS, and how many times faster ja3svc is.

Missing tools are reported as "not installed" with the command that installs them; `--setup`
installs pyja3 (own virtualenv) and Suricata 7 (Debian bookworm-backports).

Usage: python benchmarks/pcap_throughput.py [--packets N] [--tools ja3svc,pyja3,tshark,suricata]
       [--timeout SECONDS] [--repeat N] [--json-out FILE] [--setup] [--capture FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_capture  # a sibling script, not a package: found through sys.path above
import peers

REFERENCE = "ja3svc"


def capture_for(packets: int, seed: int) -> Path:
    """The cached capture for (packets, seed), generated when missing or stale."""
    peers.CACHE.mkdir(parents=True, exist_ok=True)
    out = peers.CACHE / f"mixed-{packets}-s{seed}-v{make_capture.GENERATOR_VERSION}.pcap"
    side = make_capture.sidecar_path(out)
    if out.exists() and side.exists() and make_capture.hellos_path(out).exists():
        meta = json.loads(side.read_text())
        if meta.get("bytes") == out.stat().st_size:
            return out
    print(f"generating {out} ({packets:,} packets, seed {seed}) ...", file=sys.stderr)
    started = time.monotonic()
    make_capture.generate(out, packets, seed)
    print(f"generated in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return out


def warm_page_cache(path: Path) -> None:
    """Read the file once so the first tool does not pay for the disk and the others not."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def score(run: peers.Run, planted: list[dict[str, object]]) -> dict[str, object]:
    """Match a tool's hellos to the planted ones by client endpoint; count JA3 agreement."""
    expected = {
        (str(h["src"]), int(h["sport"])): h for h in planted  # type: ignore[call-overload]
    }
    seen: dict[tuple[str, int], str | None] = {}
    extra = 0
    for f in run.found:
        key = (f.src, f.sport)
        if key in expected:
            seen.setdefault(key, f.ja3_hash)
        else:
            extra += 1
    multi_total = sum(1 for h in planted if int(h["segments"]) > 1)  # type: ignore[call-overload]
    multi_found = sum(1 for k in seen if int(expected[k]["segments"]) > 1)  # type: ignore[call-overload]
    ja3_ok = sum(1 for k, got in seen.items()
                 if got == hashlib.md5(str(expected[k]["ja3"]).encode()).hexdigest())
    missed_by_port: dict[str, int] = {}
    missed_v6 = 0
    for k, h in expected.items():
        if k not in seen:
            port = str(h["dport"])
            missed_by_port[port] = missed_by_port.get(port, 0) + 1
            missed_v6 += bool(h["v6"])
    return {
        "hellos_reported": len(run.found),
        "hellos_found": len(seen),
        "hellos_multi_segment_found": multi_found,
        "hellos_multi_segment_planted": multi_total,
        "ja3_hash_correct": ja3_ok,
        "hellos_not_planted": extra,
        "missed_by_port": dict(sorted(missed_by_port.items(), key=lambda kv: int(kv[0]))),
        "missed_ipv6": missed_v6,
    }


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=make_capture.DEFAULT_PACKETS)
    ap.add_argument("--seed", type=int, default=make_capture.DEFAULT_SEED)
    ap.add_argument("--tools", default=",".join(peers.TOOLS),
                    help="comma-separated subset of: " + ", ".join(peers.TOOLS))
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per tool run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per tool; the fastest is reported (use 3 on a busy machine)")
    ap.add_argument("--json-out", type=Path, default=peers.CACHE / "pcap_throughput.json")
    ap.add_argument("--setup", action="store_true",
                    help="install missing peers first (pyja3 venv; Suricata from backports)")
    ap.add_argument("--capture", type=Path,
                    help="use this capture (needs its .planted.json and .hellos.jsonl)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = [n for n in names if n not in peers.TOOLS]
    if unknown:
        ap.error(f"unknown tool(s): {', '.join(unknown)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    if args.setup:
        for n in names:
            tool = peers.TOOLS[n]
            if tool.setup and tool.locate() is None:
                print(f"setting up {n} ...", file=sys.stderr)
                tool.setup()

    pcap = args.capture.resolve() if args.capture else capture_for(args.packets, args.seed)
    meta = json.loads(make_capture.sidecar_path(pcap).read_text())
    packets, size = int(meta["packets"]), pcap.stat().st_size
    print(f"capture: {pcap}\n  {packets:,} packets, {size / 1e6:,.1f} MB, "
          f"{meta['client_hellos']:,} planted ClientHellos ({meta['single_segment']:,} single-, "
          f"{meta['multi_segment']:,} multi-segment; {meta['ipv6']:,} over IPv6; "
          f"{meta['starttls']:,} after STARTTLS)", file=sys.stderr)
    warm_page_cache(pcap)

    # Repetitions go round-robin over the tools, so that load from elsewhere on the machine
    # spreads over all of them; each tool then keeps its fastest run (the least disturbed one).
    best: dict[str, peers.Run] = {}
    walls: dict[str, list[float]] = {n: [] for n in names}
    peaks: dict[str, float] = {}
    for rep in range(args.repeat):
        for n in names:
            if rep and best[n].status != "ok":
                continue  # not installed, failed or timed out: once is enough
            print(f"running {n} ({rep + 1}/{args.repeat}) ...", file=sys.stderr)
            run = peers.run_tool(peers.TOOLS[n], pcap, peers.CACHE / "runs" / n, args.timeout)
            print(f"  {run.status} {fmt(run.wall_s, '.1f')} s {run.detail}", file=sys.stderr)
            if run.wall_s is not None:
                walls[n].append(round(run.wall_s, 3))
            peaks[n] = max(peaks.get(n, 0.0), run.peak_rss_mb or 0.0)
            if n not in best or (run.status == "ok" and run.wall_s is not None
                                 and run.wall_s < (best[n].wall_s or float("inf"))):
                best[n] = run
    runs = [best[n] for n in names]
    for run in runs:
        if run.peak_rss_mb is not None:
            run.peak_rss_mb = peaks[run.tool]  # the worst peak over all repetitions

    # Loaded only now, to keep this process small while the tools run (see peers.run_tool).
    with make_capture.hellos_path(pcap).open() as fh:
        planted = [json.loads(line) for line in fh]
    ours = next((r for r in runs if r.tool == REFERENCE and r.status == "ok" and r.wall_s), None)
    rows = []
    for run in runs:
        row: dict[str, object] = {k: v for k, v in asdict(run).items() if k != "found"}
        row["wall_s_all_runs"] = walls[run.tool]
        if run.wall_s and run.status in ("ok", "failed", "timeout"):
            row["packets_per_s"] = packets / run.wall_s
            row["mb_per_s"] = size / 1e6 / run.wall_s
            row.update(score(run, planted))
            row["hellos_found_percent"] = 100 * int(row["hellos_found"]) / max(1, len(planted))
            if ours and ours.wall_s:
                # ours/theirs in packets/s, i.e. their wall time over ours on the same file.
                row["speedup_ours_vs_this"] = run.wall_s / ours.wall_s
        rows.append(row)

    print_table(rows, len(planted), meta)
    result = {
        "capture": {"path": str(pcap), **meta},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timeout_s": args.timeout,
        "runs": rows,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {args.json_out}")
    return 0


def print_table(rows: list[dict[str, object]], planted: int, meta: dict[str, object]) -> None:
    head = ("tool", "status", "wall s", "cpu s", "packets/s", "MB/s", "hellos found", "%",
            "multi-seg", "JA3 ok", "peak RSS MB", "ours x")
    lines = [head]
    for r in rows:
        found = r.get("hellos_found")
        lines.append((
            str(r["tool"]),
            str(r["status"]),
            fmt(r.get("wall_s"), ".1f"),  # type: ignore[arg-type]
            "-" if r.get("user_s") is None else
            f"{float(r['user_s']) + float(r['sys_s']):.1f}",  # type: ignore[arg-type]
            fmt(r.get("packets_per_s"), ",.0f"),  # type: ignore[arg-type]
            fmt(r.get("mb_per_s"), ".1f"),  # type: ignore[arg-type]
            "-" if found is None else f"{found:,}/{planted:,}",
            fmt(r.get("hellos_found_percent"), ".1f"),  # type: ignore[arg-type]
            "-" if found is None else
            f"{r['hellos_multi_segment_found']:,}/{r['hellos_multi_segment_planted']:,}",
            "-" if found is None else f"{r['ja3_hash_correct']:,}",
            fmt(r.get("peak_rss_mb"), ",.0f"),  # type: ignore[arg-type]
            fmt(r.get("speedup_ours_vs_this"), ".2f"),  # type: ignore[arg-type]
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for i, line in enumerate(lines):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(line, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nplanted: {planted:,} ClientHellos in {meta['packets']:,} packets "
          f"({meta['client_hellos_percent_of_packets']}%), "
          f"{meta['multi_segment']:,} multi-segment; 'ours x' = ja3svc packets/s over the tool's")
    loads = ", ".join(f"{r['tool']} {r['load_before']:.2f}" for r in rows
                      if r.get("load_before") is not None)
    print(f"1-min load average before each run ({os.cpu_count()} CPUs; well above 0 means other "
          f"work competed for them): {loads}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['tool']}: {r['status']}: {r['detail']}")
        elif r.get("hellos_not_planted"):
            print(f"{r['tool']}: {r['hellos_not_planted']} reported hellos match no planted one")
        if r.get("missed_by_port"):
            print(f"{r['tool']}: missed by port {r['missed_by_port']}, "
                  f"{r['missed_ipv6']} of them over IPv6")


if __name__ == "__main__":
    sys.exit(main())

"""Load benchmark of `ja3svc serve` against a constant-response uvicorn app (127.0.0.1 only).

    python benchmarks/policy_load.py [--rates 250,500,1000] [--seconds 5] [--labels 1000000]
                                     [--workers 2]

1. Starts `ja3svc serve` (temporary SQLite database, one worker) and benchmarks/constant_app.py
   under the same uvicorn, each on a free port.
2. Fixed-rate steps: Dovecot-shaped logins (allow, allow, report with a 2.4 body carrying
   attrs/ja3) sent open-loop over keep-alive connections; latency is measured from the moment a
   request was due, so a stalled server cannot hide queueing (no coordinated omission). Each step
   is bounded in requests and time.
3. Peak throughput of both with wrk (Debian package) and a Lua script, and the ratio.
4. With --workers N > 1 (default 2), a second `ja3svc serve --workers N` on the same database:
   the highest fixed rate and wrk peak again, and the peak of the constant app with N workers
   (its like-for-like peer). Each worker has its own caches, so more requests reach the
   database than with one worker.
5. Bulk-inserts --labels labels, then measures the store's lookup latency and the 1,000 req/s
   step again with hashes drawn from the labelled set: lookups must not slow down.

Prints a table; asserts nothing (timings are for people, not for CI).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.processes import free_port, stop, wait_port  # noqa: E402 (needs ROOT)

API_KEY = "bench-key"
CONNECTIONS = 32


def server_implementation(http: str) -> str:
    """What uvicorn runs both apps with (``--http``; "auto" takes httptools when installed, as
    it is with ja3svc): the figures depend on it."""
    import importlib.util

    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"http={http} loop={loop}"


def rand_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def login_requests(rng: random.Random, hashes: list[str], n: int) -> list[bytes]:
    """``n`` raw HTTP requests forming whole logins: allow, allow, report (Dovecot's order)."""
    out: list[bytes] = []
    i = 0
    while len(out) < n:
        i += 1
        ja3 = rng.choice(hashes)
        attrs = {
            "attrs": {"ja3": ja3},
            "device_id": "",
            "fail_type": "",
            "login": f"user{rng.randrange(10_000)}",
            "protocol": "imap",
            "pwhash": "0c54",
            "remote": "127.0.0.1",
            "session_id": f"s{rng.getrandbits(64):x}{i}",
        }
        allow = json.dumps({**attrs, "tls": True}, separators=(",", ":")).encode()
        report = json.dumps(
            {**attrs, "success": True, "policy_reject": False, "tls": True}, separators=(",", ":")
        ).encode()
        for cmd, body in (("allow", allow), ("allow", allow), ("report", report)):
            out.append(
                f"POST /policy?command={cmd} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"User-Agent: dovecot/auth-policy-client\r\nX-API-Key: {API_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
    return out[:n]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def fixed_rate(port: int, requests: list[bytes], rate: float, max_seconds: float) -> dict:
    """One step, with this process's garbage collector off: a full collection of the client's
    own heap (SQLAlchemy, a million label values) paused it for tens of milliseconds, which the
    step then reported as server latency. A step allocates a bounded amount, so nothing grows.
    """
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(_fixed_rate(port, requests, rate, max_seconds))
    finally:
        gc.enable()


async def _fixed_rate(port: int, requests: list[bytes], rate: float, max_seconds: float) -> dict:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = 0

    async def one(req: bytes, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await _exchange(*conn, req)
            if status != 200:
                errors += 1
            latencies.append(time.perf_counter() - due)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn = await asyncio.open_connection("127.0.0.1", port)
        finally:
            pool.put_nowait(conn)

    tasks = []
    start = time.perf_counter()
    for i, req in enumerate(requests):
        due = start + i / rate
        if due - start > max_seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(req, due)))
    # Bounded: a server that fell far behind is reported with what it answered in time.
    _, pending = await asyncio.wait(tasks, timeout=max_seconds + 10)
    for t in pending:
        t.cancel()
    errors += len(pending)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    return summary(latencies, len(tasks), errors, elapsed)


def summary(lat: list[float], sent: int, errors: int, elapsed: float) -> dict:
    lat.sort()

    def pct(p: float) -> float:
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000

    return {
        "sent": sent,
        "errors": errors,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        "p50": pct(50),
        "p99": pct(99),
        "p999": pct(99.9),
    }


WRK_LUA = """
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
end
request = function()
  i = i + 1
  -- The command follows the body's position (allow, allow, report per login), so a report
  -- carries the report body with "success":true, as Dovecot sends it.
  local j = (i % #bodies) + 1
  local body = bodies[j]
  local cmd = (j % 3 == 0) and "report" or "allow"
  return wrk.format("POST", "/policy?command=" .. cmd, {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "dovecot/auth-policy-client",
    ["X-API-Key"] = "API_KEY",
  }, body)
end
""".replace("API_KEY", API_KEY)


def wrk_peak(port: int, workdir: Path, bodies: list[bytes], seconds: int) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk not installed (apt-get install wrk): skipping peak throughput")
        return None
    script = workdir / "policy.lua"
    script.write_text(WRK_LUA)
    body_file = workdir / "bodies.txt"
    body_file.write_bytes(b"\n".join(b.split(b"\r\n\r\n", 1)[1] for b in bodies) + b"\n")
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}/", "--", str(body_file)],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    print(out)
    return None


def bulk_labels(db_url: str, n: int, rng: random.Random) -> list[str]:
    """Insert ``n`` labels fast (raw executemany in one transaction); return their values."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    now = time.time()
    values = [rand_hash(rng) for _ in range(n)]
    actions = ("none", "none", "none", "allow", "tarpit", "deny")
    stmt = text(
        "INSERT INTO labels (kind, value, client_name, category, action, source, confidence,"
        " created_at, updated_at) VALUES (:k, :v, :c, 'bench', :a, 'bench', 90, :t, :t)"
    )
    with engine.begin() as conn:
        for lo in range(0, n, 100_000):
            conn.execute(
                stmt,
                [
                    {"k": "ja3", "v": v, "c": f"client{j % 5000}", "a": actions[j % 6], "t": now}
                    for j, v in enumerate(values[lo : lo + 100_000], lo)
                ],
            )
    if engine.dialect.name == "sqlite":
        # Fold the import into the database file, as a real one would be long before the
        # traffic: otherwise the step measures the first checkpoint of a ~200 MB WAL.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return values


def store_lookup_ms(db_url: str, hashes: list[str], n: int = 2000) -> tuple[float, float]:
    """p50/p99 in ms of an allow's reads (labels + history + reputation), uncached."""
    from ja3svc.store.policy_store import PolicyStore
    from sqlalchemy import create_engine

    store = PolicyStore(create_engine(db_url))
    rng = random.Random(7)
    times = []
    for _ in range(n):
        h = rng.choice(hashes)
        t = time.perf_counter()
        store.run(
            store.allow_facts_reads(
                [("ja3_dovecot", h), ("ja3", h)], "user1", [("ja3_dovecot", h)], "", 3600,
                time.time(),
            )
        )
        times.append((time.perf_counter() - t) * 1000)
    store.engine.dispose()
    times.sort()
    return statistics.median(times), times[int(0.99 * len(times))]


def row(name: str, rate: str, r: dict) -> str:
    return (
        f"{name:<10} {rate:>6} {r['sent']:>7} {r['errors']:>6} {r['rps']:>9.0f} "
        f"{r['p50']:>8.2f} {r['p99']:>8.2f} {r['p999']:>8.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="250,500,1000")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each fixed-rate step")
    ap.add_argument("--peak-seconds", type=int, default=5)
    ap.add_argument("--labels", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="extra row with N workers (1: skip)")
    ap.add_argument("--http", default="auto", choices=("auto", "httptools", "h11"),
                    help="uvicorn HTTP implementation of both apps")  # fmt: skip
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rng = random.Random(42)

    workdir = Path(tempfile.mkdtemp(prefix="ja3svc-bench-"))
    db_url = f"sqlite:///{workdir / 'ja3svc.sqlite3'}"
    conf = workdir / "bench.toml"
    # Reputation/learning on as in production; log_only off; audit log on.
    conf.write_text(f'database_url = "{db_url}"\n[policy]\napi_keys = ["{API_KEY}"]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JA3SVC_DATA_DIR": str(workdir)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {"ja3svc": free_port(), "constant": free_port()}
        cmd_serve = [sys.executable, "-m", "ja3svc.cli.main", "serve",
                     "--port", str(ports["ja3svc"]), "--config", str(conf),
                     "--log-level", "warning", "--http", args.http]  # fmt: skip
        cmd_const = [sys.executable, "-m", "uvicorn", "benchmarks.constant_app:app",
                     "--port", str(ports["constant"]), "--log-level", "warning",
                     "--no-access-log", "--no-proxy-headers", "--http", args.http]  # fmt: skip
        for cmd, port in ((cmd_serve, ports["ja3svc"]), (cmd_const, ports["constant"])):
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
            wait_port(port, procs[-1])

        print(f"server: uvicorn {server_implementation(args.http)} for both apps")
        hashes = [rand_hash(rng) for _ in range(2000)]
        header = f"{'target':<10} {'rate':>6} {'sent':>7} {'errors':>6} {'req/s':>9} " \
                 f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>8}"  # fmt: skip
        # Warm-up, not reported: first requests import, compile and prepare statements.
        warm = login_requests(rng, hashes, 1500)
        for name in ports:
            fixed_rate(ports[name], warm, 500, 3)
        print("\n== fixed-rate steps (allow, allow, report; latency from due time) ==")
        print(header)
        for rate in rates:
            n = int(rate * args.seconds)
            reqs = login_requests(rng, hashes, n)
            for name in ("ja3svc", "constant"):
                r = fixed_rate(ports[name], reqs, rate, args.seconds)
                print(row(name, f"{rate:.0f}", r), flush=True)

        print(f"\n== peak throughput (wrk, {CONNECTIONS} keep-alive connections) ==")
        bodies = login_requests(rng, hashes, 3000)
        peak = {name: wrk_peak(ports[name], workdir, bodies, args.peak_seconds) for name in ports}
        for name, value in peak.items():
            print(f"{name:<10} {value if value is None else round(value):>9} req/s")
        if peak["ja3svc"] and peak["constant"]:
            print(f"ratio ja3svc/constant: {peak['ja3svc'] / peak['constant']:.0%}")

        if args.workers > 1:
            port = free_port()
            cmd = [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(port),
                   "--workers", str(args.workers), "--config", str(conf),
                   "--log-level", "warning", "--http", args.http]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
            wait_port(port, procs[-1])
            time.sleep(2)  # uvicorn listens before every worker has started
            name = f"ja3svc/w{args.workers}"
            print(f"\n== {name}: {args.workers} worker processes (caches per process) ==")
            print(header)
            rate = max(rates)
            reqs = login_requests(rng, hashes, int(rate * args.seconds))
            r = fixed_rate(port, reqs, rate, args.seconds)
            print(row(name, f"{rate:.0f}", r), flush=True)
            value = wrk_peak(port, workdir, bodies, args.peak_seconds)
            stop(procs.pop())
            # The like-for-like peer: the constant app with as many worker processes.
            cport = free_port()
            cmd = [sys.executable, "benchmarks/constant_app.py", str(cport), str(args.workers),
                   args.http]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
            wait_port(cport, procs[-1])
            time.sleep(2)
            cvalue = wrk_peak(cport, workdir, bodies, args.peak_seconds)
            stop(procs.pop())
            cname = f"constant/w{args.workers}"
            for label, v in ((name, value), (cname, cvalue)):
                print(f"{label:<12} {v if v is None else round(v):>9} req/s (wrk)")
            if value and cvalue:
                print(f"ratio {name}/{cname}: {value / cvalue:.0%}")
            if value and peak["constant"]:
                print(f"ratio {name}/constant (1 worker): {value / peak['constant']:.0%}")

        if args.labels:
            # The same shape of traffic before and after the insert: 40,000 distinct hashes, so
            # most allows miss the label cache and ask the database, as after the insert.
            rate = max(rates)
            print(f"\n== {rate:.0f} req/s, 40,000 distinct fingerprints, before and after "
                  f"inserting {args.labels:,} labels ==")  # fmt: skip
            print(header)
            pool = [rand_hash(rng) for _ in range(40_000)]
            reqs = login_requests(rng, pool, int(rate * args.seconds))
            r = fixed_rate(ports["ja3svc"], reqs, rate, args.seconds)
            print(row("ja3svc+0", f"{rate:.0f}", r), flush=True)
            few = store_lookup_ms(db_url, hashes)
            t = time.perf_counter()
            labelled = bulk_labels(db_url, args.labels, rng)
            took = time.perf_counter() - t
            print(f"{args.labels:,} labels inserted in {took:.1f}s")
            # Half labelled hashes (cache misses spread over the million), half fresh ones.
            pool = rng.sample(labelled, 20_000) + [rand_hash(rng) for _ in range(20_000)]
            for name in ("ja3svc+1M", "ja3svc+1M"):  # twice: the first one warms the caches
                reqs = login_requests(rng, pool, int(rate * args.seconds))
                r = fixed_rate(ports["ja3svc"], reqs, rate, args.seconds)
                print(row(name, f"{rate:.0f}", r), flush=True)
            many = store_lookup_ms(db_url, labelled)
            print(f"store lookup (labels+history+reputation), before: p50 {few[0]:.3f} ms, "
                  f"p99 {few[1]:.3f} ms; with {args.labels:,} labels: p50 {many[0]:.3f} ms, "
                  f"p99 {many[1]:.3f} ms")  # fmt: skip
        return 0
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak test of `ja3svc serve` (one worker) at a fixed rate on SQLite and PostgreSQL (127.0.0.1).

    python benchmarks/policy_soak.py [--duration 600] [--rate 2000] [--backends sqlite,postgresql]
                                     [--pg-admin-url postgresql+psycopg://postgres@127.0.0.1/test]

For each backend: a fresh database (a temporary SQLite file; a new PostgreSQL database, dropped
at the end), `ja3svc serve` with one worker, and an open-loop client sending Dovecot's login
mix (allow, allow, report; 2.4 bodies with attrs/ja3) at ``--rate`` requests per second over 32
keep-alive connections for ``--duration`` seconds. Latency is measured from the moment a request
was due (no coordinated omission). Bounded: the run stops at the duration, and requests still
unanswered 10 s later count as errors.

Prints per minute of due time (after the run: summarising during it stalled the client) and
overall: achieved rate, non-2xx (and errors), p50/p99/p99.9, the client's own send lag, the
server's RSS at start and end, database and WAL size, and the verdicts the service judged from
its cache because the database was slow or down (ja3svc_policy_degraded_total). Asserts nothing.
``--timeline PREFIX`` writes every request's due time and latency to ``PREFIX.<backend>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.policy_load import (  # noqa: E402 (needs ROOT)
    API_KEY,
    CONNECTIONS,
    _exchange,
    login_requests,
    rand_hash,
    server_implementation,
    summary,
)
from testbed.processes import free_port, stop, wait_port  # noqa: E402

POOL = 30_000  # distinct requests, cycled (10,000 logins over 10,000 accounts, 2,000 hashes)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def soak(
    port: int,
    requests: list[bytes],
    rate: float,
    duration: float,
    quiet: bool = False,
    timeline: Path | None = None,
) -> None:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    # Each answered request's latency and due time; how late the client itself sent each
    # request (its loop busy or descheduled: part of the latency, which stays measured from the
    # due time). Summarised after the run: sorting a minute's 120,000 latencies stalled this
    # loop ~50 ms, which the requests due meanwhile then reported as the server's latency.
    total: list[float] = []
    dues: list[float] = []
    lag: list[float] = []
    counts = {"non2xx": 0, "errors": 0, "sent": 0}

    async def one(req: bytes, due: float) -> None:
        conn = await pool.get()
        try:
            status = await _exchange(*conn, req)
            if not 200 <= status < 300:
                counts["non2xx"] += 1
            total.append(time.perf_counter() - due)
            dues.append(due)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["errors"] += 1
            conn = await asyncio.open_connection("127.0.0.1", port)
        finally:
            pool.put_nowait(conn)

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    i = 0
    while True:
        due = start + i / rate
        if due - start >= duration:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(time.perf_counter() - due)
        task = asyncio.create_task(one(requests[i % len(requests)], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        counts["sent"] += 1
        i += 1
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=10)
        for t in pending:
            t.cancel()
        counts["errors"] += len(pending)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    if timeline is not None:
        with timeline.open("w") as out:
            lines = zip(dues, total, strict=True)
            out.writelines(f"{d - start:.4f} {lat * 1000:.3f}\n" for d, lat in lines)
    if quiet:
        return
    minutes: dict[int, list[float]] = {}
    for d, latency in zip(dues, total, strict=True):
        minutes.setdefault(int((d - start) // 60), []).append(latency)
    per_rate = int(rate * 60)
    for m, window in sorted(minutes.items()):
        w = summary(window, len(window), 0, 60.0)
        sent = lag[m * per_rate : (m + 1) * per_rate]
        c = {**summary(sent, len(sent), 0, 60.0), "max_ms": max(sent, default=0.0) * 1000}
        print(
            f"  minute {m + 1:>3}: {len(window):8d} answered of those due "
            f"p50 {w['p50']:6.2f} p99 {w['p99']:7.2f} p99.9 {w['p999']:7.2f} ms; "
            f"client's send lag p99 {c['p99']:.2f} max {c['max_ms']:.2f} ms",
            flush=True,
        )
    r = summary(total, counts["sent"], counts["errors"], elapsed)
    print(
        f"  total: sent {counts['sent']}, answered {len(total)} ({r['rps']:.0f} req/s), "
        f"non-2xx {counts['non2xx']}, errors {counts['errors']}; "
        f"p50 {r['p50']:.2f} p99 {r['p99']:.2f} p99.9 {r['p999']:.2f} ms",
        flush=True,
    )


def sizes(url: str, workdir: Path) -> str:
    if url.startswith("sqlite"):
        db = workdir / "soak.sqlite3"
        wal = Path(f"{db}-wal")
        size = db.stat().st_size / 2**20 if db.exists() else 0.0
        wal_size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
        return f"database {size:.1f} MiB, WAL {wal_size:.1f} MiB"
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0
        wal = conn.execute(text("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()")).scalar() or 0
    engine.dispose()
    return f"database {size / 2**20:.1f} MiB, server WAL directory {wal / 2**20:.1f} MiB"


def run_backend(name: str, url: str, args: argparse.Namespace, workdir: Path) -> None:
    conf = workdir / f"{name}.toml"
    conf.write_text(
        f'database_url = "{url}"\n[store]\nauto_upgrade = true\n'
        f'[policy]\napi_keys = ["{API_KEY}"]\n'
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JA3SVC_DATA_DIR": str(workdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(port),
         "--config", str(conf), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_port(port, proc, timeout=60)
        rng = random.Random(7)
        hashes = [rand_hash(rng) for _ in range(2000)]
        requests = login_requests(rng, hashes, POOL)
        gc.collect()
        gc.disable()  # the client's own collections would show up as server latency
        try:
            asyncio.run(soak(port, requests[:3000], 500, 3, quiet=True))  # warm-up, not reported
            degraded0 = metric(port, "ja3svc_policy_degraded_total")
            rss0 = rss_mib(proc.pid)
            print(f"\n== {name}: {args.rate:.0f} req/s for {args.duration:.0f} s ==", flush=True)
            timeline = Path(f"{args.timeline}.{name}") if args.timeline else None
            asyncio.run(soak(port, requests, args.rate, args.duration, timeline=timeline))
        finally:
            gc.enable()
        rss1 = rss_mib(proc.pid)
        degraded = metric(port, "ja3svc_policy_degraded_total") - degraded0
        overload = metric(port, "ja3svc_http_policy_overload_total")
        print(f"  server RSS {rss0:.0f} MiB at start, {rss1:.0f} MiB at end", flush=True)
        print(f"  {sizes(url, workdir)}", flush=True)
        print(f"  degraded verdicts (judged from cache): {degraded:.0f}; overload answers: "
              f"{overload:.0f}", flush=True)  # fmt: skip
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds per backend")
    ap.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database to create the soak database from",
    )  # fmt: skip
    ap.add_argument(
        "--timeline", metavar="PREFIX",
        help="write each request's due time (s from the start) and latency (ms) to PREFIX.BACKEND",
    )  # fmt: skip
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"server: uvicorn {server_implementation('auto')}, 1 worker; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="ja3svc-soak-"))
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                run_backend("sqlite", f"sqlite:///{workdir / 'soak.sqlite3'}", args, workdir)
            elif backend == "postgresql":
                from sqlalchemy import create_engine, text
                from sqlalchemy.engine import make_url

                name = f"ja3svc_soak_{uuid.uuid4().hex[:8]}"
                admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                url = make_url(args.pg_admin_url).set(database=name).render_as_string(False)
                try:
                    run_backend("postgresql", url, args, workdir)
                finally:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()
            else:
                ap.error(f"unknown backend {backend!r}")
            print(f"  load average after: {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

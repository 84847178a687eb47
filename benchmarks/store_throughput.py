#!/usr/bin/env python3
"""How fast sightings go into the fingerprint database, on SQLite and on PostgreSQL.

1. Synthetic: N realistic hello records (shaped like ``HelloRecord.as_dict()``: a few dozen
   client stacks, Chrome-style per-connection extension permutation, one server hello per three
   client hellos, random peers) stored through ``SightingWriter``; prints sightings/s, then
   stores them again to time the idempotent duplicate path.
2. With ``--capture FILE``: runs ``ja3svc pcap FILE`` without storing, then with ``--store``
   into a fresh SQLite file and a fresh PostgreSQL database (their schema created beforehand:
   the figure is the cost of storing, not of a first migration), and prints each time and the
   ratio to the plain run of the same run (target: storing costs less than 1.5x). With
   ``--repeat N`` the three go round-robin N times (load from elsewhere on the machine then
   spreads over all of them) and each keeps its fastest run, into an emptied database each time.
   Beside each wall time: the CPU seconds of the ``ja3svc`` process and, into PostgreSQL, of
   the local server's processes during that run (the database's share of the work).

PostgreSQL: a throw-away database ``ja3svc_bench_<random>`` is created on the server named by
``--pg-url`` (default: the local test server) and dropped afterwards; skipped if unreachable.

Usage: python benchmarks/store_throughput.py [--count N] [--batch-size B]
       [--capture FILE | --benchmark-capture] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from ja3svc.store.database import Database
from ja3svc.store.sighting_writer import SightingWriter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ja3svc.record import HelloRecord

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def synthetic_records(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ciphers = [4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156]
    exts = [0, 23, 65281, 10, 11, 35, 16, 5, 13, 18, 51, 45, 43, 27, 17513, 21]
    stacks = []
    for i in range(40):
        c = rng.sample(ciphers, rng.randint(4, len(ciphers)))
        e = rng.sample(exts, rng.randint(5, len(exts)))
        stacks.append((c, e, i < 6))  # the first few permute extensions like Chrome
    out = []
    ts = 1_700_000_000.0
    for n in range(count):
        ts += rng.expovariate(200.0)
        src = f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        sport = rng.randint(1024, 65535)
        dport = rng.choice((993, 995, 465, 143, 587, 443))
        c, e, permutes = rng.choice(stacks)
        if permutes:
            e = rng.sample(e, len(e))
        cs, es = "-".join(map(str, c)), "-".join(map(str, e))
        ja3 = f"771,{cs},{es},29-23-24,0"
        ja3n = f"771,{cs},{'-'.join(map(str, sorted(e)))},29-23-24,0"
        dove = f"771,{cs},{'-'.join(str(x) for x in e if x not in (27, 17513))},29-23-24,0"
        ja4_b = _md5(cs)[:12]
        out.append(
            {
                "ts": ts,
                "src": src,
                "sport": sport,
                "dst": "192.0.2.25",
                "dport": dport,
                "transport": "tcp",
                "hello": "client",
                "index": 1,
                "sni": rng.choice(("imap.example.org", "mail.example.net", None)),
                "alpn": rng.choice((["imap"], [], ["h2", "http/1.1"])),
                "tls_version": "TLS 1.3",
                "ja3": ja3,
                "ja3_hash": _md5(ja3),
                "ja3n": ja3n,
                "ja3n_hash": _md5(ja3n),
                "ja4": f"t13d{len(c):02d}{len(e):02d}h2_{ja4_b}_{_md5(es)[:12]}",
                "ja4_r": f"t13d{len(c):02d}{len(e):02d}h2_{cs}_{es}",
                "ja3_dovecot": dove,
                "ja3_dovecot_hash": _md5(dove),
            }
        )
        if n % 3 == 0:
            ja3s = f"771,{c[0]},43-51"
            out.append(
                {
                    "ts": ts + 0.002,
                    "src": "192.0.2.25",
                    "sport": dport,
                    "dst": src,
                    "dport": sport,
                    "transport": "tcp",
                    "hello": "server",
                    "index": 1,
                    "sni": None,
                    "alpn": [],
                    "tls_version": "TLS 1.3",
                    "hello_retry_request": False,
                    "ja3s": ja3s,
                    "ja3s_hash": _md5(ja3s),
                }
            )
    return out[:count]


@contextmanager
def pg_database(admin_url: str) -> Iterator[str | None]:
    """A throw-away PostgreSQL database, or None if the server is unreachable."""
    name = f"ja3svc_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable: report and carry on with SQLite
        print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}")
        admin.dispose()
        yield None
        return
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def store_records(url: str, records: list[dict[str, Any]], batch_size: int) -> tuple[float, Any]:
    db = Database.from_url(url, upgrade=True)
    typed = [HelloRecord.from_dict(r) for r in records]  # what the engine hands the writer
    t0 = time.perf_counter()
    with SightingWriter(db, sensor="bench", batch_size=batch_size) as w:
        for r in typed:
            w.add(r)
    elapsed = time.perf_counter() - t0
    db.dispose()
    return elapsed, w.stats


def _empty_sightings(db: Database) -> None:
    """Empty what storing a capture fills, so that every run stores into the same state
    (TRUNCATE on PostgreSQL: a DELETE leaves the rows dead in the tables and their indexes,
    and autovacuum cleaning them up during the next run; SQLite's DELETE of a whole table is
    its truncation)."""
    tables = ("sightings", "fingerprints", "dovecot_hashes")
    with db.session(write=True) as s:
        if db.dialect == "postgresql":
            s.execute(text(f"TRUNCATE {', '.join(tables)}"))
        else:
            for table in tables:
                s.execute(text(f"DELETE FROM {table}"))
    db.dispose()


class Timing(NamedTuple):
    wall: float
    cpu: float  # of the ja3svc process
    server_cpu: float  # of every PostgreSQL server process on this machine meanwhile


def _postgres_cpu() -> float:
    """CPU seconds used so far by the processes named ``postgres`` (the local server: its
    backends, WAL writer, checkpointer, autovacuum), with those that have exited: a run's own
    backend is gone when it is measured, its time added to the postmaster's children's."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        if name == "postgres":
            fields = rest.split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def run_pcap(capture: Path, *extra: str) -> Timing:
    exe = shutil.which("ja3svc") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "ja3svc.cli.main"]
    server0 = _postgres_cpu()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [*cmd, "pcap", "-q", "--no-progress", str(capture), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    return Timing(wall, cpu, _postgres_cpu() - server0)


def _benchmark_capture() -> Path:
    # The sibling scripts are not a package: found through sys.path, as they do themselves.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_capture
    import pcap_throughput

    return pcap_throughput.capture_for(make_capture.DEFAULT_PACKETS, make_capture.DEFAULT_SEED)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="synthetic sightings")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--pg-url", default=os.environ.get("JA3SVC_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--capture", type=Path, help="also time `ja3svc pcap FILE [--store]`")
    ap.add_argument(
        "--benchmark-capture",
        action="store_true",
        help="use the large benchmark capture of pcap_throughput.py (generated once, cached)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each capture timing")
    args = ap.parse_args(argv)
    if args.benchmark_capture and not args.capture:
        args.capture = _benchmark_capture()

    records = synthetic_records(args.count)
    print(f"{len(records)} synthetic sightings, batch size {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp, pg_database(args.pg_url) as pg_url:
        targets = [("sqlite", f"sqlite:///{tmp}/bench.sqlite3")]
        if pg_url:
            targets.append(("postgresql", pg_url))
        for name, url in targets:
            elapsed, stats = store_records(url, records, args.batch_size)
            again, stats2 = store_records(url, records, args.batch_size)
            assert stats.stored == len(records) and stats2.duplicates == len(records)
            print(
                f"{name:<11} {len(records) / elapsed:>10,.0f} sightings/s stored   "
                f"{len(records) / again:>10,.0f} sightings/s re-stored (all duplicates)"
            )

        if args.capture:
            best: dict[str, Timing] = {}
            for _ in range(max(1, args.repeat)):
                times = {"plain": run_pcap(args.capture)}
                for name, url in targets:
                    if name == "sqlite":
                        url = f"sqlite:///{tmp}/capture.sqlite3"
                        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                    # The cost of storing, not of a first migration: schema made beforehand.
                    _empty_sightings(Database.from_url(url, upgrade=True))
                    times[name] = run_pcap(
                        args.capture, "--store", "--database-url", url, "--sensor", "bench"
                    )
                best = {k: min(v, best.get(k, v)) for k, v in times.items()}
            plain = best["plain"].wall
            print(
                f"\nja3svc pcap {args.capture}: {plain:.2f} s without storing "
                f"(cpu {best['plain'].cpu:.2f} s); the 1.5x budget is {1.5 * plain:.2f} s"
            )
            for name, _ in targets:
                run = best[name]
                server = f", database server {run.server_cpu:.2f}" if name != "sqlite" else ""
                print(
                    f"  --store into {name:<11} {run.wall:.2f} s  ratio {run.wall / plain:.2f}x"
                    f"  (cpu s: ja3svc {run.cpu:.2f}{server})"
                )
            print(f"(fastest of {max(1, args.repeat)} runs each, cpu of that run; load average "
                  f"now {os.getloadavg()[0]:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

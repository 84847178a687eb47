"""Time every console page (and the admin API lists) on a database with a million decisions and a
million labels.

    python benchmarks/console_pages.py [--decisions 1000000] [--labels 1000000] [--runs 7]
                                       [--database-url URL] [--keep FILE]

Fills a fresh SQLite file (or an empty database at --database-url, e.g. a throw-away
PostgreSQL database) through the real schema: decisions spread over 30 days (20,000 accounts,
50,000 Dovecot hashes, 93% allow, 4% tarpit, 3% reject, reports after the allows), labels
from four sources (3% deny, 2% tarpit), 200,000 fingerprints, 100,000 learned (account,
fingerprint) pairs, 100,000 sightings and 50,000 authentication failures. Then it signs in to
the real app in process (httpx over ASGI, no sockets) and requests each page ``--runs``
times, printing the median and the slowest run in milliseconds and the page size. The target
is under 200 ms per page; nothing here asserts it (benchmarks never fail a build).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "benchmark-admin-token"
DAY = 86400.0


def md5(i: int, salt: str) -> str:
    return hashlib.md5(f"{salt}{i}".encode()).hexdigest()


def fill(db: Any, decisions: int, labels: int, now: float, seed: int = 7) -> dict[str, str]:
    """Bulk rows through SQLAlchemy Core (one transaction per 50,000 rows)."""
    from ja3svc.store.models import (
        AuthFailure,
        Decision,
        Fingerprint,
        Label,
        Sighting,
        UserFingerprint,
    )
    from sqlalchemy import insert

    rnd = random.Random(seed)
    hashes = [md5(i, "fp") for i in range(50_000)]
    users = [f"user{i:05d}@example.org" for i in range(20_000)]
    chunk = 50_000

    def load(model: Any, rows: Any, total: int) -> None:
        batch: list[dict[str, Any]] = []
        with db.engine.begin() as conn:
            for row in rows:
                batch.append(row)
                if len(batch) == chunk:
                    conn.execute(insert(model), batch)
                    batch = []
            if batch:
                conn.execute(insert(model), batch)
        print(f"  {model.__tablename__}: {total:,} rows", flush=True)

    def decision_rows() -> Any:
        start = now - 30 * DAY
        step = 30 * DAY / decisions
        for i in range(decisions):
            r = rnd.random()
            action, rule, status = "allow", "default", 0
            if r < 0.03:
                action, rule, status = "reject", "label_deny", -1
            elif r < 0.07:
                action, rule, status = "tarpit", "reputation_tarpit", 5
            elif r < 0.12:
                rule = "unknown_fingerprint"
            command = ("allow/before", "allow/after", "report")[i % 3]
            if command == "report":
                action, rule, status = "success", "report", 0
            yield {
                "ts": start + i * step,
                "command": command,
                "username": users[rnd.randrange(len(users))],
                "remote_ip": f"198.51.100.{rnd.randrange(1, 255)}",
                "remote_port": rnd.randrange(1024, 65535),
                "ja3_hash": hashes[rnd.randrange(len(hashes))],
                "status": status,
                "action": action,
                "rule": rule,
                "reason": f"{rule}: benchmark row",
                "labels": None,
            }

    def label_rows() -> Any:
        sources = ("sslbl", "salesforce", "trisul", "manual")
        for i in range(labels):
            r = rnd.random()
            action = "deny" if r < 0.03 else "tarpit" if r < 0.05 else "none"
            yield {
                "kind": "ja3" if i % 4 else "ja3_dovecot",
                "value": md5(i, "label"),
                "client_name": f"Client {i % 5000}" if i % 3 else "Thunderbird 115",
                "category": ("mail-client", "library", "malware", "browser")[i % 4],
                "action": action,
                "tarpit_seconds": 5 if action == "tarpit" else None,
                "source": sources[i % 4],
                "confidence": 40 + i % 61,
                "note": None,
                "created_at": now - (labels - i),
                "updated_at": now - (labels - i),
            }

    def fingerprint_rows() -> Any:
        for i in range(200_000):
            kind = ("ja3", "ja3n", "ja4", "ja3_dovecot")[i % 4]
            value = (
                f"t13d{1500 + i % 100:04d}h2_{md5(i, 'a')[:12]}_{md5(i, 'b')[:12]}"
                if kind == "ja4"
                else hashes[i // 4] if kind != "ja3n" else md5(i, "n")
            )
            first = now - rnd.random() * 60 * DAY
            yield {
                "kind": kind, "value": value, "full_string": None, "first_seen": first,
                "last_seen": first + 10, "times_seen": rnd.randrange(1, 1000),
            }  # fmt: skip

    def sighting_rows() -> Any:
        for i in range(100_000):
            h = hashes[i % len(hashes)]
            yield {
                "ts": now - (100_000 - i), "sensor": "bench:eth0", "src": "198.51.100.7",
                "sport": 1024 + i % 60000, "dst": "192.0.2.1", "dport": 993, "transport": "tcp",
                "hello": "client", "hello_index": 1 + i // 60000, "sni": None, "alpn": None,
                "tls_version": "1.3", "ja3_hash": h, "ja3n_hash": md5(i % 5000, "n"),
                "ja4": f"t13d{1500 + i % 100:04d}h2_{md5(i, 'a')[:12]}_{md5(i, 'b')[:12]}",
                "ja3_dovecot_hash": h, "ja3s_hash": None,
            }  # fmt: skip

    def user_rows() -> Any:
        seen = set()
        while len(seen) < 100_000:
            key = (users[rnd.randrange(len(users))], hashes[rnd.randrange(len(hashes))])
            if key in seen:
                continue
            seen.add(key)
            yield {
                "username": key[0], "kind": "ja3_dovecot", "value": key[1],
                "first_seen": now - 20 * DAY, "last_seen": now - rnd.random() * DAY,
                "successes": rnd.randrange(1, 50),
            }  # fmt: skip

    def failure_rows() -> Any:
        for _ in range(50_000):
            yield {
                "ts": now - rnd.random() * 2 * DAY,
                "kind": "ja3_dovecot",
                "value": hashes[rnd.randrange(200)],
                "username": users[rnd.randrange(len(users))],
            }

    started = time.monotonic()
    load(Decision, decision_rows(), decisions)
    load(Label, label_rows(), labels)
    load(Fingerprint, fingerprint_rows(), 200_000)
    load(Sighting, sighting_rows(), 100_000)
    load(UserFingerprint, user_rows(), 100_000)
    load(AuthFailure, failure_rows(), 50_000)
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(f"  filled in {time.monotonic() - started:.0f} s", flush=True)
    return {"hash": hashes[3], "user": users[11], "label": md5(123_456, "label")}


def pages(sample: dict[str, str]) -> list[tuple[str, str]]:
    h, u, lb = sample["hash"], sample["user"], sample["label"]
    return [
        ("Overview", "/console/"),
        ("Decisions", "/console/decisions"),
        ("Decisions, verdict reject", "/console/decisions?verdict=reject"),
        ("Decisions, rule label_deny", "/console/decisions?rule=label_deny&command=all"),
        ("Decisions, one account", f"/console/decisions?user={u}"),
        ("Decisions, one fingerprint", f"/console/decisions?fp={h}"),
        ("Decisions, last hour", "/console/decisions?since=1h"),
        ("Decisions, a day last week", "/console/decisions?since=8d&until=7d"),
        ("Decisions, older page", "/console/decisions?before=500000"),
        ("Fingerprint page", f"/console/fingerprints/ja3_dovecot/{h}"),
        ("Fingerprint search", f"/console/fingerprints?q={h[:6]}"),
        ("Accounts", "/console/accounts"),
        ("Account page", f"/console/accounts/{u}"),
        ("Labels", "/console/labels"),
        ("Labels, action deny", "/console/labels?action=deny"),
        ("Labels, source manual", "/console/labels?source=manual"),
        ("Labels, value prefix", f"/console/labels?q={lb[:8]}"),
        ("Labels, client name", "/console/labels?q=thunderbird"),
        ("Labels, name nobody has", "/console/labels?q=no-such-client"),
        ("Label edit", "/console/labels/12345"),
        ("API labels, action deny", "/api/v1/labels?action=deny"),
        ("API decisions, reject", "/api/v1/decisions?action=reject"),
    ]


async def measure(
    app: Any, sample: dict[str, str], runs: int
) -> list[tuple[str, float, float, int]]:
    import httpx

    out = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            form = await http.get("/console/login")
            found = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert found, "no sign-in form"
            nonce = found.group(1)
            await http.post(
                "/console/login", data={"login_csrf": nonce, "token": ADMIN, "next": "/console/"}
            )
            for name, url in pages(sample):
                times = []
                size = 0
                for _run in range(runs):
                    started = time.perf_counter()
                    r = await http.get(url, headers={"X-Admin-Token": ADMIN})
                    times.append((time.perf_counter() - started) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
                    size = len(r.content)
                out.append((name, statistics.median(times), max(times), size))
                print(f"  {name:<32} {out[-1][1]:8.1f} {out[-1][2]:8.1f} {size:>8,}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--labels", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--database-url", help="an EMPTY database (default: a fresh SQLite file)")
    ap.add_argument("--keep", help="keep the SQLite file here (reused if it exists)")
    args = ap.parse_args()

    from ja3svc.api.app import create_app
    from ja3svc.config.settings import PolicySettings, Settings
    from ja3svc.store.database import Database

    tmp = Path(tempfile.mkdtemp(prefix="ja3svc-console-bench-"))
    path = Path(args.keep) if args.keep else tmp / "bench.sqlite3"
    url = args.database_url or f"sqlite:///{path}"
    reuse = args.keep and path.exists()
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        policy=PolicySettings(admin_token=ADMIN, api_keys=["k"]),
    )
    db = Database.from_url(url, upgrade=True)
    now = time.time()
    print(f"database: {url}")
    if reuse:
        print("  reusing the filled file")
        sample = {
            "hash": md5(3, "fp"), "user": "user00011@example.org",
            "label": md5(123_456, "label"),
        }  # fmt: skip
    else:
        sample = fill(db, args.decisions, args.labels, now)
    app = create_app(settings, database=db)
    print(f"\n  {'page':<32} {'median':>8} {'max':>8} {'bytes':>8}   (ms, {args.runs} runs)")
    results = asyncio.run(measure(app, sample, args.runs))
    worst = max(results, key=lambda r: r[1])
    print(f"\nslowest median: {worst[0]} {worst[1]:.1f} ms; "
          f"pages over 200 ms (median): {sum(1 for r in results if r[1] > 200)}")
    db.dispose()


if __name__ == "__main__":
    main()

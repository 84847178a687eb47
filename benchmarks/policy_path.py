"""Cost of the policy endpoint's own code per request, in process (no sockets, no uvicorn).

    python benchmarks/policy_path.py [--requests 30000] [--profile]

Builds the real app (temporary SQLite database, audit log on, the start-up heap frozen as
`ja3svc serve` does) and calls it as uvicorn would, with the wrk mix of benchmarks/policy_load.py
(allow, allow, report of 1,000 logins over 2,000 fingerprints), yielding to the event loop
after every request so the audit writer's ticks run as they do in the server. The same loop
drives benchmarks/constant_app.py for the harness's own share. Prints µs per request of both
and the difference, which is what ja3svc adds to every request before uvicorn's HTTP work
(the figure to watch when changing the verdict path; policy_load.py measures the whole).

Under `valgrind --tool=callgrind` the difference between two runs of different --requests is
an exact instruction count per request, repeatable where timings on a shared machine are not.
The cache lifetimes are raised to 300 s so that a slow run (valgrind, --profile) sees the same
cache hits as a fast one. --profile prints cProfile's top functions (which inflates call-heavy
code; use it to find, not to measure).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.constant_app import app as constant_app  # noqa: E402 (needs ROOT)
from benchmarks.policy_load import API_KEY, login_requests, rand_hash  # noqa: E402

Scope = dict[str, Any]


def asgi_requests(raw: list[bytes]) -> list[tuple[Scope, bytes]]:
    """The raw HTTP requests as the (scope, body) pairs uvicorn would hand the app."""
    out = []
    for request in raw:
        head, body = request.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        path, _, query = lines[0].split(b" ")[1].partition(b"?")
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        ]
        scope = {"type": "http", "method": "POST", "path": path.decode(), "query_string": query,
                 "headers": headers, "http_version": "1.1", "scheme": "http"}  # fmt: skip
        out.append((scope, body))
    return out


async def drive(app: Any, requests: list[tuple[Scope, bytes]], n: int) -> float:
    """Seconds of CPU for ``n`` requests through ``app``."""

    async def send(message: dict[str, Any]) -> None:
        pass

    start = time.process_time()
    for i in range(n):
        scope, body = requests[i % len(requests)]
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
            return message

        await app(dict(scope), receive, send)
        await asyncio.sleep(0)
    return time.process_time() - start


async def run(args: argparse.Namespace) -> None:
    from ja3svc.api.app import create_app
    from ja3svc.config.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="ja3svc-path-"))
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'ja3svc.sqlite3'}",
        policy={"api_keys": [API_KEY], "reputation_cache_seconds": 300,
                "label_cache_seconds": 300},
    )  # fmt: skip
    app = create_app(settings)
    rng = random.Random(1)
    hashes = [rand_hash(rng) for _ in range(2000)]
    requests = asgi_requests(login_requests(rng, hashes, 3000))
    async with app.router.lifespan_context(app):
        gc.collect()
        gc.freeze()
        await drive(app, requests, len(requests))  # warm-up: every cache filled once
        await drive(constant_app, requests, len(requests))
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        policy = await drive(app, requests, args.requests) if args.app != "constant" else 0.0
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        constant = 0.0
        if args.app != "ja3svc":
            constant = await drive(constant_app, requests, args.requests)
    per = 1e6 / args.requests
    if args.app != "constant":
        print(f"ja3svc policy app  {policy * per:6.1f} µs CPU per request")
    if args.app != "ja3svc":
        print(f"constant app       {constant * per:6.1f} µs CPU per request (harness included)")
    if args.app == "both":
        print(f"added by ja3svc    {(policy - constant) * per:6.1f} µs per request")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=30_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--app", choices=("both", "ja3svc", "constant"), default="both",
                    help="measured loop(s); one only for instruction counts")  # fmt: skip
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

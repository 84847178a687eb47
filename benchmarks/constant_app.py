"""The baseline of benchmarks/policy_load.py: the least an ASGI app under uvicorn can do,
answering every request with a constant ``{"status":0}`` (it still reads the body, as Dovecot's
server must).

``python benchmarks/constant_app.py PORT WORKERS [HTTP]`` runs it with several worker processes
on the same terms as ``ja3svc serve --workers N`` (a socket per worker, see cli.worker_sockets;
no access log, no proxy-headers middleware).
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status":0}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    import sys
    from pathlib import Path

    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ja3svc.cli.worker_sockets import run_workers

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    http = sys.argv[3] if len(sys.argv) > 3 else "auto"
    config = uvicorn.Config("benchmarks.constant_app:app", port=port, workers=workers, http=http,
                            log_level="warning", access_log=False, proxy_headers=False)  # fmt: skip
    if workers > 1:
        run_workers(config)
    else:
        uvicorn.Server(config).run()

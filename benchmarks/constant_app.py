"""The baseline of benchmarks/policy_load.py: the least an ASGI app under uvicorn can do,
answering every request with a constant ``{"status":0}`` (it still reads the body, as Dovecot's
server must)."""

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

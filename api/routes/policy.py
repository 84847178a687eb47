"""Dovecot's endpoint: ``POST /policy?command=allow|report`` and the weakforced spellings.

Kept lean on purpose: it is called twice or three times per login and must answer well inside
Dovecot's 2 s. Dovecot counts any non-2xx, invalid JSON or non-integer status as a policy
failure, so a well-formed request always gets 200 with an integer status; only malformed input
(400) and bad credentials (401) get anything else.

api.app dispatches the endpoint's paths (``endpoint_command``) before FastAPI's router, which
has no route for them. The endpoint is a bare ASGI handler, not a Starlette request/response
function: the Request object,
the per-request exception-handling wrapper and the Response object cost more than the verdict
itself once the facts come from memory (profiled at ~1,700 req/s: 21% of samples were in
Starlette's response path). Headers and body are read straight from the ASGI messages and the
answer is sent as two prebuilt messages.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ja3svc.api import limits
from ja3svc.api.dovecot_request import BadRequest, parse_request
from ja3svc.api.service import PolicyService
from starlette.exceptions import HTTPException

from ja3svc.policy import Verdict

log = logging.getLogger("ja3svc.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OK_REPORT = b'{"status":"ok"}'
_JSON_HEADER = (b"content-type", b"application/json")
# Answers are a handful of distinct bodies (0, -1 with the configured message, tarpit seconds):
# encode each once. Bounded in case a configuration change makes new ones over a long run.
_BODIES: dict[tuple[int, str], bytes] = {}
_MAX_BODIES = 512


def _verdict_body(verdict: Verdict) -> bytes:
    key = (verdict.status, verdict.msg)
    body = _BODIES.get(key)
    if body is None:
        body = json.dumps(verdict.response(), separators=(",", ":")).encode()
        if len(_BODIES) < _MAX_BODIES:
            _BODIES[key] = body
    return body


def _error_body(error: str, reason: str) -> bytes:
    return json.dumps({"error": error, "reason": reason}).encode()


def command_from_query(query: str) -> str:
    """``command`` from the raw query string, tolerating Dovecot's URL joining.

    Dovecot appends ``?command=X`` to the configured URL unless it ends in ``&``; a URL that
    already ends in ``?`` (as the docs show) therefore arrives as ``/policy??command=allow``,
    whose only key is ``?command`` for a standard parser.
    """
    for part in query.replace("?", "&").split("&"):
        key, _, value = part.partition("=")
        if key == "command":
            return value
    return ""


# Raw query string -> command: Dovecot sends the same one or two query strings all day.
_COMMAND_OF_QUERY: dict[bytes, str] = {}
_MAX_QUERIES = 256


def _command(query: bytes) -> str:
    command = _COMMAND_OF_QUERY.get(query)
    if command is None:
        command = command_from_query(query.decode("latin-1"))
        if len(_COMMAND_OF_QUERY) < _MAX_QUERIES:
            _COMMAND_OF_QUERY[query] = command
    return command


@functools.lru_cache(maxsize=64)
def _headers(length: int) -> list[tuple[bytes, bytes]]:
    # Answers come in a handful of lengths. Servers only read the list (uvicorn and h11 copy
    # what they keep), so one list per length serves every response.
    return [_JSON_HEADER, (b"content-length", str(length).encode())]


async def _send(send: Send, code: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": code, "headers": _headers(len(body))})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when the client went away before sending it."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    if not message.get("more_body", False):  # Dovecot's bodies arrive in one piece
        return message.get("body", b"")
    chunks: list[bytes] = [message.get("body", b"")]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _fallback_body(settings: Any) -> bytes:
    fallback = (
        {"status": 0} if settings.fail_open else {"status": -1, "msg": settings.reject_message}
    )
    return json.dumps(fallback).encode()


async def handle(
    scope: Scope, receive: Receive, send: Send, service: PolicyService, command: str
) -> None:
    started = time.perf_counter()
    if not command:
        command = _command(scope.get("query_string", b""))
    metrics = service.metrics
    settings = service.settings
    reason = service.credentials.check(scope["headers"])
    if reason is not None:
        metrics.requests.inc(command, "401")
        await _send(send, 401, _error_body("unauthorized", reason))
        return
    try:
        raw = await _read_body(receive)
    except HTTPException as exc:  # a chunked body over the limit (see api.app)
        metrics.requests.inc(command, str(exc.status_code))
        await _send(send, exc.status_code, _error_body("too_large", str(exc.detail)))
        return
    if raw is None:
        return
    try:
        req = parse_request(command, raw)
    except BadRequest as exc:
        metrics.requests.inc(command, "400")
        # The reason names keys and types only, never values: safe to log, and the only way an
        # administrator sees why Dovecot reports "Policy server HTTP error: 400".
        log.warning(
            "bad policy request", extra={"fields": {"command": command, "reason": str(exc)}}
        )
        await _send(send, 400, _error_body("bad_request", str(exc)))
        return
    # pwhash identifies a password guess; it must never reach a log line or the audit table.
    req.attributes.pop("pwhash", None)
    if command == "report":
        try:
            await service.report(req)
        except Exception:  # never fail Dovecot's report; the loss is logged
            log.exception("report handling failed")
        body = _OK_REPORT
    elif service.inflight >= service.max_inflight:
        # Overloaded: answer now, as Dovecot would on a timeout (its auth_policy_reject_on_fail
        # default continues the login), but without making it wait 2 s for that.
        limits.COUNTERS["policy_overload_total"] += 1
        body = _fallback_body(settings)
    else:
        service.inflight += 1
        try:
            verdict = await service.allow(req)
            body = _verdict_body(verdict)
        except Exception:
            # A bug must not turn into Dovecot's "policy server failed" for every login.
            log.exception("verdict failed; answering by fail_open")
            body = _fallback_body(settings)
        finally:
            service.inflight -= 1
    metrics.requests.inc(command, "200")
    metrics.latency.observe(time.perf_counter() - started, command)
    await _send(send, 200, body)


# The endpoint's paths; a command in the path (weakforced's ``/command/allow``) wins over one
# in the query string (Dovecot's ``?command=``, ``&command=``, ``??command=``).
_QUERY_PATHS = frozenset({"/policy", "/"})
_COMMAND_PREFIX = "/command/"
_NOT_POST = json.dumps(
    {"error": "method_not_allowed", "reason": "Dovecot's policy endpoint takes POST"}
).encode()


def endpoint_command(path: str) -> str | None:
    """The one router of Dovecot's endpoint (api.app dispatches by it before anything else):
    for a path of the endpoint, the command it names (``""``: the query string names it);
    None for any other path."""
    if path in _QUERY_PATHS:
        return ""
    if path.startswith(_COMMAND_PREFIX):
        command = path[len(_COMMAND_PREFIX) :]
        if command and "/" not in command:
            return command
    return None


async def method_not_allowed(send: Send) -> None:
    headers = [*_headers(len(_NOT_POST)), (b"allow", b"POST")]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": _NOT_POST})

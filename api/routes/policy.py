"""Dovecot's endpoint: ``POST /policy?command=allow|report`` and the weakforced spellings.

Kept lean on purpose (no body model, no dependency tree): it is called twice or three times per
login and must answer well inside Dovecot's 2 s. Dovecot counts any non-2xx, invalid JSON or
non-integer status as a policy failure, so a well-formed request always gets 200 with an integer
status; only malformed input (400) and bad credentials (401) get anything else.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import check_dovecot
from api.deps import get_service
from api.dovecot_request import BadRequest, parse_request

log = logging.getLogger("ja3svc.api")

_OK_REPORT = b'{"status":"ok"}'
_JSON = "application/json"


def _error(code: int, error: str, reason: str) -> Response:
    body = json.dumps({"error": error, "reason": reason}).encode()
    return Response(body, status_code=code, media_type=_JSON)


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


async def handle(request: Request, command: str) -> Response:
    started = time.perf_counter()
    if not command:
        command = command_from_query(request.url.query)
    service = get_service(request)
    metrics = service.metrics
    settings = service.settings
    reason = check_dovecot(request.headers, settings.api_header, settings.api_keys)
    if reason is not None:
        metrics.requests.inc(command, "401")
        return _error(401, "unauthorized", reason)
    try:
        req = parse_request(command, await request.body())
    except BadRequest as exc:
        metrics.requests.inc(command, "400")
        # The reason names keys and types only, never values: safe to log, and the only way an
        # administrator sees why Dovecot reports "Policy server HTTP error: 400".
        log.warning(
            "bad policy request", extra={"fields": {"command": command, "reason": str(exc)}}
        )
        return _error(400, "bad_request", str(exc))
    # pwhash identifies a password guess; it must never reach a log line or the audit table.
    req.attributes.pop("pwhash", None)
    if command == "report":
        try:
            service.report(req)
        except Exception:  # never fail Dovecot's report; the loss is logged
            log.exception("report handling failed")
        body = _OK_REPORT
    else:
        try:
            verdict = await service.allow(req)
            body = json.dumps(verdict.response(), separators=(",", ":")).encode()
        except Exception:
            # A bug must not turn into Dovecot's "policy server failed" for every login.
            log.exception("verdict failed; answering by fail_open")
            fallback = (
                {"status": 0}
                if settings.fail_open
                else {"status": -1, "msg": settings.reject_message}
            )
            body = json.dumps(fallback).encode()
    metrics.requests.inc(command, "200")
    metrics.latency.observe(time.perf_counter() - started, command)
    return Response(body, media_type=_JSON)


async def endpoint(request: Request) -> Response:
    """Starlette endpoint for all three spellings (``/command/{command}`` in the path, else in
    the query). Plain Starlette routes, not FastAPI ones: FastAPI's per-request dependency and
    parameter machinery cost more than the whole verdict on this path."""
    return await handle(request, request.path_params.get("command", ""))


# Mounted by api.app before every other route; described in the OpenAPI text of the app.
routes = [
    Route("/policy", endpoint, methods=["POST"]),
    Route("/", endpoint, methods=["POST"]),
    Route("/command/{command}", endpoint, methods=["POST"]),
]

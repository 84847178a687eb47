"""The FastAPI application factory. Nothing is global: every app owns its service and database.

``create_app(settings)`` opens the configured database (``Database.from_settings`` migrates a
SQLite file to head on first use) unless a database is passed in, as tests do.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from ja3svc.api import limits
from ja3svc.api.console import web as console
from ja3svc.api.metrics import CallbackMetrics, mark_worker_gone
from ja3svc.api.routes import admin, docs, ops, policy
from ja3svc.api.service import PolicyService
from ja3svc.config.settings import Settings, load_settings
from ja3svc.store.policy_store import PolicyStore
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from ja3svc.policy import ConnectionLookup

log = logging.getLogger("ja3svc.api")

# Environment variable through which `ja3svc serve` hands its resolved settings to uvicorn
# workers (each worker process builds its own app with `app_from_env`).
SETTINGS_ENV = "JA3SVC_SERVE_SETTINGS"
LOG_LEVEL_ENV = "JA3SVC_SERVE_LOG_LEVEL"


POLICY_DOC = """
**Dovecot endpoint** (not listed below; it speaks Dovecot's protocol, not JSON schemas):
`POST /policy?command=allow|report`, also `POST /?command=...` and `POST /command/allow|report`.
Body: Dovecot's attributes as JSON strings (`attrs/ja3`, `conn/real_rip`, ... nested one level,
deeper names in Dovecot's mangled form). Credentials: `X-API-Key` (or the configured header) or
HTTP Basic (password checked). Answers `{"status": N, "msg": "..."}` for allow (negative: reject,
positive: tarpit seconds on the first allow) and `{"status": "ok"}` for report.
"""


class Startable(Protocol):
    """Something that runs beside the service for the app's lifetime (the capture worker)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


MetricsCallback = Callable[[], Mapping[str, float]]


class PolicyFirstApp(FastAPI):
    """FastAPI, with Dovecot's endpoint dispatched before the middleware stack and router.

    Dovecot calls two or three times per login; everything else (admin API, probes, docs) is
    rare. The policy endpoint answers every outcome itself (it never raises for a request), so
    the error middleware, the exception handlers and the router's path matching are pure
    overhead for it: its paths (``routes.policy.endpoint_command``, the endpoint's one router)
    never reach them. Other methods than POST there get 405, except on ``/``, whose GET is
    the console's.
    """

    policy_service: PolicyService  # set by create_app

    max_body_bytes: int = 1 << 20  # set by create_app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = _body_length(scope["headers"])
            if length is None:  # chunked (Dovecot never sends that): counted while read
                receive = _capped(receive, self.max_body_bytes)
            elif length > self.max_body_bytes:
                # Refused before a byte of the body is read; the connection is closed, so the
                # rest of the body is never read either.
                await _send_413(send, self.max_body_bytes)
                return
            command = policy.endpoint_command(scope["path"])
            if command is not None:
                if scope["method"] == "POST":
                    await policy.handle(scope, receive, send, self.policy_service, command)
                    return
                if scope["path"] != "/":
                    await policy.method_not_allowed(send)
                    return
        await super().__call__(scope, receive, send)


# Decision retention, enforced by the service itself: the audit log gains a row per Dovecot
# request, so without it the database grows for ever (store.retention_days).
RETENTION_FIRST_SECONDS = 60.0
RETENTION_INTERVAL_SECONDS = 3600.0


async def _retention_loop(database: Any, retention_days: float) -> None:
    from ja3svc.store.retention import prune

    await asyncio.sleep(RETENTION_FIRST_SECONDS)
    while True:
        try:
            deleted = await asyncio.to_thread(prune, database, retention_days)
            log.info("retention: old events deleted", extra={"fields": deleted})
        except Exception as exc:  # the next round tries again
            log.warning("retention failed", extra={"fields": {"error": type(exc).__name__}})
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, {"error": "too_large", "reason": f"request body larger than {limit} bytes"}
        )


def _body_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """Content-Length (0 without a body), or None for a chunked body (Transfer-Encoding wins
    over a Content-Length, as in HTTP/1.1)."""
    # One dict built in C: a Python loop over the headers cost more, on every policy request.
    fields = dict(headers)
    if b"transfer-encoding" in fields:
        return None
    value = fields.get(b"content-length")
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return 1 << 62  # the server's parser let it through; refuse it as too large


def _capped(receive: Any, limit: int) -> Any:
    seen = 0

    async def receive_capped() -> Any:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(limit)
        return message

    return receive_capped


async def _send_413(send: Any, limit: int) -> None:
    body = json.dumps(
        {"error": "too_large", "reason": f"request body larger than {limit} bytes"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Subdirectory of the spool directory for policy writes (sightings' spool files are beside it).
POLICY_SPOOL = "policy"


def create_app(
    settings: Settings,
    *,
    database: Any | None = None,
    connection_lookup: ConnectionLookup | None = None,
    clock: Callable[[], float] = time.time,
    background: Sequence[Startable] = (),
    extra_metrics: Mapping[str, MetricsCallback] | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The app. ``background`` objects are started after the service and stopped before it
    (``serve --capture`` passes its CaptureWorker); ``extra_metrics`` maps a metric-name prefix
    to a callback whose numbers /metrics exports as ``<prefix>_<name>`` gauges.
    ``freeze_heap`` (for the server process, which owns its interpreter; not for tests) moves
    everything alive at start out of the garbage collector's sight, see the lifespan.

    Without a ``connection_lookup``, ``settings.serve.correlate_database`` makes the service
    look hellos up in the (shared) database that separate capture workers write to.
    """
    if database is None:
        from ja3svc.store.database import Database

        database = Database.from_settings(settings)
    if connection_lookup is None and settings.serve.correlate_database:
        from ja3svc.store.correlation import ConnectionFingerprints

        connection_lookup = ConnectionFingerprints.from_settings(settings, None, database)
    service = PolicyService(
        settings.policy, PolicyStore.from_database(database), connection_lookup, clock,
        spool_dir=settings.resolved_spool_dir() / POLICY_SPOOL,
    )  # fmt: skip
    serve = settings.serve
    limits.configure(
        serve.max_connections, serve.idle_timeout_seconds, serve.header_timeout_seconds
    )
    metrics = dict(extra_metrics or {})
    metrics.setdefault("ja3svc_http", lambda: dict(limits.COUNTERS))
    for prefix, callback in metrics.items():
        service.metrics.registry.add(CallbackMetrics(prefix, "Reported by ja3svc.", callback))
    stats = getattr(connection_lookup, "stats", None)
    if "ja3svc_correlation" not in metrics and isinstance(stats, dict):
        # The console shows this worker's correlation counts; /metrics has every worker's
        # (ja3svc_correlation_lookups_total, counted by the service).
        metrics["ja3svc_correlation"] = lambda: dict(stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.policy.api_keys:
            log.warning("policy endpoint is open: no policy.api_keys configured")
        service.start()
        if freeze_heap:
            # Everything alive now (modules, FastAPI's and SQLAlchemy's objects, the preloaded
            # labels: ~150,000 objects) lives as long as the process. Left in the collector's
            # oldest generation, each full collection walked all of them: a 120 ms pause in the
            # middle of Dovecot's requests, measured on the 2-core test machine. Frozen, they
            # are never scanned again (and still freed by reference counting if dropped).
            gc.collect()
            gc.freeze()
        started: list[Startable] = []
        retention = None
        if settings.store.retention_days and hasattr(database, "session"):
            retention = asyncio.get_running_loop().create_task(
                _retention_loop(database, settings.store.retention_days)
            )
        try:
            for item in background:
                item.start()
                started.append(item)
            yield
        finally:
            if retention is not None:
                retention.cancel()
            # Reverse order; off the loop, since a capture worker's stop waits for its last
            # flush (bounded by the worker itself).
            for item in reversed(started):
                try:
                    await asyncio.to_thread(item.stop)
                except Exception:
                    log.exception("stopping a background component failed")
            close = getattr(connection_lookup, "close", None)
            if callable(close):
                close()
            # Awaited: on PostgreSQL the loop itself writes the last batches.
            await service.writer.flush_async(5.0)
            service.stop()
            mark_worker_gone()

    app = PolicyFirstApp(
        title="ja3svc policy service",
        summary="JA3-aware Dovecot authentication-policy server",
        description=POLICY_DOC,
        version="0.1.0",
        lifespan=lifespan,
        # Served from the app itself (routes.docs): the defaults load Swagger UI from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if serve.docs else None,
    )
    app.max_body_bytes = serve.max_body_bytes
    service.max_inflight = serve.max_inflight
    app.state.service = service
    app.state.settings = settings
    # Components' own counters (the capture worker's), for the console's health panel.
    app.state.component_metrics = metrics
    # The shortcut's own reference: Starlette's State answers through __getattr__, which is
    # only reached after a failed lookup (an AttributeError built and discarded per request).
    app.policy_service = service
    app.state.database = database
    app.include_router(ops.router)
    app.include_router(admin.router)
    if serve.docs:
        app.include_router(docs.router)
    app.include_router(console.router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    # Starlette's class: FastAPI's subclasses it, and the router's own 404/405 and FastAPI's
    # body-parsing 400 raise the base class.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = (
            exc.detail if isinstance(exc.detail, dict) else {"error": "http", "reason": exc.detail}
        )
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names the methods of the first route whose path matched; a path served
            # by several routes (GET, PATCH, DELETE of a label) allows all of theirs.
            headers = {"Allow": ", ".join(sorted(_allowed_methods(app, request.scope)))}
        return JSONResponse(detail, status_code=exc.status_code, headers=headers)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The admin API during a database outage: a short answer, one log line, no traceback.
        log.warning(
            "admin request failed: database error",
            extra={"fields": {"path": request.url.path, "error": type(exc).__name__}},
        )
        body = {"error": "unavailable", "reason": f"database error: {type(exc).__name__}"}
        return JSONResponse(body, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse({"error": "invalid", "reason": reason}, status_code=422)

    return app


def _allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> set[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def app_from_env() -> FastAPI:
    """uvicorn factory used by `ja3svc serve` (one call per worker process)."""
    from ja3svc.api.logs import configure

    # Worker processes start fresh: set up the JSON logs here too.
    configure(os.environ.get(LOG_LEVEL_ENV, "info"))
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings(**json.loads(raw)) if raw else load_settings()
    return create_app(settings, freeze_heap=True)

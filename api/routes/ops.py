"""Liveness, readiness and Prometheus metrics (unauthenticated, as probes expect)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, HTTPException, Request, Response
from ja3svc.api.deps import get_service
from ja3svc.api.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "not ready (only with strict=true)"}},
)
async def readyz(request: Request, strict: bool = False) -> Response:
    """``ready`` when the database answers and is at the migrations' head.

    ``degraded`` (verdicts from the label cache) still answers 200 unless ``strict``: taking every
    replica out of rotation during a database outage would turn a degraded service into none.
    """
    service = get_service(request)
    db = request.app.state.database
    status, detail = "ready", ""
    try:
        at_head = await asyncio.wait_for(asyncio.to_thread(db.is_at_head), 2.0)
        if not at_head:
            status, detail = "degraded", "database schema is not at the migrations' head"
    except Exception as exc:
        status, detail = "degraded", f"database unreachable: {type(exc).__name__}"
    if status == "ready" and service.degraded:
        status, detail = "degraded", f"recent database error: {service.last_db_error}"
    code = 503 if strict and status != "ready" else 200
    body: dict[str, object] = {
        "status": status,
        "label_cache": len(service.labels),
        "dovecot_openssl_profile": service.profiles.summary(),
    }
    if detail:
        body["reason"] = detail
    return Response(json.dumps(body), status_code=code, media_type="application/json")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    if not request.app.state.settings.serve.metrics:
        raise HTTPException(404, detail={"error": "not_found", "reason": "metrics are off"})
    service = get_service(request)
    service.metrics.cache_size.set(len(service.labels))
    return Response(service.metrics.registry.render(), media_type=CONTENT_TYPE)

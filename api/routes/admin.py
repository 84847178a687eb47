"""Lookup and admin API under /api/v1 (admin token required on every route)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from ja3svc.api.deps import get_service, get_store, require_admin
from ja3svc.store.models import FINGERPRINT_KINDS
from pydantic import BaseModel, Field

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_admin)], tags=["admin"])

Kind = Literal["ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot"]
# The Literal is for OpenAPI; it must not drift from the models' constraint.
assert set(get_args(Kind)) == set(FINGERPRINT_KINDS)


class LabelIn(BaseModel):
    kind: Kind
    value: str = Field(min_length=1, max_length=64)
    action: Literal["allow", "deny", "tarpit", "none"] = "none"
    source: str = Field(default="manual", min_length=1, max_length=32)
    client_name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=32)
    tarpit_seconds: int | None = Field(default=None, ge=0, le=3600)
    confidence: int = Field(default=100, ge=0, le=100)
    note: str | None = None


class LabelPatch(BaseModel):
    action: Literal["allow", "deny", "tarpit", "none"] | None = None
    client_name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=32)
    tarpit_seconds: int | None = Field(default=None, ge=0, le=3600)
    confidence: int | None = Field(default=None, ge=0, le=100)
    note: str | None = None


def _not_found(what: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "reason": f"{what} not found"})


@router.get("/fingerprints/top")
async def top(
    request: Request,
    kind: Kind = "ja3",
    by: Literal["seen", "failures"] = "seen",
    limit: int = Query(20, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Most seen fingerprints (captures) or most failing ones (distinct accounts)."""
    return await asyncio.to_thread(get_store(request).top, kind, limit, by)


@router.get("/fingerprints")
async def search(
    request: Request,
    q: str = Query(min_length=1, max_length=200),
    kind: Kind | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Fingerprints by value prefix and labels by value prefix or client name."""
    return await asyncio.to_thread(get_store(request).search, q, kind, limit)


@router.get("/fingerprints/{kind}/{value}")
async def lookup(request: Request, kind: Kind, value: str) -> dict[str, Any]:
    """Labels, counts, first/last seen, accounts seen with it, recent failures."""
    service = get_service(request)
    return await asyncio.to_thread(
        service.store.lookup, kind, value.lower(), None, service.settings.reputation_window_seconds
    )


@router.post("/labels", status_code=201)
async def create_label(request: Request, label: LabelIn) -> dict[str, Any]:
    """Create, or replace, the label of (kind, value, source)."""
    service = get_service(request)
    fields = label.model_dump()
    fields["value"] = fields["value"].lower()
    row = await asyncio.to_thread(service.store.upsert_label, fields)
    service.labels.invalidate((row["kind"], row["value"]))
    return row


@router.get("/labels/{label_id}")
async def get_label(request: Request, label_id: int) -> dict[str, Any]:
    row = await asyncio.to_thread(get_store(request).get_label, label_id)
    if row is None:
        raise _not_found("label")
    return row


@router.patch("/labels/{label_id}")
async def update_label(request: Request, label_id: int, patch: LabelPatch) -> dict[str, Any]:
    service = get_service(request)
    fields = patch.model_dump(exclude_unset=True)
    try:
        row = await asyncio.to_thread(service.store.update_label, label_id, fields)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "invalid", "reason": str(exc)}) from None
    if row is None:
        raise _not_found("label")
    service.labels.invalidate((row["kind"], row["value"]))
    return row


@router.delete("/labels/{label_id}")
async def delete_label(request: Request, label_id: int) -> dict[str, Any]:
    service = get_service(request)
    row = await asyncio.to_thread(service.store.delete_label, label_id)
    if row is None:
        raise _not_found("label")
    service.labels.invalidate((row["kind"], row["value"]))
    return row


@router.get("/decisions")
async def decisions(
    request: Request,
    limit: int = Query(100, ge=1, le=5000),
    username: str | None = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    """Recent verdicts and reports, newest first (the audit log)."""
    service = get_service(request)
    # Make the caller's own recent traffic visible: queued audit rows are written in batches.
    await asyncio.to_thread(service.writer.flush, 2.0)
    return await asyncio.to_thread(service.store.decisions, limit, username, since)


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    service = get_service(request)
    counts = await asyncio.to_thread(service.store.stats)
    return {
        "tables": counts,
        "label_cache_entries": len(service.labels),
        "degraded": service.degraded,
        "log_only": service.settings.log_only,
        "dovecot_openssl_profile": service.profiles.summary(),
    }

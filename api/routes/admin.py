"""Lookup and admin API under /api/v1 (admin token required on every route)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from ja3svc.api.deps import get_service, get_store, require_admin
from ja3svc.store.models import FINGERPRINT_KINDS
from pydantic import BaseModel, Field

from ja3svc.vocabulary import LABEL_ACTIONS, LABEL_TEXT_LIMITS, MAX_TARPIT_SECONDS, InvalidLabel

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_admin)], tags=["admin"])

Kind = Literal["ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot"]
# The Literal is for OpenAPI; it must not drift from the models' constraint.
assert set(get_args(Kind)) == set(FINGERPRINT_KINDS)


def _doc(default: Any = ..., **schema: Any) -> Any:
    """A field whose bounds are for the OpenAPI text only: the label validator
    (ja3svc.vocabulary.check_label, which the store calls) decides, so the API refuses what
    the CLI and the importers refuse, with the same reason."""
    return Field(default, json_schema_extra=schema)


_TEXT = LABEL_TEXT_LIMITS
_TARPIT = {"minimum": 0, "maximum": MAX_TARPIT_SECONDS}
_PERCENT = {"minimum": 0, "maximum": 100}


class LabelIn(BaseModel):
    kind: str = _doc(enum=list(FINGERPRINT_KINDS))
    value: str = _doc(description="an MD5 hash (JA3 kinds) or a JA4 fingerprint (ja4)")
    action: str = _doc("none", enum=list(LABEL_ACTIONS))
    source: str = _doc("manual", minLength=1, maxLength=_TEXT["source"])
    client_name: str | None = _doc(None, maxLength=_TEXT["client_name"])
    category: str | None = _doc(None, maxLength=_TEXT["category"])
    tarpit_seconds: int | None = _doc(None, **_TARPIT)
    confidence: int = _doc(100, **_PERCENT)
    note: str | None = None


class LabelPatch(BaseModel):
    action: str | None = _doc(None, enum=list(LABEL_ACTIONS))
    client_name: str | None = _doc(None, maxLength=_TEXT["client_name"])
    category: str | None = _doc(None, maxLength=_TEXT["category"])
    tarpit_seconds: int | None = _doc(None, **_TARPIT)
    confidence: int | None = _doc(None, **_PERCENT)
    note: str | None = None


def _invalid(exc: InvalidLabel) -> HTTPException:
    return HTTPException(422, detail={"error": "invalid", "reason": str(exc)})


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
    try:
        row = await asyncio.to_thread(service.store.upsert_label, label.model_dump())
    except InvalidLabel as exc:
        raise _invalid(exc) from None
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
    except InvalidLabel as exc:
        raise _invalid(exc) from None
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

"""Lookup and admin API under /api/v1 (admin token required on every route)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from ja3svc.api.deps import get_service, get_store, require_admin
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from ja3svc.models import FINGERPRINT_KINDS


class ErrorOut(BaseModel):
    """Every error of the service: a short code and a reason for a human."""

    error: str
    reason: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_admin)],
    tags=["admin"],
    # 400: a body that is not JSON (or nested too deeply), found by FastAPI before validation.
    responses=_errors(400, 401, 422),
)

Kind = Literal["ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot"]
# The Literal is for OpenAPI; it must not drift from the models' constraint.
assert set(get_args(Kind)) == set(FINGERPRINT_KINDS)


def _storable(text: str) -> str:
    # A lone surrogate (valid in JSON's \u escapes) has no UTF-8 form for any database: refused
    # here with a reason, not as a driver error later.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("must not contain a lone surrogate") from None
    return text


def _no_bool(value: object) -> object:
    # JSON's true/false are not numbers; pydantic's lax mode would store them as 1/0.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# Text that any database can store: no NUL (PostgreSQL refuses it in text; the pattern also
# tells the OpenAPI document) and no lone surrogate.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$"), AfterValidator(_storable)]
Int = Annotated[int, BeforeValidator(_no_bool)]
# Constraints inside the Annotated and before the validator: otherwise pydantic writes them into
# the JSON schema as "ge"/"le", which no client understands, instead of minimum/maximum.
TarpitSeconds = Annotated[int, Field(ge=0, le=3600), BeforeValidator(_no_bool)]
Action = Literal["allow", "deny", "tarpit", "none"]
# Row ids are 64-bit signed integers in both databases; anything beyond cannot exist and would
# overflow the driver's parameter.
LabelId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    value: Text = Field(min_length=1, max_length=64)
    action: Action = "none"
    source: Text = Field(default="manual", min_length=1, max_length=32)
    client_name: Text | None = Field(default=None, max_length=200)
    category: Text | None = Field(default=None, max_length=32)
    tarpit_seconds: TarpitSeconds | None = None
    confidence: Int = Field(default=100, ge=0, le=100)
    note: Text | None = Field(default=None, max_length=2000)


class LabelPatch(BaseModel):
    """Only the fields sent change; ``action`` and ``confidence`` cannot be null (the row
    always has one), the others are cleared by null."""

    model_config = ConfigDict(extra="forbid")

    # Not Optional: absent means unchanged (exclude_unset), null is refused with a 422.
    action: Action = Field(default=None, json_schema_extra={"default": None})  # type: ignore[assignment]
    client_name: Text | None = Field(default=None, max_length=200)
    category: Text | None = Field(default=None, max_length=32)
    tarpit_seconds: TarpitSeconds | None = None
    confidence: Int = Field(default=None, ge=0, le=100)  # type: ignore[assignment]
    note: Text | None = Field(default=None, max_length=2000)


class LabelOut(BaseModel):
    id: int
    kind: str
    value: str
    client_name: str | None
    category: str | None
    action: str
    tarpit_seconds: int | None
    source: str
    confidence: int
    note: str | None
    created_at: float
    updated_at: float


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
    q: Annotated[Text, Query(min_length=1, max_length=200)],
    kind: Kind | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Fingerprints by value prefix and labels by value prefix or client name."""
    return await asyncio.to_thread(get_store(request).search, q, kind, limit)


@router.get("/fingerprints/{kind}/{value}")
async def lookup(
    request: Request, kind: Kind, value: Annotated[Text, Path(max_length=200)]
) -> dict[str, Any]:
    """Labels, counts, first/last seen, accounts seen with it, recent failures."""
    service = get_service(request)
    return await asyncio.to_thread(
        service.store.lookup, kind, value.lower(), None, service.settings.reputation_window_seconds
    )


@router.post("/labels", status_code=201, response_model=LabelOut)
async def create_label(request: Request, label: LabelIn) -> dict[str, Any]:
    """Create, or replace, the label of (kind, value, source)."""
    service = get_service(request)
    fields = label.model_dump()
    fields["value"] = fields["value"].lower()
    row = await asyncio.to_thread(service.store.upsert_label, fields)
    service.labels.invalidate((row["kind"], row["value"]))
    return row


@router.get("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def get_label(request: Request, label_id: LabelId) -> dict[str, Any]:
    row = await asyncio.to_thread(get_store(request).get_label, label_id)
    if row is None:
        raise _not_found("label")
    return row


@router.patch("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def update_label(request: Request, label_id: LabelId, patch: LabelPatch) -> dict[str, Any]:
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


@router.delete("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def delete_label(request: Request, label_id: LabelId) -> dict[str, Any]:
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
    username: Annotated[Text | None, Query(max_length=200)] = None,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
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
    }

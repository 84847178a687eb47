"""Lookup and admin API under /api/v1 (admin token required on every route).

Times are accepted as ISO-8601 (UTC unless an offset is given) or epoch seconds and returned
as ISO-8601 UTC strings. A query parameter the route does not know is refused with 422 (a
misspelt filter must not silently list everything).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from ja3svc.api.deps import get_service, get_store, require_admin
from ja3svc.store.labels import LabelFilter, label_page
from ja3svc.store.models import FINGERPRINT_KINDS
from ja3svc.store.policy_store import DecisionFilter, label_dict
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StringConstraints

from ja3svc.timefmt import iso, parse_time
from ja3svc.vocabulary import (
    JA4_RE,
    LABEL_ACTIONS,
    LABEL_TEXT_LIMITS,
    MAX_TARPIT_SECONDS,
    InvalidLabel,
    fingerprint_value,
    guess_kind,
)

# Keys holding epoch seconds in what the store returns; the API answers them in ISO-8601.
TIME_KEYS = frozenset({"ts", "first_seen", "last_seen", "last_failure", "created_at", "updated_at"})


def reject_unknown_parameters(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise HTTPException(
            422,
            detail={
                "error": "invalid",
                "reason": f"unknown query parameter(s): {', '.join(unknown)}; "
                f"this endpoint takes: {', '.join(sorted(known)) or 'none'}",
            },
        )


def isotimes(obj: Any) -> Any:
    """``obj`` with every epoch field (``TIME_KEYS``) as an ISO-8601 string, recursively."""
    if isinstance(obj, dict):
        return {
            k: iso(v) if k in TIME_KEYS and isinstance(v, int | float) else isotimes(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [isotimes(v) for v in obj]
    return obj


def _time(name: str, raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "invalid", "reason": f"{name}: {exc}"}) from None


class ErrorOut(BaseModel):
    """Every error of the service: a short code and a reason for a human."""

    error: str
    reason: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_admin), Depends(reject_unknown_parameters)],
    tags=["admin"],
    # 400: a body that is not JSON (or nested too deeply), found by FastAPI before validation;
    # 503: the database failed (an outage), the reason names the error class.
    responses=_errors(400, 401, 422, 503),
)

Kind = Literal["ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot"]
# The Literal is for OpenAPI; it must not drift from the models' constraint.
assert set(get_args(Kind)) == set(FINGERPRINT_KINDS)


def _doc(default: Any = ..., **schema: Any) -> Any:
    """A field whose bounds are for the OpenAPI text only: the label validator
    (ja3svc.vocabulary.check_label, which the store calls) decides, so the API refuses what
    the CLI and the importers refuse, with the same reason."""
    return Field(default, json_schema_extra=schema)


def _storable(text: str) -> str:
    # Not a label rule but any database's: PostgreSQL refuses NUL in text, and a lone surrogate
    # (valid in JSON's \u escapes) has no UTF-8 form. Refused here with a reason, not as a
    # driver error later.
    if "\x00" in text:
        raise ValueError("must not contain NUL")
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


_NO_NUL = r"^[^\x00]*$"
# Text any database can store (the pattern puts the NUL rule into the OpenAPI document), and an
# integer that is not a boolean.
Text = Annotated[str, StringConstraints(pattern=_NO_NUL), AfterValidator(_storable)]
Int = Annotated[int, BeforeValidator(_no_bool)]
# Row ids are 64-bit signed integers in both databases; anything beyond cannot exist and would
# overflow the driver's parameter.
LabelId = Annotated[int, Path(ge=1, le=2**63 - 1)]

_TEXT = LABEL_TEXT_LIMITS
_TARPIT = {"minimum": 0, "maximum": MAX_TARPIT_SECONDS}
_PERCENT = {"minimum": 0, "maximum": 100}
# What Python's str.strip() keeps (so that the label validator finds a source not empty):
# spelt out, since JSON Schema's \S (ECMAScript's) does not count \x1c-\x1f as white space.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_BLANK = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
# What fingerprint_value accepts (surrounding white space aside): an MD5 hash in any case for
# every kind but ja4, a JA4 for ja4.
MD5_PATTERN = rf"^[{_SPACE}]*[0-9a-fA-F]{{32}}[{_SPACE}]*$"
JA4_PATTERN = rf"^[{_SPACE}]*{JA4_RE.pattern}[{_SPACE}]*$"
FINGERPRINT_PATTERN = rf"^[{_SPACE}]*(?:[0-9a-fA-F]{{32}}|{JA4_RE.pattern})[{_SPACE}]*$"


class LabelIn(BaseModel):
    model_config = {
        "json_schema_extra": {
            "if": {"properties": {"kind": {"const": "ja4"}}},
            "then": {"properties": {"value": {"pattern": JA4_PATTERN}}},
            "else": {"properties": {"value": {"pattern": MD5_PATTERN}}},
        }
    }

    kind: str = _doc(enum=list(FINGERPRINT_KINDS))
    value: Text = _doc(description="an MD5 hash (JA3 kinds) or a JA4 fingerprint (ja4)")
    action: str = _doc("none", enum=list(LABEL_ACTIONS))
    source: Text = _doc("manual", minLength=1, maxLength=_TEXT["source"], pattern=_NOT_BLANK)
    client_name: Text | None = _doc(None, maxLength=_TEXT["client_name"])
    category: Text | None = _doc(None, maxLength=_TEXT["category"])
    tarpit_seconds: Int | None = _doc(None, **_TARPIT)
    confidence: Int = _doc(100, **_PERCENT)
    note: Text | None = _doc(None)


class LabelPatch(BaseModel):
    """Only the fields sent change. ``action`` and ``confidence`` cannot be null (a label
    always has both): absent means unchanged, null is a 422. The others are cleared by null."""

    action: str = _doc(None, enum=list(LABEL_ACTIONS))
    client_name: Text | None = _doc(None, maxLength=_TEXT["client_name"])
    category: Text | None = _doc(None, maxLength=_TEXT["category"])
    tarpit_seconds: Int | None = _doc(None, **_TARPIT)
    confidence: Int = _doc(None, **_PERCENT)
    note: Text | None = _doc(None)


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
    created_at: str  # ISO-8601
    updated_at: str


def _invalid(exc: InvalidLabel) -> HTTPException:
    return HTTPException(422, detail={"error": "invalid", "reason": str(exc)})


def _fingerprint(kind: str, raw: str) -> str:
    """``raw`` in canonical form as a value of ``kind`` (the label validator's rule), or the
    validator's reason as a 422."""
    try:
        return fingerprint_value(kind, raw)
    except InvalidLabel as exc:
        raise _invalid(exc) from None


def _is_fingerprint(raw: str) -> bool:
    try:
        fingerprint_value(guess_kind(raw), raw)
    except InvalidLabel:
        return False
    return True


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
    return isotimes(await asyncio.to_thread(get_store(request).top, kind, limit, by))


@router.get("/fingerprints")
async def search(
    request: Request,
    q: Annotated[Text, Query(min_length=1, max_length=200)],
    kind: Kind | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Fingerprints by value prefix and labels by value prefix or client name."""
    return isotimes(await asyncio.to_thread(get_store(request).search, q, kind, limit))


@router.get("/fingerprints/{kind}/{value}", responses=_errors(404))
async def lookup(
    request: Request,
    kind: Kind,
    # The pattern describes the value in the OpenAPI document; the label validator checks it,
    # so the reason is the one the CLI gives (see store.queries).
    value: Annotated[str, Path(max_length=200, json_schema_extra={"pattern": FINGERPRINT_PATTERN})],
) -> dict[str, Any]:
    """Labels, counts, first/last seen, the other fingerprints of the same hellos
    (``family``), the accounts that logged in or failed with any of them, recent sightings and
    failures in the reputation window."""
    service = get_service(request)
    try:
        normal = fingerprint_value(kind, value)
    except InvalidLabel as exc:
        if _is_fingerprint(value):  # a JA4 asked for as ja3, or the other way round
            raise HTTPException(404, detail={"error": "not_found", "reason": str(exc)}) from None
        raise _invalid(exc) from None
    return isotimes(
        await asyncio.to_thread(
            service.store.lookup, kind, normal, None, service.settings.reputation_window_seconds
        )
    )


@router.post("/labels", status_code=201, response_model=LabelOut)
async def create_label(request: Request, label: LabelIn) -> dict[str, Any]:
    """Create, or replace, the label of (kind, value, source)."""
    service = get_service(request)
    try:
        row = await asyncio.to_thread(service.store.upsert_label, label.model_dump())
    except InvalidLabel as exc:
        raise _invalid(exc) from None
    service.labels.invalidate((row["kind"], row["value"]))
    return isotimes(row)


@router.get("/labels")
async def list_labels(
    request: Request,
    response: Response,
    kind: Kind | None = None,
    value: Annotated[str | None, Query(max_length=64, pattern=FINGERPRINT_PATTERN)] = None,
    source: Annotated[Text | None, Query(max_length=32)] = None,
    action: Literal["allow", "deny", "tarpit", "none"] | None = None,
    q: Annotated[
        Text | None,
        Query(max_length=200, description="value prefix or client name"),
    ] = None,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(
        None, ge=1, le=2**63 - 1, description="next_before of the previous page"
    ),
) -> dict[str, Any]:
    """Labels, newest first, one page at a time: pass ``next_before`` back as ``before``.
    ``scanned_to`` set with a short page means the search window ended there (filters without
    an index look at 50,000 labels per page) and older labels follow on the next page."""
    if value is not None and kind is not None:
        try:
            value = fingerprint_value(kind, value)
        except InvalidLabel:  # well-formed, but of another kind: no label can match
            return {"items": [], "next_before": None, "scanned_to": None}
    filt = LabelFilter(kind=kind, value=value, source=source, action=action, q=q)
    store = get_store(request)

    def read() -> Any:
        with store.session() as s:
            page = label_page(s, filt, limit, before)
            return page._replace(rows=[label_dict(r) for r in page.rows])

    page = await asyncio.to_thread(read)
    return {
        "items": isotimes(page.rows),
        "next_before": page.next_before,
        "scanned_to": page.scanned_to,
    }


@router.get("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def get_label(request: Request, label_id: LabelId) -> dict[str, Any]:
    row = await asyncio.to_thread(get_store(request).get_label, label_id)
    if row is None:
        raise _not_found("label")
    return isotimes(row)


@router.patch("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def update_label(request: Request, label_id: LabelId, patch: LabelPatch) -> dict[str, Any]:
    service = get_service(request)
    fields = patch.model_dump(exclude_unset=True)
    try:
        row = await asyncio.to_thread(service.store.update_label, label_id, fields)
    except InvalidLabel as exc:
        raise _invalid(exc) from None
    if row is None:
        raise _not_found("label")
    service.labels.invalidate((row["kind"], row["value"]))
    return isotimes(row)


@router.delete("/labels/{label_id}", response_model=LabelOut, responses=_errors(404))
async def delete_label(request: Request, label_id: LabelId) -> dict[str, Any]:
    service = get_service(request)
    row = await asyncio.to_thread(service.store.delete_label, label_id)
    if row is None:
        raise _not_found("label")
    service.labels.invalidate((row["kind"], row["value"]))
    return isotimes(row)


@router.get("/decisions")
async def decisions(
    request: Request,
    response: Response,
    limit: int = Query(100, ge=1, le=5000),
    username: Annotated[Text | None, Query(max_length=320)] = None,
    since: str | None = Query(
        None,
        description="ISO-8601 or epoch seconds",
        json_schema_extra={"format": "date-time"},
    ),
    until: str | None = Query(
        None,
        description="ISO-8601 or epoch seconds",
        json_schema_extra={"format": "date-time"},
    ),
    action: Literal[
        "allow",
        "tarpit",
        "reject",
        "log:allow",
        "log:tarpit",
        "log:reject",
        "success",
        "failure",
        "policy_reject",
    ]
    | None = Query(None, description="verdict, or a report's outcome"),
    rule: Annotated[Text | None, Query(max_length=64)] = None,
    fingerprint: Annotated[
        str | None,
        Query(pattern=MD5_PATTERN, description="the hash Dovecot sent (ja3_hash)"),
    ] = None,
    command: Literal["allow", "allow/before", "allow/after", "report"] | None = None,
    before: int | None = Query(
        None, ge=1, le=2**63 - 1, description="X-Next-Before of the previous page"
    ),
) -> list[dict[str, Any]]:
    """Verdicts and reports, newest first (the audit log). Every filter is applied; the next
    (older) page is ``before=`` the ``X-Next-Before`` response header. Each call searches at
    most 100,000 decisions (``X-Scanned-To`` then says where it stopped)."""
    if fingerprint is not None:
        fingerprint = _fingerprint("ja3", fingerprint)
    filt = DecisionFilter(
        since=_time("since", since),
        until=_time("until", until),
        username=username,
        fingerprint=fingerprint,
        action=action,
        rule=rule,
        command=command,
    )
    service = get_service(request)
    # Make the caller's own recent traffic visible: queued audit rows are written in batches.
    await asyncio.to_thread(service.writer.flush, 2.0)
    page = await asyncio.to_thread(service.store.decision_page, filt, limit, before)
    if page.next_before is not None:
        response.headers["X-Next-Before"] = str(page.next_before)
    if page.scanned_to is not None:
        response.headers["X-Scanned-To"] = str(page.scanned_to)
    return isotimes(page.rows)  # type: ignore[no-any-return]


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

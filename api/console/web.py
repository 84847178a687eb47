"""The operator console under /console: server-rendered pages (Jinja2), forms that work
without JavaScript, assets served by the app itself (no CDN), behind the admin credential.

Every page reads through the same store functions as the admin API and the CLI
(``PolicyStore.decision_page`` and ``lookup``, ``store.labels.label_page``, ``store.console``);
every write goes through the store and then invalidates the service's caches, as the admin API
does. Security is in ``api.console.security``; this module applies it to every route through
``ConsoleRoute``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from ja3svc.api.console import security
from ja3svc.api.service import PolicyService
from ja3svc.store import console as reads
from ja3svc.store.labels import (
    LabelDefaults,
    LabelFilter,
    as_row,
    label_page,
    upsert_labels,
)
from ja3svc.store.policy_store import REPORT_OUTCOMES, VERDICTS, DecisionFilter, label_dict
from starlette.datastructures import FormData, UploadFile

from ja3svc.label_formats import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    RENDERERS,
    render_suricata_dataset,
)
from ja3svc.policy import Reputation
from ja3svc.policy.engine import reputation_scope
from ja3svc.policy.explain import RULE_TEXT, explain_rule
from ja3svc.timefmt import age, iso, parse_time, short
from ja3svc.vocabulary import (
    FINGERPRINT_KINDS,
    LABEL_ACTIONS,
    InvalidLabel,
    fingerprint_value,
    guess_kind,
)

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
PAGE_SIZE = 50
# An upload larger than this is refused before it is parsed (public lists are a few MB).
MAX_IMPORT_BYTES = 20 << 20

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["iso"] = iso
_env.filters["short"] = short


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason


class ConsoleRoute(APIRoute):
    """Every console response gets the security headers, and the console's own refusals
    (no session, bad CSRF token, bad input) become pages instead of the API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Redirect as r:
                response = RedirectResponse(r.location, status_code=303)
            except _Refused as r:
                response = _page(request, "error.html", status_code=r.status, reason=r.reason)
            for name, value in security.SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return route


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


# --- plumbing -------------------------------------------------------------------------------


def _service(request: Request) -> PolicyService:
    return request.app.state.service  # type: ignore[no-any-return]


def _settings(request: Request) -> Any:
    return request.app.state.settings


def _enabled(request: Request) -> None:
    if not _settings(request).console.enabled:
        raise _Refused(404, "The console is turned off (console.enabled = false).")
    if not _service(request).settings.admin_token:
        raise _Refused(
            503, "The console signs in with the admin token: set policy.admin_token first."
        )


def _secure_cookie(request: Request) -> bool:
    configured = _settings(request).console.cookie_secure
    return request.url.scheme == "https" if configured is None else bool(configured)


async def _db(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a store call in a worker thread with a session of its own."""
    store = _service(request).store

    def call() -> Any:
        with store.session() as s:
            return fn(s, *args)

    return await asyncio.to_thread(call)


async def _write(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    store = _service(request).store

    def call() -> Any:
        with store.write_session() as s, s.begin():
            return fn(s, *args)

    return await asyncio.to_thread(call)


async def _session_token(request: Request) -> str:
    """The signed-in session's token; otherwise to the sign-in page (GET) or refused."""
    _enabled(request)
    token = request.cookies.get(security.SESSION_COOKIE)
    if token and await _db(request, reads.session_alive, token, time.time()):
        request.state.csrf = security.csrf_for(token)
        return token
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise _Redirect("/console/login?" + urlencode({"next": target}))
    raise _Refused(401, "Not signed in (or the session ended). Sign in again.")


async def _form(request: Request, token: str) -> FormData:
    """The POSTed form, after its CSRF token was checked against the session's."""
    form = await request.form(max_part_size=MAX_IMPORT_BYTES)
    given = form.get("csrf")
    if not security.same(given if isinstance(given, str) else None, security.csrf_for(token)):
        raise _Refused(403, "The form's security token is missing or wrong. Reload the page.")
    return form


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("title", "Sign in" if template == "login.html" else "ja3svc")
    context.setdefault("csrf", getattr(request.state, "csrf", ""))
    context.setdefault("signed_in", bool(getattr(request.state, "csrf", "")))
    context.setdefault("now", time.time())
    context.setdefault("flash", request.query_params.get("done", ""))
    context["path"] = request.url.path
    context["age"] = age
    html = _env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code)


def _text(form: FormData | dict[str, Any], name: str, limit: int = 200) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    if len(value) > limit:
        raise _Refused(422, f"{name} is longer than {limit} characters.")
    return value


def _int(form: Any, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    raw = _text(form, name, 20)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Refused(422, f"{name} must be a whole number.") from None
    if not lo <= value <= hi:
        raise _Refused(422, f"{name} must be between {lo} and {hi}.")
    return value


def _kind_value(kind: str, value: str) -> tuple[str, str]:
    if kind not in FINGERPRINT_KINDS:
        raise _Refused(404, f"Unknown fingerprint kind {kind!r}.")
    try:
        return kind, fingerprint_value(kind, value)
    except InvalidLabel as exc:
        raise _Refused(422, f"{exc}.") from None


def _label_fields(form: FormData, tarpit_default: int | None) -> dict[str, Any]:
    """What a label form sets: the action (checked) and the fields beside it; a tarpit without
    tarpit_seconds gets ``tarpit_default``."""
    action = _text(form, "action", 10)
    if action not in LABEL_ACTIONS:
        raise _Refused(422, f"action must be one of {', '.join(LABEL_ACTIONS)}.")
    tarpit = _int(form, "tarpit_seconds", 1, 3600) if action == "tarpit" else None
    return {
        "action": action,
        "tarpit_seconds": tarpit_default if action == "tarpit" and tarpit is None else tarpit,
        "client_name": _text(form, "client_name", 200) or None,
        "category": _text(form, "category", 32) or None,
        "confidence": _int(form, "confidence", 0, 100, 100),
        "note": _text(form, "note", 2000) or None,
    }


def _done(path: str, message: str) -> _Redirect:
    return _Redirect(f"{path}?{urlencode({'done': message})}")


def verdict_class(action: str) -> str:
    """CSS class of a verdict or report outcome."""
    base = action.removeprefix("log:")
    return {
        "allow": "ok", "success": "ok", "tarpit": "warn", "reject": "bad", "failure": "bad",
        "policy_reject": "bad",
    }.get(base, "plain")  # fmt: skip


def explain(d: dict[str, Any], connection: list[tuple[str, str]]) -> dict[str, Any]:
    """A decision row with what the pages show: the rule's explanation, the labels that
    produced it, and the fingerprints to link to (Dovecot's hash, else the connection's)."""
    refs: list[tuple[str, str]] = []
    if d.get("ja3_hash"):
        refs.append(("ja3_dovecot", d["ja3_hash"]))
    for ref in connection:
        if ref not in refs:
            refs.append(ref)
    return {
        **d,
        "explanation": explain_rule(d.get("rule")),
        "css": verdict_class(d.get("action") or ""),
        "log_only": (d.get("action") or "").startswith("log:"),
        "refs": refs,
    }


# --- sign-in --------------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    # Only paths of this console: never an absolute or protocol-relative URL.
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


@router.get("/login")
async def login_form(request: Request, next: str = "/console/") -> Response:
    _enabled(request)
    nonce = security.new_token()
    response = _page(request, "login.html", login_csrf=nonce, next=_safe_next(next), error="")
    response.headers.append(
        "Set-Cookie",
        security.cookie_header(
            security.LOGIN_CSRF_COOKIE, nonce, secure=_secure_cookie(request), max_age=3600
        ),
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    _enabled(request)
    form = await request.form()
    target = _safe_next(_text(form, "next", 2000))
    if not security.same(
        request.cookies.get(security.LOGIN_CSRF_COOKIE), _text(form, "login_csrf", 100)
    ):
        raise _Refused(403, "The sign-in form expired or was not sent from this console.")
    token = _text(form, "token", 1000)
    if not security.same(token, _service(request).settings.admin_token):
        await asyncio.sleep(0.5)  # slows guessing a little; the token's length does the rest
        nonce = security.new_token()
        response = _page(
            request, "login.html", status_code=401, login_csrf=nonce, next=target,
            error="Wrong admin token.",
        )  # fmt: skip
        response.headers.append(
            "Set-Cookie",
            security.cookie_header(
                security.LOGIN_CSRF_COOKIE, nonce, secure=_secure_cookie(request), max_age=3600
            ),
        )
        return response
    session = security.new_token()
    lifetime = _settings(request).console.session_seconds
    await _write(request, reads.create_session, session, lifetime, time.time())
    response = RedirectResponse(target, status_code=303)
    secure = _secure_cookie(request)
    response.headers.append(
        "Set-Cookie",
        security.cookie_header(security.SESSION_COOKIE, session, secure=secure, max_age=lifetime),
    )
    response.headers.append(
        "Set-Cookie",
        security.cookie_header(security.LOGIN_CSRF_COOKIE, "", secure=secure, max_age=0),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    token = await _session_token(request)
    await _form(request, token)
    await _write(request, reads.end_session, token)
    response = RedirectResponse("/console/login?" + urlencode({"done": "Signed out."}), 303)
    response.headers.append(
        "Set-Cookie",
        security.cookie_header(
            security.SESSION_COOKIE, "", secure=_secure_cookie(request), max_age=0
        ),
    )
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = STATIC / name
    media = STATIC_TYPES.get(path.suffix)
    if media is None or "/" in name or name.startswith(".") or not path.is_file():
        raise _Refused(404, "No such file.")
    return Response(path.read_bytes(), media_type=media, headers={"Cache-Control": "max-age=3600"})


# --- overview -------------------------------------------------------------------------------


_HEAD_CHECKED: dict[int, tuple[float, bool]] = {}
HEAD_CHECK_SECONDS = 30.0


def _at_head(db: Any) -> bool:
    """``db.is_at_head()``, asked at most every HEAD_CHECK_SECONDS (Alembic's check costs
    ~20 ms; a schema changes only through `ja3svc db upgrade`). Errors are not cached."""
    now = time.monotonic()
    checked = _HEAD_CHECKED.get(id(db))
    if checked is None or now - checked[0] > HEAD_CHECK_SECONDS:
        checked = (now, bool(db.is_at_head()))
        _HEAD_CHECKED[id(db)] = checked
    return checked[1]


def _health(request: Request) -> dict[str, Any]:
    service = _service(request)
    db = request.app.state.database
    try:
        database = "ok" if _at_head(db) else "schema not at head: run `ja3svc db upgrade`"
    except Exception as exc:
        database = f"unreachable ({type(exc).__name__})"
    if service.degraded:
        database = f"degraded: recent error {service.last_db_error}"
    components: dict[str, dict[str, float]] = {}
    for prefix, callback in (getattr(request.app.state, "component_metrics", {}) or {}).items():
        try:
            components[prefix] = {k: v for k, v in dict(callback()).items()}
        except Exception as exc:
            components[prefix] = {f"error: {type(exc).__name__}": 1}
    return {
        "database": database,
        "database_url": db.url if hasattr(db, "url") else "",
        "label_cache": len(service.labels),
        "log_only": service.settings.log_only,
        "components": components,
    }


def _dovecot_profile(request: Request) -> dict[str, Any]:
    """The OpenSSL profile ja3svc computes Dovecot's hash with, and the one the service
    detected from Dovecot's own hashes of captured connections (api.dovecot_profile)."""
    summary = _service(request).profiles.summary()
    return {
        "configured": _settings(request).dovecot_openssl_profile,
        "detected": summary.get("profile") or "",
        "description": summary.get("description") or "",
        "connections": {k: v for k, v in summary.get("connections", {}).items() if v},
        "warning": summary.get("warning", ""),
    }


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    await _session_token(request)

    def read(s: Any) -> tuple[reads.Overview, dict[str, Any]]:
        return reads.overview(s), _health(request)

    data, health = await _db(request, read)
    return _page(
        request,
        "overview.html",
        ov=data,
        chart=_chart(data),
        health=health,
        profile=_dovecot_profile(request),
        title="Overview",
    )


_CHART_COLOURS = {"allow": "#2f7d4f", "tarpit": "#c27c0e", "reject": "#b3261e"}


def _chart(ov: reads.Overview) -> dict[str, Any]:
    """Geometry of the stacked per-minute bar chart, drawn as SVG by the template."""
    width, height, left, bottom = 1200, 240, 44, 24
    n = len(ov.minutes)
    totals = [sum(series[i] for series in ov.per_minute.values()) for i in range(n)]
    peak = max([*totals, 1])
    # A round top for the axis: 1, 2, 5 x 10^k.
    scale = 1
    while scale * 10 < peak:
        scale *= 10
    top = next(m * scale for m in (1, 2, 5, 10) if m * scale >= peak)
    plot_h = height - bottom - 8
    bar_w = (width - left - 4) / n
    bars = []
    for i in range(n):
        y = height - bottom
        for verdict in ("allow", "tarpit", "reject"):
            count = ov.per_minute.get(verdict, [0] * n)[i]
            if not count:
                continue
            h = count / top * plot_h
            y -= h
            bars.append(
                {
                    "x": round(left + i * bar_w + 1, 1),
                    "y": round(y, 1),
                    "w": round(max(bar_w - 2, 1), 1),
                    "h": round(h, 1),
                    "fill": _CHART_COLOURS[verdict],
                    "title": f"{short(ov.minutes[i])[11:16]} UTC: {count} {verdict}",
                }
            )
    ticks = [
        {"y": round(height - bottom - plot_h * f, 1), "label": f"{top * f:g}"} for f in (0, 0.5, 1)
    ]
    labels = [
        {"x": round(left + i * bar_w + bar_w / 2, 1), "label": short(ov.minutes[i])[11:16]}
        for i in range(0, n, 10)
    ]
    sums = {v: sum(ov.per_minute.get(v, [])) for v in ("allow", "tarpit", "reject")}
    return {
        "width": width, "height": height, "left": left, "base": height - bottom,
        "bars": bars, "ticks": ticks, "labels": labels, "sums": sums,
        "colours": _CHART_COLOURS, "total": sum(totals),
    }  # fmt: skip


# --- decisions ------------------------------------------------------------------------------

_ACTIONS = (*VERDICTS, *(f"log:{v}" for v in VERDICTS), *REPORT_OUTCOMES)


def _decision_filter(request: Request) -> tuple[DecisionFilter, dict[str, str], list[str]]:
    q = request.query_params
    now = time.time()
    values = {k: q.get(k, "").strip() for k in ("since", "until", "verdict", "user", "fp", "rule")}
    values["command"] = q.get("command", "allow").strip()
    problems = []
    times: dict[str, float | None] = {"since": None, "until": None}
    for key in ("since", "until"):
        if values[key]:
            try:
                times[key] = parse_time(values[key], now)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    if values["verdict"] and values["verdict"] not in _ACTIONS:
        problems.append(f"verdict: {values['verdict']!r} is not one of {', '.join(_ACTIONS)}")
        values["verdict"] = ""
    if values["command"] not in ("allow", "allow/before", "allow/after", "report", "all"):
        problems.append("command: use allow, allow/before, allow/after, report or all")
        values["command"] = "allow"
    filt = DecisionFilter(
        since=times["since"],
        until=times["until"],
        username=values["user"] or None,
        fingerprint=values["fp"] or None,
        action=values["verdict"] or None,
        rule=values["rule"] or None,
        command=None if values["command"] == "all" else values["command"],
    )
    return filt, values, problems


@router.get("/decisions", response_class=HTMLResponse)
async def decisions(request: Request) -> Response:
    await _session_token(request)
    filt, values, problems = _decision_filter(request)
    before = _int(request.query_params, "before", 1, 2**62)
    service = _service(request)
    await asyncio.to_thread(service.writer.flush, 2.0)

    def read(s: Any) -> Any:
        page = service.store.decision_page(filt, PAGE_SIZE, before)
        links = reads.connection_fingerprints(s, page.rows)
        return page, links

    page, links = await _db(request, read)
    rows = [explain(d, links.get(d["id"], [])) for d in page.rows]
    live = request.query_params.get("live") == "1" and before is None
    base = {k: v for k, v in values.items() if v}
    return _page(
        request,
        "decisions.html",
        rows=rows,
        page=page,
        values=values,
        problems=problems,
        live=live,
        refresh=_settings(request).console.refresh_seconds,
        actions=_ACTIONS,
        rules=sorted(RULE_TEXT),
        next_url=(
            "/console/decisions?" + urlencode({**base, "before": page.next_before})
            if page.next_before
            else ""
        ),
        live_url="/console/decisions?" + urlencode({**base, "live": "1"}),
        still_url="/console/decisions?" + urlencode(base),
        title="Decisions",
    )


# --- fingerprints ---------------------------------------------------------------------------


@router.get("/fingerprints", response_class=HTMLResponse)
async def fingerprint_search(request: Request) -> Response:
    await _session_token(request)
    q = _text(request.query_params, "q", 200)
    hits: list[dict[str, Any]] = []
    if q:
        kind = guess_kind(q)
        try:
            exact = fingerprint_value(kind, q)
        except InvalidLabel:
            exact = ""
        if exact:  # a whole hash or JA4: straight to its page
            raise _Redirect(f"/console/fingerprints/{kind}/{exact}")
        hits = await asyncio.to_thread(_service(request).store.search, q, None, 50)
    return _page(request, "search.html", q=q, hits=hits, title="Find a fingerprint")


def _everywhere(service: PolicyService, failures: dict[str, Any], window: int) -> str:
    """What the reputation rules do with the fingerprint on a network it did not fail from:
    "reject", "tarpit" or "" (its failing networks themselves may be held up regardless)."""
    rep = Reputation(
        failures["distinct_accounts"], failures["failures"], window, "", 0,
        failures["counted_accounts"], failures["networks"], failures["succeeded_accounts"],
    )  # fmt: skip
    cfg = service.config
    if reputation_scope(rep, cfg, cfg.reputation_reject_accounts):
        return "reject"
    if reputation_scope(rep, cfg, cfg.reputation_tarpit_accounts):
        return "tarpit"
    return ""


@router.get("/fingerprints/{kind}/{value}", response_class=HTMLResponse)
async def fingerprint(request: Request, kind: str, value: str) -> Response:
    await _session_token(request)
    kind, value = _kind_value(kind, value)
    service = _service(request)
    window = service.settings.reputation_window_seconds
    info = await asyncio.to_thread(service.store.lookup, kind, value, None, window)
    recent = await asyncio.to_thread(
        service.store.decision_page, DecisionFilter(fingerprint=value, command="allow"), 10
    ) if kind in ("ja3", "ja3_dovecot") else None  # fmt: skip
    p = service.settings
    return _page(
        request,
        "fingerprint.html",
        fp=info,
        recent=[explain(d, []) for d in recent.rows] if recent else [],
        reject_message=p.reject_message,
        deny_min_confidence=p.deny_min_confidence,
        tarpit_default=p.tarpit_seconds,
        reputation={
            "window": window,
            "tarpit_at": p.reputation_tarpit_accounts,
            "reject_at": p.reputation_reject_accounts,
            "everywhere": _everywhere(service, info["failures"], window),
        },
        title=f"{kind} {value}",
    )


@router.post("/fingerprints/{kind}/{value}/label")
async def label_fingerprint(request: Request, kind: str, value: str) -> Response:
    token = await _session_token(request)
    form = await _form(request, token)
    kind, value = _kind_value(kind, value)
    service = _service(request)
    label = _label_fields(form, service.settings.tarpit_seconds)
    fields = {"kind": kind, "value": value, **label, "source": "manual"}
    try:
        await asyncio.to_thread(service.store.upsert_label, fields)
    except ValueError as exc:
        raise _Refused(422, str(exc)) from None
    service.labels.invalidate((kind, value))
    action = label["action"]
    what = f"tarpit {label['tarpit_seconds']} s" if action == "tarpit" else action
    raise _done(f"/console/fingerprints/{kind}/{value}", f"Labelled {what} (source manual).")


@router.post("/labels/{label_id}/delete")
async def delete_label(request: Request, label_id: int) -> Response:
    token = await _session_token(request)
    form = await _form(request, token)
    service = _service(request)
    row = await asyncio.to_thread(service.store.delete_label, label_id)
    if row is None:
        raise _Refused(404, "No such label (already removed?).")
    service.labels.invalidate((row["kind"], row["value"]))
    back = _text(form, "back", 500)
    target = _safe_next(back) if back else "/console/labels"
    raise _done(target.split("?")[0], f"Removed the {row['source']} label of {row['value']}.")


# --- accounts -------------------------------------------------------------------------------


@router.get("/accounts", response_class=HTMLResponse)
async def accounts(request: Request) -> Response:
    await _session_token(request)
    prefix = _text(request.query_params, "q", 320)
    after = _text(request.query_params, "after", 320) or None
    rows, nxt = await _db(request, reads.account_page, prefix, after, PAGE_SIZE)
    return _page(
        request,
        "accounts.html",
        rows=rows,
        q=prefix,
        next_url="/console/accounts?" + urlencode({"q": prefix, "after": nxt}) if nxt else "",
        title="Accounts",
    )


@router.get("/accounts/{username}", response_class=HTMLResponse)
async def account(request: Request, username: str) -> Response:
    await _session_token(request)
    service = _service(request)
    rows = await _db(request, reads.account_fingerprints, username)
    recent = await asyncio.to_thread(
        service.store.decision_page, DecisionFilter(username=username), 20
    )
    return _page(
        request,
        "account.html",
        username=username,
        rows=rows,
        recent=[explain(d, []) for d in recent.rows],
        min_successes=service.settings.user_min_successes,
        title=f"Account {username}",
    )


@router.post("/accounts/{username}/forget")
async def forget(request: Request, username: str) -> Response:
    token = await _session_token(request)
    form = await _form(request, token)
    row_id = _int(form, "id", 1, 2**62)
    if row_id is None:
        raise _Refused(422, "Which fingerprint? (id missing)")
    n = await _write(request, reads.forget_account_fingerprint, username, row_id)
    if not n:
        raise _Refused(404, "That fingerprint is not (or no longer) learned for this account.")
    _service(request).forget_history(username)
    raise _done(f"/console/accounts/{username}", "Forgot the fingerprint for this account.")


# --- labels ---------------------------------------------------------------------------------


def _label_filter(q: Any) -> tuple[LabelFilter, dict[str, str]]:
    values = {k: _text(q, k, 200) for k in ("q", "kind", "source", "action")}
    if values["kind"] and values["kind"] not in FINGERPRINT_KINDS:
        raise _Refused(422, f"kind must be one of {', '.join(FINGERPRINT_KINDS)}.")
    if values["action"] and values["action"] not in LABEL_ACTIONS:
        raise _Refused(422, f"action must be one of {', '.join(LABEL_ACTIONS)}.")
    filt = LabelFilter(
        kind=values["kind"] or None,
        source=values["source"] or None,
        action=values["action"] or None,
        q=values["q"] or None,
    )
    return filt, values


@router.get("/labels", response_class=HTMLResponse)
async def labels(request: Request) -> Response:
    await _session_token(request)
    filt, values = _label_filter(request.query_params)
    before = _int(request.query_params, "before", 1, 2**62)
    return await _labels_page(request, filt, values, before)


@router.get("/labels/export")
async def export_labels(request: Request) -> Response:
    await _session_token(request)
    fmt = _text(request.query_params, "format", 20)
    if fmt not in EXPORT_FORMATS:
        raise _Refused(422, f"format must be one of {', '.join(EXPORT_FORMATS)}.")
    filt, _ = _label_filter(request.query_params)
    if fmt in ("suricata", "zeek") and not filt.kind:
        filt = replace(filt, kind="ja3")  # the hash those tools compute themselves

    def read(s: Any) -> list[Any]:
        from ja3svc.store.models import Label
        from sqlalchemy import select

        stmt = select(Label).where(*filt.conditions()).order_by(Label.kind, Label.value)
        return [as_row(lb) for lb in s.scalars(stmt)]

    rows = await _db(request, read)
    if fmt == "suricata":
        body = "".join(render_suricata_dataset(rows, filt.kind or "ja3"))
    else:
        body = "".join(RENDERERS[fmt](rows))
    suffix = {"ja3svc-json": "json", "ja3svc-csv": "csv", "suricata": "lst", "zeek": "intel"}
    return Response(
        body,
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="ja3svc-labels.{suffix.get(fmt, "txt")}"'
        },
    )


@router.get("/labels/{label_id}", response_class=HTMLResponse)
async def edit_label_form(request: Request, label_id: int) -> Response:
    await _session_token(request)
    row = await asyncio.to_thread(_service(request).store.get_label, label_id)
    if row is None:
        raise _Refused(404, "No such label.")
    return _page(request, "label_edit.html", label=row, actions=LABEL_ACTIONS, title="Edit label")


@router.post("/labels/{label_id}")
async def edit_label(request: Request, label_id: int) -> Response:
    token = await _session_token(request)
    form = await _form(request, token)
    # A tarpit left without seconds keeps none: the configured tarpit applies when it matches.
    fields = _label_fields(form, None)
    service = _service(request)
    try:
        row = await asyncio.to_thread(service.store.update_label, label_id, fields)
    except ValueError as exc:
        raise _Refused(422, str(exc)) from None
    if row is None:
        raise _Refused(404, "No such label.")
    service.labels.invalidate((row["kind"], row["value"]))
    raise _done(f"/console/labels/{label_id}", "Saved.")


@router.post("/labels-import", response_class=HTMLResponse)
async def import_labels(request: Request) -> Response:
    token = await _session_token(request)
    form = await _form(request, token)
    fmt_name = _text(form, "format", 20)
    fmt = IMPORT_FORMATS.get(fmt_name)
    if fmt is None:
        raise _Refused(422, f"format must be one of {', '.join(IMPORT_FORMATS)}.")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _Refused(422, "Choose a file to import.")
    data = await upload.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise _Refused(413, f"The file is larger than {MAX_IMPORT_BYTES >> 20} MB.")
    action = _text(form, "action", 10) or "none"
    if action not in LABEL_ACTIONS:
        raise _Refused(422, f"action must be one of {', '.join(LABEL_ACTIONS)}.")
    tarpit = _int(form, "tarpit_seconds", 1, 3600) if action == "tarpit" else None
    if action == "tarpit" and tarpit is None:
        raise _Refused(422, "A tarpit import needs tarpit_seconds.")
    confidence = _int(form, "confidence", 0, 100, fmt.confidence)
    source = _text(form, "source", 32) or fmt.source
    dry_run = form.get("dry_run") == "1"
    result = fmt.parse(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    rows = [replace(r, source=source) for r in result.rows] if form.get("source") else result.rows
    defaults = LabelDefaults(
        source=source, action=action, confidence=int(confidence or 0), tarpit_seconds=tarpit
    )
    if result.refused is not None:
        raise _Refused(
            422,
            f"{upload.filename or 'The file'} is not a {fmt_name} list: {result.refused}. "
            "Nothing was imported.",
        )
    outcome = None
    if rows:
        # The same call writes or, on a dry run, only compares (nothing is written).
        outcome = await asyncio.to_thread(
            functools.partial(upsert_labels, dry_run=dry_run),
            request.app.state.database,
            rows,
            defaults,
        )
        if not dry_run:
            _service(request).labels.invalidate()
    preview = {
        "file": upload.filename or "upload",
        "format": fmt_name,
        "rows": len(rows),
        "new": outcome.inserted if outcome else 0,
        "updated": outcome.updated if outcome else 0,
        "changed": outcome.changed if outcome else 0,
        "problems": [str(p) for p in result.problems[:200]],
        "problem_count": len(result.problems),
        "notes": list(result.notes),
        "sample": rows[:20],
        "dry_run": dry_run,
        "action": action,
        "source": source,
        "confidence": confidence,
    }
    filt, values = _label_filter({})
    return await _labels_page(request, filt, values, None, preview)


async def _labels_page(
    request: Request,
    filt: LabelFilter,
    values: dict[str, str],
    before: int | None,
    preview: dict[str, Any] | None = None,
) -> Response:
    """The labels page: one page of the list under ``filt`` (the form shows ``values``), and
    after an import its ``preview`` above the list."""
    page = await _db(request, _label_rows, filt, PAGE_SIZE, before)
    base = {k: v for k, v in values.items() if v}
    # The answer to an import is about the file: it offers no "Older" link to page on from.
    onward = page.next_before if preview is None else None
    return _page(
        request,
        "labels.html",
        rows=page.rows,
        page=page,
        values=values,
        kinds=FINGERPRINT_KINDS,
        actions=LABEL_ACTIONS,
        formats=IMPORT_FORMATS,
        exports=list(EXPORT_FORMATS),
        export_query=urlencode(base),
        next_url=("/console/labels?" + urlencode({**base, "before": onward}) if onward else ""),
        preview=preview,
        title="Labels",
    )


def _label_rows(s: Any, filt: LabelFilter, limit: int, before: int | None) -> Any:
    page = label_page(s, filt, limit, before)
    return page._replace(rows=[label_dict(r) for r in page.rows])

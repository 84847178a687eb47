"""Sign-in, sessions, CSRF tokens and the headers every console response carries.

- Sign-in takes the admin token (``policy.admin_token``) from a form. A random session token
  goes into an HttpOnly, SameSite=Strict cookie scoped to /console (Secure when the request came
  over HTTPS, or as ``console.cookie_secure`` says); the database keeps only its SHA-256, so
  logging out (deleting the row) ends the session on every worker.
- CSRF: every form carries a token bound to the session (an HMAC of the session token), checked
  in constant time on every POST. The sign-in form, which has no session yet, uses a
  double-submit cookie instead.
- Headers: a Content-Security-Policy without ``unsafe-inline`` (scripts and styles only from
  /console/static), no framing, no MIME sniffing, no referrer, no caching of pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

SESSION_COOKIE = "ja3svc_console"
LOGIN_CSRF_COOKIE = "ja3svc_login_csrf"
COOKIE_PATH = "/console"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: derived, so nothing more is stored per session."""
    return hmac.new(session_token.encode(), b"ja3svc console csrf", hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def cookie_header(
    name: str, value: str, *, secure: bool, max_age: int | None, path: str = COOKIE_PATH
) -> str:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)

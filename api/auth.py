"""Credential checks for Dovecot and for administrators (constant-time compares)."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Mapping, Sequence


@functools.lru_cache(maxsize=16)
def _encoded(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    # Encoded once per configuration, not per request (the policy endpoint checks every call).
    return tuple(s.encode() for s in secrets)


def _matches_any(candidate: str, secrets: Sequence[str]) -> bool:
    # Compare against every configured secret without short-circuiting, so timing reveals
    # neither which secret matched nor how much of it.
    ok = False
    given = candidate.encode()
    for secret in _encoded(tuple(secrets)):
        ok |= hmac.compare_digest(given, secret)
    return ok


@functools.lru_cache(maxsize=16)
def _header_names(header_name: str) -> tuple[str, ...]:
    # The configured header and X-API-Key, each once (they are usually the same).
    return tuple(dict.fromkeys((header_name.lower(), "x-api-key")))


def basic_password(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def check_dovecot(headers: Mapping[str, str], header_name: str, keys: Sequence[str]) -> str | None:
    """``None`` when the request may pass, else the reason for a 401.

    Accepted: the configured header (Dovecot's ``auth_policy_server_api_header``), the default
    ``X-API-Key`` (what Dovecot sends for a bare value), or HTTP Basic from a
    ``http://user:pass@host`` URL, where only the password is checked (as weakforced does).
    """
    if not keys:
        return None
    presented = False
    for name in _header_names(header_name):
        value = headers.get(name)
        if value is not None:
            presented = True
            if _matches_any(value.strip(), keys):
                return None
    authorization = headers.get("authorization")
    if authorization:
        presented = True
        password = basic_password(authorization)
        if password is not None and _matches_any(password, keys):
            return None
    return "wrong credential" if presented else "missing credential"


def check_admin(headers: Mapping[str, str], token: str) -> str | None:
    if not token:
        return "admin API disabled: set policy.admin_token"
    given = headers.get("x-admin-token")
    if given is None:
        authorization = headers.get("authorization", "")
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer":
            given = rest.strip()
    if given is None:
        return "missing admin token"
    return None if _matches_any(given, [token]) else "wrong admin token"

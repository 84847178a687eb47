"""Credential checks for Dovecot and for administrators (constant-time compares)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping, Sequence


def _matches_any(given: bytes, secrets: Sequence[bytes]) -> bool:
    # Compare against every configured secret without short-circuiting, so timing reveals
    # neither which secret matched nor how much of it.
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(given, secret)
    return ok


def basic_password(authorization: bytes) -> bytes | None:
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        return None
    return decoded.partition(b":")[2]


class DovecotCredentials:
    """Checks Dovecot's credential on the raw ASGI headers of every policy request.

    Accepted: the configured header (Dovecot's ``auth_policy_server_api_header``), the default
    ``X-API-Key`` (what Dovecot sends for a bare value), or HTTP Basic from a
    ``http://user:pass@host`` URL, where only the password is checked (as weakforced does).
    Of a repeated header the first one counts. Values are compared as bytes against the
    UTF-8 encoding of the configured keys, all of them, in constant time.
    """

    def __init__(self, header_name: str, keys: Sequence[str]) -> None:
        # The configured header and X-API-Key, each once (they are usually the same).
        self._names = tuple(dict.fromkeys((header_name.lower().encode("latin-1"), b"x-api-key")))
        self._wanted = frozenset((*self._names, b"authorization"))
        self._keys = tuple(k.encode() for k in keys)

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """``None`` when the request may pass, else the reason for a 401."""
        if not self._keys:
            return None
        found: dict[bytes, bytes] = {}
        wanted = self._wanted
        for name, value in headers:  # ASGI: lower-case names
            if name in wanted and name not in found:
                found[name] = value
        if not found.get(b"authorization", b"x"):
            del found[b"authorization"]  # empty: as good as absent
        if not found:
            return "missing credential"
        for name in self._names:
            value = found.get(name)
            if value is not None and _matches_any(value.strip(), self._keys):
                return None
        authorization = found.get(b"authorization")
        if authorization:
            password = basic_password(authorization)
            if password is not None and _matches_any(password, self._keys):
                return None
        return "wrong credential"


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
    return None if _matches_any(given.encode(), [token.encode()]) else "wrong admin token"

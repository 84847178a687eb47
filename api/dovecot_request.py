"""Parse Dovecot's auth-policy request bodies (pure; see shared spec dovecot-auth-policy.md).

Dovecot sends one JSON object whose configured attributes are strings. A ``/`` in an attribute
name makes one nested level (``attrs/ja3`` -> ``{"attrs": {"ja3": ...}}``); deeper names arrive
mangled (``a/b/c`` -> ``{"a": {"b": {"b/c": ...}}}``). We flatten both back to the names the
administrator wrote, so settings can say ``attrs/ja3`` or ``conn/real_rip`` whatever the depth.
``success``/``policy_reject`` (report only) and ``tls`` are real booleans.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

COMMANDS = frozenset({"allow", "report"})
_FLAG_TYPES = frozenset({bool, type(None)})  # success, policy_reject, tls: booleans or absent
_MAX_DEPTH = 6  # Dovecot nests at most 2; deeper input is hostile or broken
_HEX32 = re.compile(r"[0-9a-f]{32}")


class BadRequest(ValueError):
    """The body is not what Dovecot sends; the message is returned to the caller as a reason."""


class DovecotRequest(NamedTuple):
    command: str
    attributes: dict[str, str]  # flattened: "attrs/ja3" -> "8a9d..."
    success: bool | None = None
    policy_reject: bool | None = None
    tls: bool | None = None

    def first(self, paths: list[str] | tuple[str, ...]) -> str:
        for path in paths:
            value = self.attributes.get(path)
            if value:
                return value
        return ""


def _flatten(
    obj: dict[str, object], prefix: str, last: str, out: dict[str, str], depth: int
) -> None:
    if depth > _MAX_DEPTH:
        raise BadRequest("attributes nested too deeply")
    for key, value in obj.items():
        if prefix and last and key.startswith(last + "/"):
            # Dovecot's mangled deeper form: inside "b" the key "b/c" means ".../b/c".
            parent = prefix.rpartition("/")[0]
            path = f"{parent}/{key}" if parent else key
        else:
            path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, str):
            out[path] = value
        elif isinstance(value, bool) or value is None:
            raise BadRequest(f"attribute {path!r} must be a string")
        elif isinstance(value, int | float):
            # Dovecot always sends strings, but a hand-written client sending a port as a number
            # is unambiguous; refusing it would only make integration harder.
            out[path] = str(value)
        elif isinstance(value, dict):
            _flatten(value, path, key.rpartition("/")[2], out, depth + 1)
        else:
            raise BadRequest(f"attribute {path!r} must be a string or an object")


_scan_value = json.JSONDecoder().scan_once


def _load(body: bytes) -> object:
    """``json.loads(body)``, with its Python-level steps skipped for what Dovecot sends: UTF-8
    with no whitespace around the object (detecting the encoding and two regular-expression
    matches cost as much as the scan itself). Anything else, errors included, goes through
    ``json.loads`` for its exact behaviour and messages."""
    try:
        text = body.decode()
        value, end = _scan_value(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(body)
    if end != len(text):
        return json.loads(body)
    return value


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _check_text(obj: dict[str, object], prefix: str) -> None:
    for key, value in obj.items():
        path = f"{prefix}/{key}" if prefix else key
        if _unstorable(key):
            raise BadRequest(f"attribute name {path!r} holds a NUL or a lone surrogate")
        if isinstance(value, str) and _unstorable(value):
            raise BadRequest(f"attribute {path!r} holds a NUL or a lone surrogate")
        if isinstance(value, dict):
            _check_text(value, path)


def parse_request(command: str, body: bytes) -> DovecotRequest:
    """Validate ``command`` and ``body``; raise :class:`BadRequest` with a reason otherwise."""
    if command not in COMMANDS:
        raise BadRequest(f"unknown command {command!r}; expected allow or report")
    try:
        data = _load(body)
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    if body.find(b"\\") != -1 and body.find(b"\\u") != -1:
        # A NUL or a lone surrogate can only arrive as a \u escape (raw, the body is not valid
        # JSON or not UTF-8), so only bodies with escapes are checked. Neither can be stored
        # (PostgreSQL refuses NUL; a lone surrogate has no UTF-8 form), and one such row would
        # otherwise fail the whole batch of writes it was queued with. Costs per request: a
        # one-byte find is a memchr, a two-byte one a slower search (~850 instructions for
        # Dovecot's bodies); bytes' ``in`` would also raise and clear a TypeError (it tries the
        # needle as an integer first).
        _check_text(data, "")
    success = data.pop("success", None)
    policy_reject = data.pop("policy_reject", None)
    tls = data.pop("tls", None)
    if not (type(success) in _FLAG_TYPES and type(policy_reject) in _FLAG_TYPES
            and type(tls) in _FLAG_TYPES):  # fmt: skip
        for key, value in (("success", success), ("policy_reject", policy_reject), ("tls", tls)):
            if type(value) not in _FLAG_TYPES:
                raise BadRequest(f"{key!r} must be a boolean")
    # Most attributes are top-level strings and stay where they are: the parsed object becomes
    # the attributes once its few objects (and oddities) are flattened into it.
    others = [key for key, value in data.items() if type(value) is not str]
    # All taken out first: a flattened path may equal another key still to be checked.
    for key, value in [(key, data.pop(key)) for key in others]:
        if type(value) is dict:
            _flatten(value, key, key.rpartition("/")[2], data, 1)
        else:
            _flatten({key: value}, "", "", data, 0)
    # tuple.__new__ straight away: the class call goes through a Python-level __new__.
    return tuple.__new__(DovecotRequest, (command, data, success, policy_reject, tls))


def normalise_hash(value: str) -> str:
    """Lower-case MD5 hex, or ``""`` when Dovecot had none (plaintext) or sent garbage."""
    value = value.strip().lower()
    return value if _HEX32.fullmatch(value) else ""


def parse_port(value: str) -> int | None:
    try:
        port = int(value)
    except ValueError:
        return None
    return port if 0 <= port <= 65535 else None

"""Names shared by the database, the list formats and the CLI, without importing SQLAlchemy,
and the one label validator every edge uses (``check_label``).

The command line builds every sub-command's parser on each start; keeping these here spares
`ja3svc pcap` the cost of loading the ORM just to list the fingerprint kinds.
"""

from __future__ import annotations

import re

FINGERPRINT_KINDS = ("ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot")
LABEL_ACTIONS = ("allow", "deny", "tarpit", "none")
HELLO_KINDS = ("client", "server")

# Which keys of HelloRecord.as_dict() carry each fingerprint kind: (value key, full string key).
# The sighting writer and the queries share this table so a new kind is added in one place.
FINGERPRINT_FIELDS: dict[str, tuple[str, str]] = {
    "ja3": ("ja3_hash", "ja3"),
    "ja3n": ("ja3n_hash", "ja3n"),
    "ja4": ("ja4", "ja4_r"),
    "ja3_dovecot": ("ja3_dovecot_hash", "ja3_dovecot"),
    "ja3s": ("ja3s_hash", "ja3s"),
}

# The column of the dovecot_hashes table holding each OpenSSL profile's hash
# (ja3svc.dovecot.OPENSSL_PROFILES): the sighting writer fills it, the models declare it.
DOVECOT_PROFILE_COLUMNS: dict[str, str] = {"openssl-3.0": "openssl30", "openssl-3.2": "openssl32"}

# (kind, value): how labels, aggregates and the service's caches key a fingerprint.
# ja3svc.policy.FingerprintRef is the same pair, named (and equal to the plain tuple).
FingerprintKey = tuple[str, str]

# --- what a label may hold: one validator for the CLI, the admin API and the importers --------
#
# ``check_label`` (and its parts ``fingerprint_value`` and ``check_label_fields``) refuse a bad
# label with the reason as InvalidLabel; nothing is clipped or guessed. A new fingerprint kind
# needs an entry in VALUE_FORMATS (checked below).

MD5_RE = re.compile(r"[0-9a-f]{32}")
# JA4 a-part: transport, version (13 12 11 10 s3 s2 d1 d2 d3 or 00), d/i, 2+2 digits, ALPN chars.
JA4_RE = re.compile(
    r"[tqd](?:1[0-3]|s[23]|d[1-3]|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}"
)
# The form of each kind's value: an MD5 hash (stored in lower case) or a JA4 fingerprint (as is:
# its ALPN characters are case-sensitive).
VALUE_FORMATS: dict[str, str] = {
    "ja3": "md5",
    "ja3n": "md5",
    "ja3s": "md5",
    "ja3_dovecot": "md5",
    "ja4": "ja4",
}
if set(VALUE_FORMATS) != set(FINGERPRINT_KINDS):  # pragma: no cover - caught by every test run
    raise AssertionError("VALUE_FORMATS must name the format of every fingerprint kind")
_FORMAT_NAMES = {"md5": "MD5 hash", "ja4": "JA4 fingerprint"}
# Lengths of the label's text columns (the database's), and the longest tarpit a label may ask.
LABEL_TEXT_LIMITS: dict[str, int] = {"client_name": 200, "category": 32, "source": 32}
MAX_TARPIT_SECONDS = 3600


class InvalidLabel(ValueError):
    """A label (or a fingerprint value) that is refused; ``str()`` is the reason."""


def value_format(kind: str) -> str:
    """``"md5"`` or ``"ja4"``: the form of ``kind``'s values (InvalidLabel for an unknown kind)."""
    try:
        return VALUE_FORMATS[kind]
    except (KeyError, TypeError):
        raise InvalidLabel(
            f"unknown kind {kind!r} (one of {', '.join(FINGERPRINT_KINDS)})"
        ) from None


def fingerprint_value(kind: str, raw: str) -> str:
    """The canonical form of ``raw`` as a fingerprint of ``kind``: surrounding white space
    dropped, an MD5 in lower case, a JA4 as given. InvalidLabel with the reason otherwise."""
    fmt = value_format(kind)
    value = raw.strip()
    if fmt == "md5":
        value = value.lower()
        valid = MD5_RE.fullmatch(value) is not None
    else:
        valid = JA4_RE.fullmatch(value) is not None
    if not valid:
        raise InvalidLabel(f"invalid {_FORMAT_NAMES[fmt]} {raw.strip()!r}")
    return value


def guess_kind(raw: str) -> str:
    """``ja4`` for a value that is a JA4 fingerprint, else ``ja3`` (a bare hash's usual kind)."""
    return "ja4" if JA4_RE.fullmatch(raw.strip()) else "ja3"


def check_label_fields(
    *,
    action: str | None = None,
    client_name: str | None = None,
    category: str | None = None,
    source: str | None = None,
    confidence: int | None = None,
    tarpit_seconds: int | None = None,
) -> None:
    """Everything of a label but its kind and value; None is "not given" (a default applies).

    A tarpit label without seconds is valid: the service's configured tarpit applies."""
    if action is not None and action not in LABEL_ACTIONS:
        raise InvalidLabel(f"unknown action {action!r} (one of {', '.join(LABEL_ACTIONS)})")
    for name, text in (("client_name", client_name), ("category", category), ("source", source)):
        if text is not None and len(text) > LABEL_TEXT_LIMITS[name]:
            raise InvalidLabel(
                f"{name} is {len(text)} characters long, at most {LABEL_TEXT_LIMITS[name]}"
            )
    if source is not None and not source.strip():
        raise InvalidLabel("source must not be empty")
    if confidence is not None and not 0 <= confidence <= 100:
        raise InvalidLabel(f"confidence {confidence} is not between 0 and 100")
    if tarpit_seconds is not None and not 0 <= tarpit_seconds <= MAX_TARPIT_SECONDS:
        raise InvalidLabel(
            f"tarpit_seconds {tarpit_seconds} is not between 0 and {MAX_TARPIT_SECONDS}"
        )


def check_label(
    kind: str,
    value: str,
    *,
    action: str | None = None,
    client_name: str | None = None,
    category: str | None = None,
    source: str | None = None,
    confidence: int | None = None,
    tarpit_seconds: int | None = None,
) -> str:
    """Check a whole label; return its value in canonical form (see ``fingerprint_value``).

    The one validator of labels: ``ja3svc labels add|import``, the admin API and the store's
    writers all call it, so a label is accepted or refused (InvalidLabel, with the reason) the
    same way wherever it comes from."""
    canonical = fingerprint_value(kind, value)
    check_label_fields(
        action=action,
        client_name=client_name,
        category=category,
        source=source,
        confidence=confidence,
        tarpit_seconds=tarpit_seconds,
    )
    return canonical

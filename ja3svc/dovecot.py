"""The JA3 that Dovecot 2.4 computes itself (``%{ssl_ja3_hash}``), per OpenSSL profile.

Dovecot builds its string inside OpenSSL's ClientHello callback, which changes three things
compared with wire JA3: the version field is always 771 (OpenSSL reports TLS 1.3 before
negotiation); ciphers keep GREASE (they are read raw); and only extensions the linked OpenSSL
knows are listed, so GREASE and every extension newer than that OpenSSL vanish. Groups lose
GREASE; point formats stay raw. After a HelloRetryRequest Dovecot keeps the last hello.
"""

from __future__ import annotations

from types import MappingProxyType

from ja3svc.grease import without_grease
from ja3svc.hello import ClientHello

_OPENSSL_30 = frozenset(
    (
        0,
        1,
        5,
        10,
        11,
        12,
        13,
        16,
        18,
        21,
        22,
        23,
        35,
        41,
        42,
        43,
        44,
        45,
        47,
        49,
        50,
        51,
        13172,
        65000,
        65281,
    )
)
# OpenSSL 3.2 learned certificate compression (27) and raw public keys (19, 20).
_OPENSSL_32 = _OPENSSL_30 | {19, 20, 27}

OPENSSL_PROFILES: MappingProxyType[str, frozenset[int]] = MappingProxyType(
    {"openssl-3.0": _OPENSSL_30, "openssl-3.2": _OPENSSL_32}
)
DEFAULT_PROFILE = "openssl-3.0"
DOVECOT_VERSION_FIELD = 771


def ja3_dovecot_string(hello: ClientHello, profile: str = DEFAULT_PROFILE) -> str:
    try:
        known = OPENSSL_PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown OpenSSL profile {profile!r}; choose one of {', '.join(OPENSSL_PROFILES)}"
        ) from None
    return ",".join(
        (
            str(DOVECOT_VERSION_FIELD),
            "-".join(map(str, hello.ciphers)),
            "-".join(str(e) for e in hello.extensions if e in known),
            "-".join(map(str, without_grease(hello.supported_groups))),
            "-".join(map(str, hello.ec_point_formats)),
        )
    )

"""The JA3 that Dovecot 2.4 computes itself (``%{ssl_ja3_hash}``), per OpenSSL profile.

Dovecot builds its string inside OpenSSL's ClientHello callback, which changes three things
compared with wire JA3: the version field is always 771 (OpenSSL reports TLS 1.3 before
negotiation); ciphers keep GREASE (they are read raw); and only extensions the linked OpenSSL
knows are listed, so GREASE and every extension newer than that OpenSSL vanish. Groups lose
GREASE; point formats stay raw. After a HelloRetryRequest Dovecot keeps the last hello.

Which OpenSSL a Dovecot links is a fact of the deployment, not of the client, so a hello has one
Dovecot hash per profile (``dovecot_hashes``); the policy service matches all of them, and the
default profile of one-off output (``ja3svc pcap``) is the one distribution packages use.
"""

from __future__ import annotations

from types import MappingProxyType

from ja3svc.grease import without_grease
from ja3svc.hello import ClientHello
from ja3svc.ja3 import md5_hex

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
# OpenSSL 3.2 learned certificate compression (27) and raw public keys (19, 20); the set was
# measured on Debian 13's Dovecot 2.4.1 with OpenSSL 3.5.9, one extension type at a time (14,
# use_srtp, is known there but fails the handshake, so it never reaches a hash).
_OPENSSL_32 = _OPENSSL_30 | {14, 19, 20, 27}

# Distinct profiles, in the order verdicts and output list them.
OPENSSL_PROFILES: MappingProxyType[str, frozenset[int]] = MappingProxyType(
    {"openssl-3.0": _OPENSSL_30, "openssl-3.2": _OPENSSL_32}
)
# Other accepted names (the version an administrator is likely to read off `openssl version`).
PROFILE_ALIASES: MappingProxyType[str, str] = MappingProxyType({"openssl-3.5": "openssl-3.2"})
PROFILE_CHOICES: tuple[str, ...] = (*OPENSSL_PROFILES, *PROFILE_ALIASES)
PROFILE_DESCRIPTIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "openssl-3.0": "OpenSSL 3.0/3.1 (Dovecot 2.4 built for Debian 12, Ubuntu 22.04/24.04)",
        "openssl-3.2": "OpenSSL 3.2-3.5 (distribution Dovecot 2.4: Debian 13 and others)",
    }
)
# Distribution packages of Dovecot 2.4 link OpenSSL >= 3.2.
DEFAULT_PROFILE = "openssl-3.2"
DOVECOT_VERSION_FIELD = 771


def canonical_profile(profile: str) -> str:
    """The profile's own name (aliases resolved); ValueError naming the choices otherwise."""
    name = PROFILE_ALIASES.get(profile, profile)
    if name not in OPENSSL_PROFILES:
        raise ValueError(
            f"unknown OpenSSL profile {profile!r}; choose one of {', '.join(PROFILE_CHOICES)}"
        )
    return name


def ja3_dovecot_string(hello: ClientHello, profile: str = DEFAULT_PROFILE) -> str:
    known = OPENSSL_PROFILES[canonical_profile(profile)]
    return ",".join(
        (
            str(DOVECOT_VERSION_FIELD),
            "-".join(map(str, hello.ciphers)),
            "-".join(str(e) for e in hello.extensions if e in known),
            "-".join(map(str, without_grease(hello.supported_groups))),
            "-".join(map(str, hello.ec_point_formats)),
        )
    )


def dovecot_hashes(hello: ClientHello) -> dict[str, str]:
    """The hash a Dovecot of each profile computes for ``hello``: ``{profile: md5 hex}``."""
    return {p: md5_hex(ja3_dovecot_string(hello, p)) for p in OPENSSL_PROFILES}


def profiles_matching(dovecot_hash: str, by_profile: dict[str, str]) -> tuple[str, ...]:
    """Profiles under which a hello (``by_profile``, see ``dovecot_hashes``) gives the hash a
    Dovecot sent for the same connection: the profile of that Dovecot is among them (several when
    the hello uses no extension the profiles disagree on; none for an OpenSSL we do not know)."""
    return tuple([p for p, h in by_profile.items() if h == dovecot_hash])

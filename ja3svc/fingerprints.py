"""Every fingerprint of one hello at once, memoised by what the fingerprints depend on.

Real traffic repeats the same few client stacks; a hello's random, session id, key shares and
SNI change per connection but its fingerprints do not. Keying the memo on the lists the
algorithms read (not the hello itself) turns the MD5/SHA-256/string work for a repeat into one
dict lookup. The memo is bounded: it is emptied when full rather than tracking recency, which
is cheap and keeps memory flat. The results are frozen, so a memoised one can be handed to any
number of callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from ja3svc.dovecot import DEFAULT_PROFILE, OPENSSL_PROFILES, canonical_profile, ja3_dovecot_string
from ja3svc.grease import without_grease
from ja3svc.hello import ClientHello, ServerHello
from ja3svc.ja3 import ja3_string, ja3n_string, ja3s_string, md5_hex
from ja3svc.ja4 import ja4, ja4_r

__all__ = [
    "ClientFingerprints",
    "ServerFingerprints",
    "client_fingerprints",
    "server_fingerprints",
    "tls_version_name",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientFingerprints:
    """The fingerprints of one ClientHello (field names are the JSON output's keys)."""

    tls_version: str  # highest version offered, e.g. "TLS 1.3"
    ja3: str
    ja3_hash: str
    ja3n: str
    ja3n_hash: str
    ja4: str
    ja4_r: str
    ja3_dovecot: str  # what Dovecot 2.4 computes for this hello (for the chosen profile)
    ja3_dovecot_hash: str
    # Dovecot's hash under every OpenSSL profile: {profile: MD5} (read-only).
    ja3_dovecot_hashes: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFingerprints:
    """The fingerprints of one ServerHello (field names are the JSON output's keys)."""

    tls_version: str  # the negotiated version
    ja3s: str
    ja3s_hash: str


MEMO_LIMIT = 16384

_TLS_VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
    0xFEFF: "DTLS 1.0",
    0xFEFD: "DTLS 1.2",
    0xFEFC: "DTLS 1.3",
}

_client_memo: dict[tuple[object, ...], ClientFingerprints] = {}
_unordered_memo: dict[tuple[object, ...], dict[str, str]] = {}
_server_memo: dict[tuple[object, ...], ServerFingerprints] = {}

_T = TypeVar("_T")


def _remember(memo: dict[tuple[object, ...], _T], key: tuple[object, ...], value: _T) -> _T:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def tls_version_name(version: int) -> str:
    """``TLS 1.2`` for 0x0303 and so on; unknown values as hex (``0x7f1c``)."""
    return _TLS_VERSION_NAMES.get(version, f"0x{version:04x}")


def client_fingerprints(
    hello: ClientHello, transport: str = "tcp", dovecot_profile: str = DEFAULT_PROFILE
) -> ClientFingerprints:
    """JA3, JA3N, JA4 (and its raw form) and Dovecot's JA3 of a ClientHello.

    ``transport`` ("tcp", "quic" or "dtls") is JA4's first letter; ``dovecot_profile`` the
    OpenSSL version whose known extensions ``ja3_dovecot`` keeps (see ``OPENSSL_PROFILES``);
    ``ja3_dovecot_hashes`` has the hash under every profile.
    """
    key = (
        hello.legacy_version,
        hello.ciphers,
        hello.extensions,
        hello.supported_groups,
        hello.ec_point_formats,
        hello.signature_algorithms,
        hello.supported_versions,
        hello.alpn[0] if hello.alpn else None,
        transport,
        dovecot_profile,
    )
    found = _client_memo.get(key)
    if found is not None:
        return found
    # Chrome permutes its extensions on every connection, so the ordered key above rarely hits
    # for it; JA3N and JA4 do not depend on the order, and are memoised on the sorted list.
    unordered_key = (key[0], key[1], tuple(sorted(hello.extensions)), *key[3:9])
    unordered = _unordered_memo.get(unordered_key)
    if unordered is None:
        offered = without_grease(hello.supported_versions)
        j3n = ja3n_string(hello)
        unordered = {
            "tls_version": tls_version_name(max(offered) if offered else hello.legacy_version),
            "ja3n": j3n,
            "ja3n_hash": md5_hex(j3n),
            "ja4": ja4(hello, transport),
            "ja4_r": ja4_r(hello, transport),
        }
        _remember(_unordered_memo, unordered_key, unordered)
    j3 = ja3_string(hello)
    profile = canonical_profile(dovecot_profile)
    by_profile = {p: ja3_dovecot_string(hello, p) for p in OPENSSL_PROFILES}
    jd = by_profile[profile]
    result = ClientFingerprints(
        tls_version=unordered["tls_version"],
        ja3=j3,
        ja3_hash=md5_hex(j3),
        ja3n=unordered["ja3n"],
        ja3n_hash=unordered["ja3n_hash"],
        ja4=unordered["ja4"],
        ja4_r=unordered["ja4_r"],
        ja3_dovecot=jd,
        ja3_dovecot_hash=md5_hex(jd),
        ja3_dovecot_hashes=MappingProxyType({p: md5_hex(t) for p, t in by_profile.items()}),
    )
    return _remember(_client_memo, key, result)


def server_fingerprints(hello: ServerHello) -> ServerFingerprints:
    """JA3S of a ServerHello, and the negotiated version (from supported_versions if sent)."""
    key = (hello.legacy_version, hello.cipher, hello.extensions, hello.selected_version)
    found = _server_memo.get(key)
    if found is not None:
        return found
    j3s = ja3s_string(hello)
    result = ServerFingerprints(
        tls_version=tls_version_name(hello.selected_version or hello.legacy_version),
        ja3s=j3s,
        ja3s_hash=md5_hex(j3s),
    )
    return _remember(_server_memo, key, result)

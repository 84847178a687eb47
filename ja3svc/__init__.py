"""TLS client and server fingerprints (JA3, JA3N, JA4, JA3S and Dovecot's JA3) from bytes.

The pure core: bytes in, fingerprints out; it reads no file, socket, clock or environment.

    >>> import ja3svc
    >>> hello = ja3svc.parse_hello(raw)                  # a TLS record or a handshake message
    >>> fp = ja3svc.fingerprint(hello)                   # frozen ClientFingerprints
    >>> fp.ja3_hash, fp.ja4, fp.ja3_dovecot_hashes["openssl-3.2"]

``FingerprintEngine`` takes whole captured frames instead (TCP/QUIC/DTLS reassembly included)
and gives ``HelloRecord`` objects; ``ja3svc.capture.read_hellos(path)`` does that for a capture
file. README.md ("Python API") has runnable examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from ja3svc.dovecot import DEFAULT_PROFILE, OPENSSL_PROFILES
from ja3svc.fingerprints import (
    ClientFingerprints,
    ServerFingerprints,
    client_fingerprints,
    server_fingerprints,
)
from ja3svc.hello import (
    ClientHello,
    HelloError,
    ServerHello,
    parse_client_hello,
    parse_hello,
    parse_server_hello,
)
from ja3svc.record import HelloRecord

if TYPE_CHECKING:
    from ja3svc.engine import FingerprintEngine

__all__ = [
    "DEFAULT_PROFILE",
    "OPENSSL_PROFILES",
    "ClientFingerprints",
    "ClientHello",
    "FingerprintEngine",
    "HelloError",
    "HelloRecord",
    "ServerFingerprints",
    "ServerHello",
    "fingerprint",
    "parse_client_hello",
    "parse_hello",
    "parse_server_hello",
]


@overload
def fingerprint(
    hello: ClientHello, *, transport: str = "tcp", dovecot_profile: str = DEFAULT_PROFILE
) -> ClientFingerprints: ...


@overload
def fingerprint(
    hello: ServerHello, *, transport: str = "tcp", dovecot_profile: str = DEFAULT_PROFILE
) -> ServerFingerprints: ...


def fingerprint(
    hello: ClientHello | ServerHello,
    *,
    transport: str = "tcp",
    dovecot_profile: str = DEFAULT_PROFILE,
) -> ClientFingerprints | ServerFingerprints:
    """Every fingerprint of a parsed hello, as a frozen object.

    A ClientHello gives JA3 (string and MD5), JA3N, JA4 and its raw form, and Dovecot's JA3
    (``ja3_dovecot`` for ``dovecot_profile``, ``ja3_dovecot_hashes`` for every profile);
    ``transport`` ("tcp", "quic" or "dtls") is JA4's first letter. A ServerHello gives JA3S.
    """
    if isinstance(hello, ClientHello):
        return client_fingerprints(hello, transport, dovecot_profile)
    return server_fingerprints(hello)


def __getattr__(name: str) -> Any:
    # The engine pulls in QUIC's key schedule (cryptography): loaded when first asked for, so
    # that importing any ja3svc module (the CLI's start, the Rust engine's runs) stays cheap.
    if name == "FingerprintEngine":
        from ja3svc.engine import FingerprintEngine

        return FingerprintEngine
    raise AttributeError(f"module 'ja3svc' has no attribute {name!r}")

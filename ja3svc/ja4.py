"""JA4 (TLS client fingerprint, FoxIO, BSD-3-Clause): ``a_b_c`` and its raw form ``ja4_r``.

Only JA4 is implemented; the other JA4+ methods carry a different licence.
"""

from __future__ import annotations

from hashlib import sha256

from ja3svc.grease import without_grease
from ja3svc.hello import EXT_ALPN, EXT_SERVER_NAME, ClientHello

_VERSION_CODES = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_EMPTY_HASH = "000000000000"
TRANSPORT_PREFIX = {"tcp": "t", "quic": "q", "dtls": "d"}


def _version_code(hello: ClientHello) -> str:
    versions = without_grease(hello.supported_versions)
    if versions:
        # DTLS version numbers count downwards (0xfefc is DTLS 1.3), so "highest" is per family.
        dtls = [v for v in versions if v >= 0xFE00]
        version = min(dtls) if dtls and len(dtls) == len(versions) else max(versions)
    else:
        version = hello.legacy_version
    return _VERSION_CODES.get(version, "00")


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn_code(hello: ClientHello) -> str:
    if not hello.alpn or not hello.alpn[0]:
        return "00"
    first = hello.alpn[0]
    if _is_alnum(first[0]) and _is_alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _hash12(text: str) -> str:
    return sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY_HASH


def _parts(hello: ClientHello, transport: str) -> tuple[str, str, str, str]:
    ciphers = without_grease(hello.ciphers)
    extensions = without_grease(hello.extensions)
    a = "{}{}{}{:02d}{:02d}{}".format(
        TRANSPORT_PREFIX[transport],
        _version_code(hello),
        "d" if EXT_SERVER_NAME in extensions else "i",
        min(len(ciphers), 99),
        min(len(extensions), 99),
        _alpn_code(hello),
    )
    b = ",".join(f"{c:04x}" for c in sorted(ciphers))
    c = ",".join(f"{e:04x}" for e in sorted(extensions) if e not in (EXT_SERVER_NAME, EXT_ALPN))
    sigs = ",".join(f"{s:04x}" for s in without_grease(hello.signature_algorithms))
    return a, b, c, sigs


def ja4(hello: ClientHello, transport: str = "tcp") -> str:
    a, b, c, sigs = _parts(hello, transport)
    c_text = f"{c}_{sigs}" if sigs else c
    return f"{a}_{_hash12(b)}_{_hash12(c_text) if c else _EMPTY_HASH}"


def ja4_r(hello: ClientHello, transport: str = "tcp") -> str:
    a, b, c, sigs = _parts(hello, transport)
    return f"{a}_{b}_{c}_{sigs}" if sigs else f"{a}_{b}_{c}"

"""ClientHello and ServerHello bodies: bytes in, the raw lists every fingerprint is built from.

The parsers take the handshake message *body* (after the 4-byte handshake header). Every length
is checked against what is left; a body that lies about a length raises :class:`HelloError`
with a short, stable ``reason`` that callers use as a counter name. Nothing else is raised.

Lists are kept raw (wire order, GREASE included); each fingerprint decides what to drop.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43

# A ServerHello whose random is this value is a HelloRetryRequest (RFC 8446, 4.1.3).
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)


class HelloError(ValueError):
    """A hello body that cannot be parsed; ``reason`` is a short counter-friendly name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    supported_versions: tuple[int, ...]
    sni: str | None
    alpn: tuple[bytes, ...]
    # Set when the hello lists extension 10 or 11 more than once; the fingerprints use the last.
    duplicate_extensions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None
    alpn: bytes | None
    is_hello_retry_request: bool


_U16_LISTS: dict[int, struct.Struct] = {}


def _u16_list(body: bytes, start: int, stop: int, what: str) -> tuple[int, ...]:
    """Big-endian 16-bit values of ``body[start:stop]``, unpacked in one C call."""
    n = stop - start
    if n & 1:
        raise HelloError("odd_length", f"{what} has odd length {n}")
    unpacker = _U16_LISTS.get(n)
    if unpacker is None:
        unpacker = _U16_LISTS.setdefault(n, struct.Struct(f">{n >> 1}H"))
    return unpacker.unpack_from(body, start)


def _vector(body: bytes, pos: int, end: int, width: int, what: str) -> tuple[int, int]:
    """Bounds of the ``width``-byte length-prefixed vector at ``pos``: (start, stop)."""
    start = pos + width
    if start > end:
        raise HelloError("truncated", f"{what} length needs {width} bytes, {end - pos} left")
    n = body[pos] if width == 1 else (body[pos] << 8) | body[pos + 1]
    stop = start + n
    if stop > end:
        raise HelloError("truncated", f"{what} needs {n} bytes, {end - start} left")
    return start, stop


def _extensions(body: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, data start, data stop) of each extension in the block starting at ``pos``."""
    pos, ext_end = _vector(body, pos, end, 2, "extensions")
    while pos < ext_end:
        if pos + 4 > ext_end:
            raise HelloError("truncated", "extension header")
        ext_type = (body[pos] << 8) | body[pos + 1]
        start = pos + 4
        pos = start + ((body[pos + 2] << 8) | body[pos + 3])
        if pos > ext_end:
            raise HelloError(
                "truncated",
                f"extension {ext_type} needs {pos - start} bytes, {ext_end - start} left",
            )
        yield ext_type, start, pos


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse a ClientHello body (handshake type 1, without its 4-byte header)."""
    end = len(body)
    if end < 35:
        raise HelloError("truncated", f"version and random need 34 bytes, {end} given")
    version = (body[0] << 8) | body[1]
    _, pos = _vector(body, 34, end, 1, "session_id")
    start, pos = _vector(body, pos, end, 2, "cipher_suites")
    ciphers = _u16_list(body, start, pos, "cipher_suites")
    _, pos = _vector(body, pos, end, 1, "compression_methods")

    extensions: list[int] = []
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    duplicates: list[int] = []

    # A hello may end right after compression_methods (no extensions block at all, e.g. SSL 3.0).
    if pos < end:
        for ext_type, start, stop in _extensions(body, pos, end):
            if ext_type == EXT_SUPPORTED_GROUPS:
                if ext_type in extensions:
                    duplicates.append(ext_type)
                a, b = _vector(body, start, stop, 2, "supported_groups")
                groups = _u16_list(body, a, b, "supported_groups")
            elif ext_type == EXT_EC_POINT_FORMATS:
                if ext_type in extensions:
                    duplicates.append(ext_type)
                a, b = _vector(body, start, stop, 1, "ec_point_formats")
                point_formats = tuple(body[a:b])
            elif ext_type == EXT_SIGNATURE_ALGORITHMS:
                a, b = _vector(body, start, stop, 2, "signature_algorithms")
                sig_algs = _u16_list(body, a, b, "signature_algorithms")
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                a, b = _vector(body, start, stop, 1, "supported_versions")
                versions = _u16_list(body, a, b, "supported_versions")
            elif ext_type == EXT_SERVER_NAME and start < stop:
                sni = _first_host_name(body, start, stop)
            elif ext_type == EXT_ALPN and start < stop:
                alpn = _protocol_names(body, *_vector(body, start, stop, 2, "alpn"))
            extensions.append(ext_type)
    return ClientHello(
        legacy_version=version,
        ciphers=ciphers,
        extensions=tuple(extensions),
        supported_groups=groups,
        ec_point_formats=point_formats,
        signature_algorithms=sig_algs,
        supported_versions=versions,
        sni=sni,
        alpn=alpn,
        duplicate_extensions=tuple(duplicates),
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello body (handshake type 2, without its 4-byte header)."""
    end = len(body)
    if end < 35:
        raise HelloError("truncated", f"version and random need 34 bytes, {end} given")
    version = (body[0] << 8) | body[1]
    is_hrr = body[2:34] == HELLO_RETRY_REQUEST_RANDOM
    _, pos = _vector(body, 34, end, 1, "session_id")
    if pos + 3 > end:
        raise HelloError("truncated", "cipher_suite and compression_method")
    cipher = (body[pos] << 8) | body[pos + 1]
    pos += 3
    extensions: list[int] = []
    selected: int | None = None
    alpn: bytes | None = None
    if pos < end:
        for ext_type, start, stop in _extensions(body, pos, end):
            extensions.append(ext_type)
            if ext_type == EXT_SUPPORTED_VERSIONS and stop - start >= 2:
                selected = (body[start] << 8) | body[start + 1]
            elif ext_type == EXT_ALPN and start < stop:
                names = _protocol_names(body, *_vector(body, start, stop, 2, "alpn"))
                alpn = names[0] if names else None
    return ServerHello(
        legacy_version=version,
        cipher=cipher,
        extensions=tuple(extensions),
        selected_version=selected,
        alpn=alpn,
        is_hello_retry_request=is_hrr,
    )


def _first_host_name(body: bytes, start: int, stop: int) -> str | None:
    pos, end = _vector(body, start, stop, 2, "server_name_list")
    while pos < end:
        name_type = body[pos]
        a, pos = _vector(body, pos + 1, end, 2, "server_name")
        if name_type == 0:
            return body[a:pos].decode("ascii", errors="backslashreplace")
    return None


def _protocol_names(body: bytes, pos: int, end: int) -> tuple[bytes, ...]:
    out: list[bytes] = []
    while pos < end:
        a, pos = _vector(body, pos, end, 1, "protocol name")
        out.append(bytes(body[a:pos]))
    return tuple(out)


HANDSHAKE_RECORD = 22
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2


def parse_hello(data: bytes) -> ClientHello | ServerHello:
    """A ClientHello or ServerHello from bytes as they are sent: one or more TLS handshake records
    (``16 03 0x``...), or the handshake message alone (type 1 or 2 and a 3-byte length).

    The message must be complete; several records are joined (a hello may span records).
    ``HelloError`` otherwise, with a ``reason`` such as ``not_a_hello`` or ``truncated``.
    """
    data = bytes(data)
    if len(data) >= 5 and data[0] == HANDSHAKE_RECORD and data[1] == 3:
        parts, pos = [], 0
        while pos < len(data):
            if len(data) - pos < 5 or data[pos] != HANDSHAKE_RECORD or data[pos + 1] != 3:
                raise HelloError("not_a_hello", f"no TLS handshake record at byte {pos}")
            end = pos + 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
            if end > len(data):
                raise HelloError("truncated", f"record at byte {pos} ends past the data")
            parts.append(data[pos + 5 : end])
            pos = end
        data = b"".join(parts)
    if len(data) < 4 or data[0] not in (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO):
        raise HelloError("not_a_hello", "neither a ClientHello nor a ServerHello")
    length = int.from_bytes(data[1:4], "big")
    if len(data) < 4 + length:
        raise HelloError("truncated", f"message of {length} bytes, {len(data) - 4} given")
    body = data[4 : 4 + length]
    if data[0] == HANDSHAKE_CLIENT_HELLO:
        return parse_client_hello(body)
    return parse_server_hello(body)

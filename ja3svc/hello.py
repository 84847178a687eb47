"""ClientHello and ServerHello bodies: bytes in, the raw lists every fingerprint is built from.

The parsers take the handshake message *body* (after the 4-byte handshake header). Every length
is checked against what is left; a body that lies about a length raises :class:`HelloError`
with a short, stable ``reason`` that callers use as a counter name. Nothing else is raised.

Lists are kept raw (wire order, GREASE included); each fingerprint decides what to drop.
"""

from __future__ import annotations

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


class _Reader:
    """A bounds-checked cursor over one hello body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.end - self.pos:
            raise HelloError("truncated", f"{what} needs {n} bytes, {self.end - self.pos} left")

    def u8(self, what: str) -> int:
        self.need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def u16(self, what: str) -> int:
        self.need(2, what)
        p = self.pos
        self.pos = p + 2
        return (self.buf[p] << 8) | self.buf[p + 1]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def vector(self, length_bytes: int, what: str) -> _Reader:
        """A sub-reader over a length-prefixed vector; the cursor moves past it."""
        n = self.u8(what) if length_bytes == 1 else self.u16(what)
        self.need(n, what)
        sub = _Reader(self.buf, self.pos, self.pos + n)
        self.pos += n
        return sub

    def u16_list(self, what: str) -> tuple[int, ...]:
        n = self.left()
        if n % 2:
            raise HelloError("odd_length", f"{what} has odd length {n}")
        b, p = self.buf, self.pos
        self.pos = self.end
        return tuple((b[i] << 8) | b[i + 1] for i in range(p, p + n, 2))

    def u8_list(self) -> tuple[int, ...]:
        out = tuple(self.buf[self.pos : self.end])
        self.pos = self.end
        return out


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse a ClientHello body (handshake type 1, without its 4-byte header)."""
    r = _Reader(body)
    version = r.u16("legacy_version")
    r.skip(32, "random")
    r.vector(1, "session_id")
    cipher_vec = r.vector(2, "cipher_suites")
    ciphers = cipher_vec.u16_list("cipher_suites")
    r.vector(1, "compression_methods")

    extensions: list[int] = []
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    duplicates: list[int] = []

    # A hello may end right after compression_methods (no extensions block at all, e.g. SSL 3.0).
    if r.left():
        ext_block = r.vector(2, "extensions")
        while ext_block.left():
            ext_type = ext_block.u16("extension type")
            data = ext_block.vector(2, f"extension {ext_type}")
            if ext_type in extensions and ext_type in (EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS):
                duplicates.append(ext_type)
            extensions.append(ext_type)
            if ext_type == EXT_SUPPORTED_GROUPS:
                groups = data.vector(2, "supported_groups").u16_list("supported_groups")
            elif ext_type == EXT_EC_POINT_FORMATS:
                point_formats = data.vector(1, "ec_point_formats").u8_list()
            elif ext_type == EXT_SIGNATURE_ALGORITHMS:
                sig_algs = data.vector(2, "signature_algorithms").u16_list("signature_algorithms")
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                versions = data.vector(1, "supported_versions").u16_list("supported_versions")
            elif ext_type == EXT_SERVER_NAME and data.left():
                sni = _first_host_name(data)
            elif ext_type == EXT_ALPN and data.left():
                alpn = _protocol_names(data.vector(2, "alpn"))
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
    r = _Reader(body)
    version = r.u16("legacy_version")
    r.need(32, "random")
    is_hrr = body[r.pos : r.pos + 32] == HELLO_RETRY_REQUEST_RANDOM
    r.skip(32, "random")
    r.vector(1, "session_id")
    cipher = r.u16("cipher_suite")
    r.u8("compression_method")
    extensions: list[int] = []
    selected: int | None = None
    alpn: bytes | None = None
    if r.left():
        ext_block = r.vector(2, "extensions")
        while ext_block.left():
            ext_type = ext_block.u16("extension type")
            data = ext_block.vector(2, f"extension {ext_type}")
            extensions.append(ext_type)
            if ext_type == EXT_SUPPORTED_VERSIONS and data.left() >= 2:
                selected = data.u16("supported_versions")
            elif ext_type == EXT_ALPN and data.left():
                names = _protocol_names(data.vector(2, "alpn"))
                alpn = names[0] if names else None
    return ServerHello(
        legacy_version=version,
        cipher=cipher,
        extensions=tuple(extensions),
        selected_version=selected,
        alpn=alpn,
        is_hello_retry_request=is_hrr,
    )


def _first_host_name(data: _Reader) -> str | None:
    names = data.vector(2, "server_name_list")
    while names.left():
        name_type = names.u8("server_name type")
        name = names.vector(2, "server_name")
        if name_type == 0:
            raw = name.buf[name.pos : name.end]
            return raw.decode("ascii", errors="backslashreplace")
    return None


def _protocol_names(vec: _Reader) -> tuple[bytes, ...]:
    out: list[bytes] = []
    while vec.left():
        name = vec.vector(1, "protocol name")
        out.append(bytes(name.buf[name.pos : name.end]))
    return tuple(out)

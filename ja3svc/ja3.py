"""JA3, JA3N and JA3S: the comma-separated strings and their MD5.

Rules (see the project's spec): the version field is the hello's ``legacy_version``; GREASE is
removed from ciphers, extensions and supported groups (point formats are kept raw); empty fields
stay empty and keep their commas; the last supported_groups / ec_point_formats extension wins.
"""

from __future__ import annotations

from hashlib import md5

from ja3svc.grease import without_grease
from ja3svc.hello import ClientHello, ServerHello


def _join(values: tuple[int, ...] | list[int]) -> str:
    return "-".join(map(str, values))


def ja3_string(hello: ClientHello) -> str:
    return ",".join(
        (
            str(hello.legacy_version),
            _join(without_grease(hello.ciphers)),
            _join(without_grease(hello.extensions)),
            _join(without_grease(hello.supported_groups)),
            _join(hello.ec_point_formats),
        )
    )


def ja3n_string(hello: ClientHello) -> str:
    """JA3 with the extension field sorted, so that Chrome's per-connection permutation cancels."""
    return ",".join(
        (
            str(hello.legacy_version),
            _join(without_grease(hello.ciphers)),
            _join(sorted(without_grease(hello.extensions))),
            _join(without_grease(hello.supported_groups)),
            _join(hello.ec_point_formats),
        )
    )


def ja3s_string(hello: ServerHello) -> str:
    return ",".join(
        (str(hello.legacy_version), str(hello.cipher), _join(without_grease(hello.extensions)))
    )


def md5_hex(fingerprint: str) -> str:
    return md5(fingerprint.encode("ascii"), usedforsecurity=False).hexdigest()

"""IP addresses from packet bytes to text, spelled exactly as the C library's ``inet_ntop``.

The core has no sockets, so it cannot call ``socket.inet_ntop``; ``ipaddress`` is 20x slower
and writes IPv4-mapped addresses as hex (``::ffff:c000:201``) where every capture tool writes
``::ffff:192.0.2.1``. Addresses repeat (a flow's two ends), so the text is memoised.
"""

from __future__ import annotations

__all__ = ["format_address"]

# Distinct addresses remembered; emptied when full (cheap, and memory stays flat).
MEMO_LIMIT = 65536
_memo: dict[bytes, str] = {}


def format_address(raw: bytes) -> str:
    """Text form of a 4-byte IPv4 or 16-byte IPv6 address (RFC 5952, as glibc writes it)."""
    text = _memo.get(raw)
    if text is None:
        if len(_memo) >= MEMO_LIMIT:
            _memo.clear()
        text = _memo[raw] = _ipv4(raw) if len(raw) == 4 else _ipv6(raw)
    return text


def _ipv4(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def _ipv6(raw: bytes) -> str:
    if len(raw) != 16:
        raise ValueError(f"an IP address has 4 or 16 bytes, not {len(raw)}")
    words = [(raw[i] << 8) | raw[i + 1] for i in range(0, 16, 2)]
    # The longest run of zero words (the first of equal ones), if at least two long.
    best_at, best_len, at, length = -1, 0, -1, 0
    for i, word in enumerate(words):
        if word == 0:
            if at < 0:
                at, length = i, 0
            length += 1
            if length > best_len:
                best_at, best_len = at, length
        else:
            at = -1
    if best_len < 2:
        best_at = -1
    # IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) keep the dotted quad.
    if best_at == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        prefix = "::" if best_len == 6 else "::ffff:"
        return prefix + _ipv4(raw[12:])
    parts: list[str] = []
    i = 0
    while i < 8:
        if i == best_at:
            parts.append("" if i else ":")
            i += best_len
            if i == 8:
                parts.append("")
            continue
        parts.append(f"{words[i]:x}")
        i += 1
    return ":".join(parts)

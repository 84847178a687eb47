"""GREASE values (RFC 8701).

The table is spelled out rather than tested with a bit mask: ``v & 0x0f0f == 0x0a0a`` also
matches real code points such as 0x1a2a, which a fingerprint must keep.
"""

GREASE_VALUES: frozenset[int] = frozenset(
    (n << 12) | (0xA << 8) | (n << 4) | 0xA for n in range(16)
)


def without_grease(values: tuple[int, ...]) -> tuple[int, ...]:
    """Return ``values`` in order with every GREASE value removed."""
    return tuple(v for v in values if v not in GREASE_VALUES)

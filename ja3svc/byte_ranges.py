"""Which byte ranges of a message have arrived: for reassembly from pieces in any order."""

from __future__ import annotations


def merge_range(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` (sorted, disjoint, non-adjacent ``[start, end)``) with one more range added,
    merging it with every range it overlaps or touches. Returns a new list."""
    out: list[tuple[int, int]] = []
    placed = False
    for s, e in ranges:
        if e < start:
            out.append((s, e))
        elif s > end:
            if not placed:
                out.append((start, end))
                placed = True
            out.append((s, e))
        else:
            start, end = min(s, start), max(e, end)
    if not placed:
        out.append((start, end))
    return out

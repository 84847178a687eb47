"""TcpReassembler: segments in any order in, the byte stream in order out (RFC 793 sequence
space, modulo 2^32). Expected streams are the bytes the segments were cut from."""

from __future__ import annotations

import itertools
import random

import pytest

from ja3svc.tcp_reassembly import MAX_BUFFERED, MAX_SEGMENTS, TcpReassembler, seq_diff

DATA = bytes(range(256)) * 4  # 1024 distinct-ish bytes


def segments(data: bytes, start_seq: int, size: int) -> list[tuple[int, bytes]]:
    return [((start_seq + k) % 2**32, data[k : k + size]) for k in range(0, len(data), size)]


def deliver(r: TcpReassembler, segs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(r.push(seq, payload) for seq, payload in segs)


def anchored(isn: int) -> TcpReassembler:
    r = TcpReassembler()
    r.syn(isn)
    return r


def test_seq_diff_signed_modulo() -> None:
    assert seq_diff(5, 3) == 2
    assert seq_diff(3, 5) == -2
    assert seq_diff(2, 2**32 - 3) == 5  # across the wrap
    assert seq_diff(2**32 - 3, 2) == -5


def test_in_order() -> None:
    r = anchored(1000)
    assert deliver(r, segments(DATA, 1001, 100)) == DATA
    assert r.buffered == 0 and not r.gap


def test_out_of_order_every_permutation_of_four() -> None:
    segs = segments(DATA[:400], 1001, 100)
    for perm in itertools.permutations(segs):
        r = anchored(1000)
        assert deliver(r, list(perm)) == DATA[:400]
        assert r.buffered == 0


def test_out_of_order_random_shuffles() -> None:
    rng = random.Random(7)
    segs = segments(DATA, 5001, 37)
    for _ in range(50):
        shuffled = segs[:]
        rng.shuffle(shuffled)
        r = anchored(5000)
        assert deliver(r, shuffled) == DATA


def test_held_segment_returns_nothing_until_gap_fills() -> None:
    r = anchored(0)
    assert r.push(8, b"world") == b""  # "hello, world": 'w' is byte 8
    assert r.buffered == 5
    assert r.push(1, b"hello, wor") == b"hello, world"
    assert r.buffered == 0


def test_duplicates_delivered_once() -> None:
    segs = segments(DATA, 1001, 100)
    doubled = [s for seg in segs for s in (seg, seg)]
    r = anchored(1000)
    assert deliver(r, doubled) == DATA
    # Duplicates of held (future) segments too.
    r = anchored(1000)
    later = segs[1:]
    assert deliver(r, later + later + segs[:1] + segs) == DATA


def test_overlapping_retransmission_with_different_bytes_first_copy_wins() -> None:
    r = anchored(99)
    assert r.push(100, b"AAAAAAAAAA") == b"AAAAAAAAAA"  # seq 100..109 delivered
    # Retransmission covering 105..114 with different content: only 110..114 is new.
    assert r.push(105, b"bbbbbccccc") == b"ccccc"
    # A full duplicate with different content delivers nothing.
    assert r.push(100, b"zzzzzzzzzzzzzzz") == b""
    assert r.push(115, b"D") == b"D"


def test_overlapping_held_segments_first_copy_wins() -> None:
    # Two future segments overlap each other with different bytes; the one that arrived
    # first is the one delivered for the overlapping range.
    r = anchored(0)
    assert r.push(6, b"FFFFFF") == b""  # 6..11
    assert r.push(9, b"sssssss") == b""  # 9..15; 9..11 overlaps with different bytes
    assert r.push(1, b"12345") == b"12345FFFFFFssss"


def test_longer_retransmission_of_held_segment_keeps_first_bytes() -> None:
    r = anchored(0)
    assert r.push(6, b"FFF") == b""  # 6..8 held
    assert r.push(6, b"sssssss") == b""  # 6..12 held, same seq, longer, different bytes
    assert r.push(1, b"12345") == b"12345FFFssss"


def test_segment_straddling_delivered_and_new_bytes() -> None:
    r = anchored(0)
    assert r.push(1, DATA[:50]) == DATA[:50]
    assert r.push(21, DATA[20:120]) == DATA[50:120]


def test_held_segment_partly_covered_by_a_later_in_order_segment() -> None:
    r = anchored(0)
    assert r.push(41, DATA[40:80]) == b""
    # In-order segment reaching into the held one: the held copy supplies only what is new.
    assert r.push(1, DATA[:60]) == DATA[:80]
    assert r.buffered == 0


@pytest.mark.parametrize("isn", [2**32 - 1, 2**32 - 2, 2**32 - 150, 2**32 - 1000])
def test_sequence_wraparound(isn: int) -> None:
    segs = segments(DATA, (isn + 1) % 2**32, 100)
    if isn != 2**32 - 1:  # (for 2^32 - 1 the SYN itself is the last number before the wrap)
        assert segs[0][0] > 2**31 and any(seq < 1000 for seq, _ in segs)
    r = anchored(isn)
    assert deliver(r, segs) == DATA
    r = anchored(isn)
    assert deliver(r, list(reversed(segs))) == DATA
    r = anchored(isn)
    assert deliver(r, [segs[2], segs[0], segs[0], *segs]) == DATA


def test_syn_anchoring_catches_a_reordered_first_segment() -> None:
    # With the SYN seen, a second segment arriving before the first is held, not taken as the
    # stream start.
    r = anchored(7000)
    assert r.push(7101, DATA[100:200]) == b""
    assert r.push(7001, DATA[:100]) == DATA[:200]


def test_second_syn_does_not_move_the_anchor() -> None:
    r = anchored(7000)
    r.syn(123456)  # a retransmitted or bogus SYN later
    assert r.push(7001, b"abc") == b"abc"


def test_without_syn_the_first_data_segment_anchors() -> None:
    r = TcpReassembler()
    assert r.push(50_000, b"mid-") == b"mid-"
    assert r.push(50_004, b"stream") == b"stream"
    assert r.push(49_990, b"x" * 12) == b""  # before the anchor: old data


def test_gap_limit_by_bytes() -> None:
    r = anchored(0)
    seq = 1 + 1000  # leave a 1000-byte hole at the start
    held = 0
    while not r.gap:
        r.push(seq, bytes(1400))
        seq += 1400
        held += 1400
        assert held <= MAX_BUFFERED + 1400
    assert r.gap
    assert r.buffered == 0  # memory released


def test_gap_limit_by_segment_count() -> None:
    r = anchored(0)
    for k in range(MAX_SEGMENTS + 1):
        r.push(1000 + 2 * k, b"x")  # tiny, non-adjacent held segments
    assert r.gap


def test_holding_below_the_limits_is_no_gap() -> None:
    r = anchored(0)
    for k in range(MAX_SEGMENTS - 1):
        r.push(1000 + 2 * k, b"x")
    assert not r.gap


def test_overlapping_held_segments_first_copy_wins_when_second_starts_lower() -> None:
    r = anchored(0)
    assert r.push(9, b"sssssss") == b""  # 9..15 arrives first
    assert r.push(6, b"FFFFFF") == b""  # 6..11 arrives second, overlaps 9..11
    assert r.push(1, b"12345") == b"12345FFFsssssss"


# --- several SYNs with different numbers (e.g. two SYN-ACKs) ----------------------------------


@pytest.mark.parametrize("order", [(1000, 9000), (9000, 1000)])
def test_the_acknowledged_syn_is_followed_whichever_came_first(order: tuple[int, int]) -> None:
    r = TcpReassembler()
    for isn in order:
        r.syn(isn)
    r.acked(9001)
    assert r.push(9001, b"hello") == b"hello"
    assert r.anchors is None


def test_an_acknowledgement_of_neither_syn_keeps_the_first() -> None:
    r = TcpReassembler()
    r.syn(1000)
    r.syn(9000)
    r.acked(5)
    assert r.push(1001, b"hello") == b"hello"


def test_a_syn_after_data_is_not_a_candidate() -> None:
    r = TcpReassembler()
    r.syn(1000)
    assert r.push(1001, b"abc") == b"abc"
    r.syn(9000)
    assert r.anchors is None
    r.acked(9001)
    assert r.push(1004, b"def") == b"def"


def test_a_repeated_syn_with_the_same_number_is_no_candidate() -> None:
    r = TcpReassembler()
    r.syn(1000)
    r.syn(1000)
    assert r.anchors is None

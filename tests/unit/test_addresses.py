"""Addresses as text, without sockets in the core: the oracle is the C library's inet_ntop."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ja3svc.addresses import format_address

# Words that make the compression rules matter: zero runs of every length, the IPv4-mapped and
# IPv4-compatible forms, and ordinary values.
WORD = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0DB8]) | st.integers(0, 0xFFFF)


@settings(max_examples=800, deadline=None)
@given(st.lists(WORD, min_size=8, max_size=8))
def test_ipv6_is_spelled_as_inet_ntop_spells_it(words: list[int]) -> None:
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    assert format_address(raw) == socket.inet_ntop(socket.AF_INET6, raw)


@pytest.mark.parametrize(
    "text",
    ["::", "::1", "::ffff:192.0.2.1", "::192.0.2.1", "2001:db8::1", "2001:db8:0:1::",
     "fe80::1:0:0:1", "2001:db8:0:0:1:0:0:1", "1:0:0:2:0:0:0:3", "::ffff:0:c000:201"],
)  # fmt: skip
def test_special_ipv6_forms(text: str) -> None:
    raw = socket.inet_pton(socket.AF_INET6, text)
    assert format_address(raw) == socket.inet_ntop(socket.AF_INET6, raw)


@given(st.binary(min_size=4, max_size=4))
def test_ipv4(raw: bytes) -> None:
    assert format_address(raw) == socket.inet_ntop(socket.AF_INET, raw)


def test_other_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        format_address(b"\x00" * 5)

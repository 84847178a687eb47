"""JA3, JA3N, JA3S, JA4/JA4_r and Dovecot's JA3 against published vectors and the spec's rules.

Oracles: the JA3 README vectors, the JA3N example, the GnuTLS wire/Dovecot strings and hashes,
the TLS 1.0 openssl hashes (all in ../shared/spec/fingerprints.md), FoxIO's JA4 README example,
and SHA-256 prefixes computed here with hashlib from the JA4 construction, spelled out step by
step. Hellos are built from the wire lists with tests.support.pcap_builder and then parsed, so every
test also exercises the parser.
"""

from __future__ import annotations

from hashlib import md5, sha256

import pytest

from ja3svc.dovecot import (
    DEFAULT_PROFILE,
    OPENSSL_PROFILES,
    dovecot_hashes,
    ja3_dovecot_string,
    profiles_matching,
)
from ja3svc.hello import ClientHello, parse_client_hello, parse_server_hello
from ja3svc.ja3 import ja3_string, ja3n_string, ja3s_string, md5_hex
from ja3svc.ja4 import ja4, ja4_r
from tests.support.pcap_builder import (
    alpn_ext,
    client_hello_body,
    ext,
    groups_ext,
    point_formats_ext,
    server_hello_body,
    sig_algs_ext,
    sni_ext,
    versions_ext,
)

GREASE = [0x0A0A + 0x1010 * n for n in range(16)]


def build_hello(
    version: int,
    ciphers: list[int],
    extensions: list[int],
    groups: list[int] = (),  # type: ignore[assignment]
    point_formats: list[int] = (),  # type: ignore[assignment]
    *,
    sig_algs: tuple[int, ...] = (0x0403, 0x0804),
    alpn: tuple[bytes, ...] = (b"h2",),
    versions: tuple[int, ...] = (0x0304, 0x0303),
    sni: str = "server.example",
) -> ClientHello:
    """A parsed ClientHello whose wire lists are exactly the given ones (extension order kept);
    each listed extension gets plausible contents."""
    blobs = []
    for e in extensions:
        if e == 0:
            blobs.append(sni_ext(sni))
        elif e == 10:
            blobs.append(groups_ext(*groups))
        elif e == 11:
            blobs.append(point_formats_ext(*point_formats))
        elif e == 13:
            blobs.append(sig_algs_ext(*sig_algs))
        elif e == 16:
            blobs.append(alpn_ext(*alpn))
        elif e == 43:
            blobs.append(versions_ext(*versions))
        else:
            blobs.append(ext(e, b"\x00\x01"))
    return parse_client_hello(client_hello_body(ciphers, blobs, version=version))


def from_ja3(ja3: str, **kw: object) -> ClientHello:
    """Rebuild a hello from a JA3 string's lists (no GREASE in it)."""
    v, c, e, g, p = ja3.split(",")

    def nums(s: str) -> list[int]:
        return [int(x) for x in s.split("-")] if s else []

    return build_hello(int(v), nums(c), nums(e), nums(g), nums(p), **kw)  # type: ignore[arg-type]


# --- JA3 ------------------------------------------------------------------------------------

JA3_README = [
    (
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
        "ada70206e40642a3e4461f35503241d5",
    ),
    ("769,4-5-10-9-100-98-3-6-19-18-99,,,", "de350869b8c85de67a350c8d186f11e6"),
]


@pytest.mark.parametrize(("string", "digest"), JA3_README)
def test_ja3_readme_vectors(string: str, digest: str) -> None:
    hello = from_ja3(string)
    assert ja3_string(hello) == string
    assert md5_hex(ja3_string(hello)) == digest


def test_ja3_strips_exactly_the_grease_table() -> None:
    # Every one of the 16 GREASE values in ciphers, extensions and groups is dropped; look-alikes
    # 0x1a2a (6698), 0x0a1a (2586) and 0xfafb (64251) are real code points and stay.
    hello = build_hello(
        771,
        [*GREASE, 0x1A2A, 4865],
        [*GREASE, 0x0A1A, 10, 11],
        [*GREASE, 0xFAFB, 29],
        [0],
    )
    assert ja3_string(hello) == "771,6698-4865,2586-10-11,64251-29,0"


def test_ja3_point_formats_kept_raw() -> None:
    hello = build_hello(771, [4865], [11], [], [0x0A, 0x1A])  # bytes, not GREASE candidates
    assert ja3_string(hello) == "771,4865,11,,10-26"


def test_ja3_uses_legacy_version_not_supported_versions() -> None:
    hello = build_hello(0x0303, [4865], [43], versions=(0x0304,))
    assert ja3_string(hello).startswith("771,")


# --- JA3N -----------------------------------------------------------------------------------

JA3N_EXAMPLE = (
    "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,"
    "0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513-21,29-23-24,0"
)


def test_ja3n_spec_example() -> None:
    hello = from_ja3(JA3N_EXAMPLE)
    assert ja3_string(hello) == JA3N_EXAMPLE
    assert md5_hex(ja3_string(hello)) == "cd08e31494f9531f560d64c695473da9"
    expected = JA3N_EXAMPLE.replace(
        "0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513-21",
        "0-5-10-11-13-16-18-21-23-27-35-43-45-51-17513-65281",
    )
    assert ja3n_string(hello) == expected
    assert md5_hex(expected) == "aa56c057ad164ec4fdcb7a5a283be9fc"


def test_ja3n_is_invariant_under_extension_permutation_and_grease() -> None:
    a = build_hello(771, [0x2A2A, 4865], [0x3A3A, 0, 10, 11, 16], [29], [0])
    b = build_hello(771, [0x9A9A, 4865], [16, 11, 0xDADA, 10, 0], [29], [0])
    assert ja3_string(a) != ja3_string(b)
    assert ja3n_string(a) == ja3n_string(b) == "771,4865,0-10-11-16,29,0"


# --- JA3S -----------------------------------------------------------------------------------


def test_ja3s_strips_grease_extensions() -> None:
    body = server_hello_body(0x1302, [ext(0x4A4A), ext(43, b"\x03\x04"), ext(51, b"\x00\x1d")])
    s = parse_server_hello(body)
    assert ja3s_string(s) == "771,4866,43-51"
    # The same string tshark reports for the openssl-hrr capture's ServerHellos.
    assert md5_hex("771,4866,43-51") == "15af977ce25de452b96affa2addb1036"


def test_ja3s_tls12_without_extensions() -> None:
    s = parse_server_hello(server_hello_body(0xC02F, None, version=0x0301))
    assert ja3s_string(s) == "769,49199,"


# --- JA4 ------------------------------------------------------------------------------------


def h12(text: str) -> str:
    return sha256(text.encode()).hexdigest()[:12]


def test_ja4_foxio_readme_example() -> None:
    # FoxIO's README: t13d1516h2_8daaf6152771_e5627efa2ab1 with its ja4_r. The hello is rebuilt
    # from the raw lists (SNI and ALPN added back, GREASE added in every list).
    ciphers = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
               0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]  # fmt: skip
    exts = [0x0000, 0x0017, 0xFF01, 0x000A, 0x000B, 0x0023, 0x0010, 0x0005, 0x000D, 0x0012,
            0x0033, 0x002D, 0x002B, 0x001B, 0x4469, 0x0015]  # fmt: skip
    sigs = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
    hello = build_hello(
        771, [0x5A5A, *ciphers], [0x8A8A, *exts, 0xAAAA], [0x6A6A, 29, 23], [0],
        sig_algs=sigs, versions=(0x7A7A, 0x0304, 0x0303), alpn=(b"h2", b"http/1.1"),
    )  # fmt: skip
    raw_b = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    raw_c = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
    raw_d = "0403,0804,0401,0503,0805,0501,0806,0601"
    assert ja4_r(hello) == f"t13d1516h2_{raw_b}_{raw_c}_{raw_d}"
    assert h12(raw_b) == "8daaf6152771" and h12(f"{raw_c}_{raw_d}") == "e5627efa2ab1"
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


@pytest.mark.parametrize(
    ("legacy", "versions", "code"),
    [
        (0x0303, (0x0A0A, 0x0304, 0x0303), "13"),  # highest non-GREASE of supported_versions
        (0x0303, (0xFAFA,), "12"),  # only GREASE: fall back to legacy_version
        (0x0303, (), "12"),
        (0x0302, (), "11"),
        (0x0301, (), "10"),
        (0x0300, (), "s3"),
        (0x0002, (), "s2"),
        (0x0303, (0x0303, 0x0302), "12"),
        (0x0305, (), "00"),  # unknown
    ],
)
def test_ja4_version(legacy: int, versions: tuple[int, ...], code: str) -> None:
    exts = [10, 43] if versions else [10]
    hello = build_hello(legacy, [0x002F], exts, [29], versions=versions)
    assert ja4(hello)[1:3] == code


def test_ja4_sni_d_or_i_and_counts_exclude_grease() -> None:
    with_sni = build_hello(771, [0x0A0A, 1, 2, 3], [0x1A1A, 0, 10, 16], [29])
    no_sni = build_hello(771, [1, 2, 3], [10, 16], [29])
    # 3 ciphers; extensions: 0, 10, 16 (SNI and ALPN counted) = 3, or 2 without SNI.
    assert ja4(with_sni).startswith("t12d0303h2_")  # legacy 771, no supported_versions ext
    assert ja4(no_sni).startswith("t12i0302h2_")


def test_ja4_counts_capped_at_99() -> None:
    ciphers = list(range(1, 121))  # 120 ciphers
    exts = [10, *range(1000, 1110)]  # 111 extensions
    hello = build_hello(771, ciphers, exts, [29])
    a, b, c = ja4(hello).split("_")
    assert a == "t12i999900"  # no ALPN extension
    # b still hashes every cipher (the cap is only in the count).
    assert b == h12(",".join(f"{x:04x}" for x in sorted(ciphers)))
    assert c == h12(",".join(f"{x:04x}" for x in sorted(exts)))  # no sig algs -> no "_"


@pytest.mark.parametrize(
    ("alpn", "code"),
    [
        ((b"h2", b"http/1.1"), "h2"),  # first value only
        ((b"http/1.1",), "h1"),  # first and last character
        ((b"imap",), "ip"),
        ((b"x",), "xx"),  # one character: first == last
        ((b"\xba\xad",), "bd"),  # not alphanumeric: hex 'baad' -> first and last hex digit
        ((b"h2\xff",), "6f"),  # last byte not alphanumeric: hex '6832ff'
        ((b"/x",), "28"),  # first byte not alphanumeric: hex '2f78'
        ((b"",), "00"),  # empty first value
    ],
)
def test_ja4_alpn_code(alpn: tuple[bytes, ...], code: str) -> None:
    hello = build_hello(771, [1], [16], alpn=alpn)
    assert ja4(hello)[8:10] == code


def test_ja4_no_alpn_gives_00() -> None:
    assert ja4(build_hello(771, [1], [10], [29]))[8:10] == "00"


def test_ja4_empty_parts_are_twelve_zeros() -> None:
    # Only SNI and ALPN (removed from c) and no ciphers: nothing to hash in b or c.
    hello = build_hello(771, [], [0, 16])
    assert ja4(hello) == "t12d0002h2_000000000000_000000000000"


def test_ja4_signature_algorithms_in_wire_order_not_sorted() -> None:
    sigs = (0x0804, 0x0403, 0x0401)  # deliberately unsorted
    hello = build_hello(771, [0x1301], [43, 13, 10], [29], sig_algs=sigs)
    c_text = "000a,000d,002b_0804,0403,0401"
    assert ja4_r(hello) == "t13i0103h2_1301_000a,000d,002b_0804,0403,0401".replace("h2", "00")
    assert ja4(hello) == f"t13i010300_{h12('1301')}_{h12(c_text)}"


def test_ja4_transport_prefix() -> None:
    hello = build_hello(771, [1], [10], [29])
    assert ja4(hello, "quic")[0] == "q"
    assert ja4_r(hello, "dtls")[0] == "d"


# --- Dovecot's JA3 --------------------------------------------------------------------------

GNUTLS_WIRE = (
    "771,4866-4867-4865-4868-49196-52393-49325-49162-49195-49324-49161-49200-52392-49172-"
    "49199-49171-157-49309-53-156-49308-47-159-52394-49311-57-158-49310-51,"
    "5-10-11-13-22-23-35-51-43-65281-0-45-28,23-24-25-29-30-256-257-258-259-260,0"
)


def test_dovecot_gnutls_example_from_spec() -> None:
    hello = from_ja3(GNUTLS_WIRE)
    assert ja3_string(hello) == GNUTLS_WIRE
    assert md5_hex(GNUTLS_WIRE) == "f35ce21b44ac0b87d3266294bb1b0e20"
    dovecot = GNUTLS_WIRE.replace("-45-28,", "-45,")  # record_size_limit (28) unknown to 3.0
    assert ja3_dovecot_string(hello) == dovecot
    assert md5(dovecot.encode()).hexdigest() == "b7e9d913d85c071f5b806d59601e9b96"
    assert md5_hex(ja3_dovecot_string(hello, "openssl-3.0")) == "b7e9d913d85c071f5b806d59601e9b96"


def test_dovecot_tls10_openssl_example_from_spec() -> None:
    # openssl s_client -tls1 without SNI: the lists tshark reports for tests/pcaps/openssl-tls10
    # minus server_name; the spec's two published hashes confirm the string.
    wire = "769,49162-49172-57-49161-49171-51-53-47-255,11-10-35-22-23,29-23-30-25-24,0-1-2"
    hello = from_ja3(wire)
    assert md5_hex(ja3_string(hello)) == "53652b2730564404986852cde177b6d9"
    assert ja3_dovecot_string(hello) == "771" + wire[3:]  # version always 771
    assert md5_hex(ja3_dovecot_string(hello)) == "b13c3d129c5fcb15bdaf85e1575f0e3b"


def test_dovecot_keeps_grease_ciphers_drops_unknown_extensions() -> None:
    hello = build_hello(
        0x0303,
        [0x3A3A, 4865, 4866],
        [0x5A5A, 0, 27, 28, 34, 10, 11, 17513, 65037, 57, 19, 20, 43, 51, 65281, 0xEAEA],
        [0x4A4A, 29, 23],
        [0],
    )
    # GREASE cipher 0x3a3a = 14906 stays; groups lose GREASE; point formats raw.
    assert (
        ja3_dovecot_string(hello, "openssl-3.0")
        == "771,14906-4865-4866,0-10-11-43-51-65281,29-23,0"
    )
    assert (
        ja3_dovecot_string(hello, "openssl-3.2")
        == "771,14906-4865-4866,0-27-10-11-19-20-43-51-65281,29-23,0"
    )
    # Distribution packages of Dovecot 2.4 link OpenSSL >= 3.2: that is the default.
    assert DEFAULT_PROFILE == "openssl-3.2"
    assert ja3_dovecot_string(hello) == ja3_dovecot_string(hello, "openssl-3.2")
    assert ja3_dovecot_string(hello, "openssl-3.5") == ja3_dovecot_string(hello, "openssl-3.2")
    by_profile = dovecot_hashes(hello)
    assert by_profile == {
        "openssl-3.0": md5_hex("771,14906-4865-4866,0-10-11-43-51-65281,29-23,0"),
        "openssl-3.2": md5_hex("771,14906-4865-4866,0-27-10-11-19-20-43-51-65281,29-23,0"),
    }
    assert profiles_matching(by_profile["openssl-3.0"], by_profile) == ("openssl-3.0",)
    assert profiles_matching("0" * 32, by_profile) == ()
    # A hello with no extension the profiles disagree on cannot tell them apart.
    plain = dovecot_hashes(build_hello(0x0303, [4865], [0, 10, 11], [29], [0]))
    assert profiles_matching(plain["openssl-3.2"], plain) == ("openssl-3.0", "openssl-3.2")


def test_dovecot_openssl30_known_set_is_the_spec_list() -> None:
    spec = {0, 1, 5, 10, 11, 12, 13, 16, 18, 21, 22, 23, 35, 41, 42, 43, 44, 45, 47, 49, 50, 51,
            13172, 65000, 65281}  # fmt: skip
    assert OPENSSL_PROFILES["openssl-3.0"] == spec
    # Measured on Debian 13's Dovecot 2.4.1 with OpenSSL 3.5.9 (fingerprints.md).
    spec_35 = {0, 1, 5, 10, 11, 12, 13, 14, 16, 18, 19, 20, 21, 22, 23, 27, 35, 41, 42, 43, 44,
               45, 47, 49, 50, 51, 13172, 65000, 65281}  # fmt: skip
    assert OPENSSL_PROFILES["openssl-3.2"] == spec_35


def test_dovecot_version_is_771_even_for_tls10_hello() -> None:
    hello = build_hello(0x0301, [47], [10, 11], [23], [0])
    assert ja3_dovecot_string(hello) == "771,47,10-11,23,0"
    assert ja3_string(hello) == "769,47,10-11,23,0"


def test_dovecot_same_as_wire_for_plain_openssl_client() -> None:
    # No GREASE, only extensions OpenSSL 3.0 knows: both hashes agree (spec's consequence).
    wire = (
        "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-"
        "49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,"
        "0-11-10-35-16-22-23-13-43-45-51,29-23-30-25-24-256-257-258-259-260,0-1-2"
    )  # tshark's string for tests/pcaps/openssl-alpn.pcap
    hello = from_ja3(wire)
    assert ja3_dovecot_string(hello) == ja3_string(hello) == wire


def test_dovecot_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"openssl-3\.0"):
        ja3_dovecot_string(build_hello(771, [1], []), "openssl-9")

"""QUIC Initial decryption and ClientHello reassembly (ja3svc.quic).

Oracles: the test vectors printed in RFC 9001 appendix A (v1) and RFC 9369 appendix A (v2);
tshark 4.0.17's JA3 for the shared FoxIO captures and for our own aioquic captures
(tests/pcaps/quic, made by regenerate.py there); FoxIO's recorded JA4
(tests/pcaps/quic/foxio-ja4.json).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ja3svc.quic
from ja3svc.hello import parse_client_hello, parse_server_hello
from ja3svc.ja3 import ja3_string, ja3s_string
from ja3svc.ja4 import ja4
from ja3svc.quic import (
    QUIC_V1,
    QUIC_V2,
    CryptoStream,
    QuicInitialAssembler,
    looks_like_quic_initial,
)
from ja3svc.quic.frames import crypto_frames
from ja3svc.quic.keys import VERSIONS, PacketKeys, initial_keys, initial_secrets
from ja3svc.quic.packets import decode_packet_number
from tests.support.paths import FOXIO, PCAPS
from tests.support.udp_capture import udp_datagrams

OWN_PCAPS = PCAPS / "quic"

# ---------------------------------------------------------------------------------------------
# RFC 9001 appendix A and RFC 9369 appendix A: the same client DCID and hello for both versions.

RFC_DCID = bytes.fromhex("8394c8f03e515708")
# A.2: the client's only frame: CRYPTO (06), offset 0 (00), length 0x0f1 (40f1), then the
# ClientHello handshake message: type 1, length 0x0000ed, body (SNI example.com, ALPN "alpn").
RFC_CLIENT_CRYPTO_FRAME = bytes.fromhex(
    "060040f1"  # CRYPTO frame header
    "010000ed"  # handshake header: ClientHello, 237 bytes
    "0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c00000413011302010000c0"
    "00000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559fedba753de171fa71"
    "f50f1ce15d43e994ec74d748002b0003020304000d0010000e0403050306030203080408050806002d0002"
    "0101001c00024001003900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901"
    "100f088394c8f03e51570806048000ffff"
)
RFC_CLIENT_HELLO_BODY = RFC_CLIENT_CRYPTO_FRAME[8:]
# A.3: the server's payload: ACK (02 00 00 00 00) then CRYPTO with the ServerHello.
RFC_SERVER_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566dc5430b9a04"
    "5a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d1081287c834d5311bcf32b"
    "b9da1a002b00020304"
)

RFC = {
    QUIC_V1: {
        "client_secret": "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
        "server_secret": "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b",
        "client": ("1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
                   "9f50449e04a0e810283a1e9933adedd2"),
        "server": ("cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e",
                   "c206b8d9b9f0f37644430b490eeaa314"),
        # header protection: sample -> first 5 mask bytes
        "client_sample": ("d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"),
        "server_sample": ("2cd0991cd25b0aac406a5816b6394100", "2ec0d8356a"),
        # unprotected header: c3 (Initial, 4-byte pn), version, dcid, scid 0, token 0,
        # length 0x449e, packet number 2
        "client_header": "c300000001088394c8f03e5157080000449e00000002",
        "server_header": "c1000000010008f067a5502a4262b50040750001",
        "client_packet": (
            "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11d242b123dc9bd8bab936b4"
            "7d92ec356c0bab7df5976d27cd449f63300099f3991c260ec4c60d17b31f8429157bb35a1282a643a8d226"
            "2cad67500cadb8e7378c8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df621230"
            "c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5457afd84d05dfffdb2039284"
            "4ae812154682e9cf012f9021a6f0be17ddd0c2084dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4"
            "f5a6cf3948838a3aec4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3485e"
            "8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db059ae0648db2f64264ed5e39be"
            "2e20d82df566da8dd5998ccabdae053060ae6c7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851"
            "f681d582363aa5f89937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556be52af"
            "e3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c7468449a13d8e3b95811a198f3491d"
            "e3e7fe942b330407abf82a4ed7c1b311663ac69890f4157015853d91e923037c227a33cdd5ec281ca3f79c"
            "44546b9d90ca00f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632291d6a41"
            "8211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe5896425c5bac4aee82e57a85aaf4e2513e4"
            "f05796b07ba2ee47d80506f8d2c25e50fd14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28"
            "ff18f58891ffef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198e3fc433f9f"
            "2541010ae17c1bf202580f6047472fb36857fe843b19f5984009ddc324044e847a4f4a0ab34f719595de37"
            "252d6235365e9b84392b061085349d73203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff"
            "20dcc0c77fcb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450efc60ac47683d"
            "7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03adea2e1fbc5aa463d08ca19896d2bf59a071b"
            "851e6c239052172f296bfb5e72404790a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae39865"
            "47926cd2162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f440591f355e12d4"
            "39ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca06948109f23f350db82123535eb8a7433bdab"
            "cb909271a6ecbcb58b936a88cd4e8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e30"
            "8f76f0be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f0940054da48781893a7e4"
            "9ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab760d58a606654f9f4400e8b38591356fbf6425"
            "aca26dc85244259ff2b19c41b9f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa7"
            "31b4056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd46840647e78bfe706ca4cf5e9"
            "c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241e221af44860018ab0856972e194cd934"
        ),
        "server_packet": (
            "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a1c6979"
            "7554780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f"
            "3bded74b562bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc421"
            "58407dd074ee"
        ),
    },
    QUIC_V2: {
        "client_secret": "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
        "server_secret": "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1",
        "client": ("8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f",
                   "45b95e15235d6f45a6b19cbcb0294ba9"),
        "server": ("82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652",
                   "edf6d05c83121201b436e16877593c3a"),
        "client_sample": ("ffe67b6abcdb4298b485dd04de806071", "94a0c95e80"),
        # v2's Initial type bits are 01, so the first byte is d3 rather than c3
        "client_header": "d36b3343cf088394c8f03e5157080000449e00000002",
        "server_header": "d16b3343cf0008f067a5502a4262b50040750001",
        "client_packet": (
            "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485dd04de806071bf03dceebf"
            "a162e75d6c96058bdbfb127cdfcbf903388e99ad049f9a3dd4425ae4d0992cfff18ecf0fdb5a842d097470"
            "52f17ac2053d21f57c5d250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a12"
            "834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500cb9122faa9f1df66c392079a"
            "1b40f0de1c6054196a11cbea40afb6ef5253cd6818f6625efce3b6def6ba7e4b37a40f7732e093daa7d521"
            "90935b8da58976ff3312ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3d396"
            "ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd6f7521a3f6c7d5dd3ec9b3f233"
            "773d4b46d23cc375eb198c63301c21801f6520bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d"
            "2dcbb90c6b877045636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1fac7cf4"
            "ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c1216ccce2d0193f958bb3850a833f7"
            "ae432b65bc5a53975c155aa4bcb4f7b2c4e54df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe19"
            "35e0491d77ffb4fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b8017c25c"
            "a9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de714d19d61370f8149748c72f132f0fc"
            "99f34d766c6938597040d8f9e2bb522ff99c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151"
            "adfeceb51b91abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd80bf4dc8b5"
            "2a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db848265e3e5eb72dfe8299ad7481a4083"
            "22cac55786e52f633b2fb6b614eaed18d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb4170"
            "0b41f90a15c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc7e27a096d37a"
            "1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61f6b5b984d4d3dfa033c1bb7e4f0037febf"
            "406d91c0dccf32acf423cfa1e7071010d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f"
            "2f13458b3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e06ebfde206bfb0"
            "fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce8dfce39ab71e7c32d318d136b6100671a1ae"
            "6a6600e3899f31f0eed19e3417d134b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd"
            "52fdf1e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd5d3b22dc2be80919"
            "b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e38d209d0fa6536d27a5d6fbb17641cde27525d6"
            "1093f1b28072d111b2b4ae5f89d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf"
            "4b536f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb199a37ddec600545473c"
            "fb5a05e08d0b209973b2172b4d21fb69745a262ccde96ba18b2faa745b6fe189cf772a9f84cbfc"
        ),
        "server_packet": (
            "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698baeea26b91eb761d9b8923"
            "7bbf87263017915358230035f7fd3945d88965cf17f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a"
            "393e42757507698075b2c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca84b"
            "ed8521e2e140"
        ),
    },
}  # fmt: skip


def _packet(version: int, which: str) -> bytes:
    return bytes.fromhex(RFC[version][f"{which}_packet"])


# ---------------------------------------------------------------------------------------------
# A test-side packet builder (header protection + AEAD), checked against the RFC bytes below,
# used to make split, reordered and coalesced Initials the RFCs do not print.


def protect(keys: PacketKeys, header: bytes, payload: bytes, pn: int, pn_len: int) -> bytes:
    sealed = keys.seal(pn, header, payload)
    packet = bytearray(header + sealed)
    pn_offset = len(header) - pn_len
    mask = keys.header_mask(bytes(packet[pn_offset + 4 : pn_offset + 20]))
    packet[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        packet[pn_offset + i] ^= mask[1 + i]
    return bytes(packet)


def varint(value: int) -> bytes:
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x80000000).to_bytes(4, "big")


def initial(
    payload: bytes,
    *,
    version: int = QUIC_V1,
    dcid: bytes = RFC_DCID,
    scid: bytes = b"",
    pn: int = 0,
    server: bool = False,
    pad_to: int = 1162,
    token: bytes = b"",
) -> bytes:
    """One protected Initial packet with a 4-byte packet number, PADDING up to ``pad_to``."""
    v = VERSIONS[version]
    client_keys, server_keys = initial_keys(v, dcid)
    payload = payload + bytes(max(0, pad_to - len(payload)))
    first = 0xC0 | (v.type_bits("initial") << 4) | 0x03
    length = 4 + len(payload) + 16
    # Length always as a 2-byte varint (0x4000 | n): non-minimal encodings are legal, and the
    # RFC packets use this form too.
    header = (
        bytes([first])
        + version.to_bytes(4, "big")
        + bytes([len(dcid)]) + dcid
        + bytes([len(scid)]) + scid
        + varint(len(token)) + token
        + (0x4000 | length).to_bytes(2, "big")
        + pn.to_bytes(4, "big")
    )  # fmt: skip
    return protect(server_keys if server else client_keys, header, payload, pn, 4)


def crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


# ---------------------------------------------------------------------------------------------
# RFC vectors


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2])
def test_initial_secrets_and_keys_match_the_rfc(version: int) -> None:
    v = VERSIONS[version]
    client_secret, server_secret = initial_secrets(v, RFC_DCID)
    assert client_secret.hex() == RFC[version]["client_secret"]
    assert server_secret.hex() == RFC[version]["server_secret"]
    client, server = initial_keys(v, RFC_DCID)
    assert (client.key.hex(), client.iv.hex(), client.hp_key.hex()) == RFC[version]["client"]
    assert (server.key.hex(), server.iv.hex(), server.hp_key.hex()) == RFC[version]["server"]


@pytest.mark.parametrize(
    ("version", "which"),
    [(QUIC_V1, "client"), (QUIC_V1, "server"), (QUIC_V2, "client")],
)
def test_header_protection_mask_matches_the_rfc(version: int, which: str) -> None:
    client, server = initial_keys(VERSIONS[version], RFC_DCID)
    sample, mask = RFC[version][f"{which}_sample"]
    keys = client if which == "client" else server
    assert keys.header_mask(bytes.fromhex(sample)).hex() == mask


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2])
def test_test_builder_reproduces_the_rfc_packets(version: int) -> None:
    """The builder used by the tests below seals the RFC's plaintext into the RFC's bytes."""
    client, server = initial_keys(VERSIONS[version], RFC_DCID)
    header = bytes.fromhex(RFC[version]["client_header"])
    payload = RFC_CLIENT_CRYPTO_FRAME + bytes(1162 - len(RFC_CLIENT_CRYPTO_FRAME))
    assert protect(client, header, payload, 2, 4) == _packet(version, "client")
    header = bytes.fromhex(RFC[version]["server_header"])
    assert protect(server, header, RFC_SERVER_PAYLOAD, 1, 2) == _packet(version, "server")
    assert initial(RFC_CLIENT_CRYPTO_FRAME, version=version, pn=2) == _packet(version, "client")


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2])
def test_rfc_client_initial_gives_the_client_hello(version: int) -> None:
    assembler = QuicInitialAssembler()
    assert assembler.feed(_packet(version, "client")) == [RFC_CLIENT_HELLO_BODY]
    assert not assembler.errors
    hello = parse_client_hello(RFC_CLIENT_HELLO_BODY)
    assert hello.sni == "example.com"
    assert hello.alpn == (b"alpn",)
    # By hand from the vector: TLS 1.3, SNI, 2 ciphers, 11 extensions, ALPN "alpn".
    assert ja4(hello, "quic").startswith("q13d0211an_")


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2])
def test_rfc_server_initial_gives_the_server_hello(version: int) -> None:
    assembler = QuicInitialAssembler()
    assembler.feed(_packet(version, "client"))
    (body,) = assembler.feed_server(_packet(version, "server"))
    assert body == RFC_SERVER_PAYLOAD[5 + 4 + 4 :]  # after ACK, CRYPTO header, handshake header
    assert ja3s_string(parse_server_hello(body)) == "771,4865,51-43"
    assert assembler.done
    assert not assembler.errors


def test_server_initial_before_any_client_initial_is_counted() -> None:
    assembler = QuicInitialAssembler()
    assert assembler.feed_server(_packet(QUIC_V1, "server")) == []
    assert assembler.errors == {"server_before_client": 1}


def test_packet_number_decoding_rfc9000_a3() -> None:
    # RFC 9000 A.3's example: largest 0xa82f30ea, 16-bit truncated 0x9b32 -> 0xa82f9b32.
    assert decode_packet_number(0xA82F30EA, 0x9B32, 16) == 0xA82F9B32
    assert decode_packet_number(-1, 2, 32) == 2
    assert decode_packet_number(255, 0, 8) == 256


# ---------------------------------------------------------------------------------------------
# Reassembly: split, reordered, coalesced, duplicated


def _big_hello_message() -> bytes:
    """A ~3.2 KB ClientHello message: the RFC hello plus a large padding extension (21)."""
    body = bytearray(RFC_CLIENT_HELLO_BODY)
    ext = b"\x00\x15" + (3000).to_bytes(2, "big") + bytes(3000)
    ext_len_at = 2 + 32 + 1 + 2 + 4 + 2  # version, random, sid(0), ciphers(4), compression
    old = int.from_bytes(body[ext_len_at : ext_len_at + 2], "big")
    body[ext_len_at : ext_len_at + 2] = (old + len(ext)).to_bytes(2, "big")
    body += ext
    return b"\x01" + len(body).to_bytes(3, "big") + bytes(body)


def test_hello_split_over_three_initials_out_of_order() -> None:
    message = _big_hello_message()
    pieces = [message[:1100], message[1100:2200], message[2200:]]
    packets = [
        initial(crypto(o, p), pn=i)
        for i, (o, p) in enumerate(zip((0, 1100, 2200), pieces, strict=True))
    ]
    assembler = QuicInitialAssembler()
    assert assembler.feed(packets[2]) == []
    assert assembler.feed(packets[0]) == []
    assert assembler.feed(packets[0]) == []  # retransmission changes nothing
    assert assembler.feed(packets[1]) == [message[4:]]
    assert not assembler.errors
    assert parse_client_hello(message[4:]).sni == "example.com"


# PING, CRYPTO, PADDING, both ACK layouts (with blocks and timestamps) and CONNECTION_CLOSE in
# Google's framing (T050/T051); the Rust engine's frames.rs tests hold the same bytes.
GOOGLE_FRAMES = bytes.fromhex(
    "07"  # PING
    "0805026c6f"  # CRYPTO offset 5, "lo"
    "0000"  # PADDING
    "400500000100"  # ACK: 1-byte fields, one block, no timestamps
    # ACK 01100101: extra blocks, 2-byte largest and block lengths; 2 blocks; 2 timestamps
    "650100" "0000" "02" "0003" "010001" "010001" "02" "0100000000" "020000"
    "0200000001000178"  # CONNECTION_CLOSE, reason "x"
    "08000168"  # CRYPTO offset 0, "h"
)  # fmt: skip


def test_google_framing_of_t050_and_t051() -> None:
    assert crypto_frames(GOOGLE_FRAMES, google=True) == ([(5, b"lo"), (0, b"h")], None)
    # The same bytes read as IETF frames stop at once: 0x07 is not an Initial frame there.
    assert crypto_frames(GOOGLE_FRAMES) == ([], "unexpected_frame")
    assert VERSIONS[0x54303530].google_frames and VERSIONS[0x54303531].google_frames
    assert not any(v.google_frames for n, v in VERSIONS.items() if n >> 8 != 0x543035)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("08000561", "truncated_crypto_frame"),
        ("400000", "truncated_frame"),
        ("60000000ff01", "truncated_frame"),
        ("400000000109", "truncated_frame"),
        ("02000000000009", "truncated_frame"),
        ("06000161", "unexpected_frame"),  # IETF's CRYPTO type
        ("8000", "unexpected_frame"),  # a STREAM frame
    ],
)
def test_google_framing_stops_at_unknown_or_truncated_frames(payload: str, reason: str) -> None:
    assert crypto_frames(bytes.fromhex(payload), google=True)[1] == reason


def test_google_framing_survives_every_truncation() -> None:
    for cut in range(len(GOOGLE_FRAMES)):
        found, _ = crypto_frames(GOOGLE_FRAMES[:cut], google=True)
        assert len(found) <= 2


def test_chrome_style_frames_ping_padding_and_ack_between_reversed_crypto_frames() -> None:
    message = RFC_CLIENT_CRYPTO_FRAME[4:]
    frames = (
        b"\x01"  # PING
        + crypto(100, message[100:])
        + b"\x00\x00\x00"  # PADDING
        + b"\x02\x05\x00\x01\x00\x00"  # ACK: largest 5, delay 0, 1 range: first 0, gap 0, len 0
        + b"\x01"
        + crypto(0, message[:100])
        + b"\x03\x01\x00\x00\x00\x01\x02\x03"  # ACK_ECN: largest 1, no ranges, 3 ECN counts
    )
    assembler = QuicInitialAssembler()
    assert assembler.feed(initial(frames)) == [RFC_CLIENT_HELLO_BODY]
    assert not assembler.errors


def test_coalesced_initial_and_handshake_packets_in_one_datagram() -> None:
    message = RFC_CLIENT_CRYPTO_FRAME[4:]
    first = initial(crypto(0, message[:50]), pn=0, pad_to=0)
    second = initial(crypto(50, message[50:]), pn=1, pad_to=0)
    # A Handshake packet (v1 type bits 10) we cannot decrypt, skipped by its Length field.
    handshake = (
        bytes([0xE0]) + b"\x00\x00\x00\x01" + b"\x08" + RFC_DCID + b"\x00" + b"\x40\x20" + bytes(32)
    )
    assembler = QuicInitialAssembler()
    assert assembler.feed(first + second + b"\x40" + bytes(20)) == [RFC_CLIENT_HELLO_BODY]
    assert not assembler.errors
    assert not assembler.done
    assert assembler.feed(first + handshake) == []  # the client has Handshake keys: done
    assert assembler.done


def test_later_client_initial_addressed_to_the_server_chosen_id_keeps_the_original_keys() -> None:
    message = RFC_CLIENT_CRYPTO_FRAME[4:]
    v = VERSIONS[QUIC_V1]
    client_keys, _ = initial_keys(v, RFC_DCID)
    assembler = QuicInitialAssembler()
    assert assembler.feed(initial(crypto(0, message[:60]), pn=0)) == []
    # Same keys (derived from the original DCID), but the header names the server's ID.
    payload = crypto(60, message[60:]) + bytes(1000)
    new_dcid = bytes.fromhex("f067a5502a4262b5")
    header = (
        b"\xc3\x00\x00\x00\x01\x08" + new_dcid + b"\x00\x00"
        + (0x4000 | (4 + len(payload) + 16)).to_bytes(2, "big") + (1).to_bytes(4, "big")
    )  # fmt: skip
    assert assembler.feed(protect(client_keys, header, payload, 1, 4)) == [RFC_CLIENT_HELLO_BODY]
    assert assembler.key_changes == 0
    assert not assembler.errors


def test_retry_resend_is_not_a_second_hello_but_a_new_hello_is() -> None:
    assembler = QuicInitialAssembler()
    assert assembler.feed(initial(RFC_CLIENT_CRYPTO_FRAME)) == [RFC_CLIENT_HELLO_BODY]
    new_dcid = bytes.fromhex("0011223344556677")
    # After a Retry: the same hello under keys from the new DCID, with the token.
    resend = initial(RFC_CLIENT_CRYPTO_FRAME, dcid=new_dcid, token=b"retry-token")
    assert assembler.feed(resend) == []
    assert (assembler.key_changes, assembler.repeated_hellos, assembler.client_hellos) == (1, 1, 1)
    # A different hello (new random) on the same 4-tuple is reported, as hello number 2.
    other = bytearray(RFC_CLIENT_CRYPTO_FRAME)
    other[8 + 2] ^= 0xFF
    third = initial(bytes(other), dcid=bytes.fromhex("8899aabbccddeeff"))
    assert assembler.feed(third) == [bytes(other[8:])]
    assert assembler.client_hellos == 2
    assert not assembler.errors


# ---------------------------------------------------------------------------------------------
# Bounds and garbage


def test_crypto_data_beyond_the_cap_is_dropped_and_counted() -> None:
    assembler = QuicInitialAssembler(max_crypto_bytes=4096)
    assert assembler.feed(initial(crypto(5000, b"x" * 100))) == []
    assert assembler.errors == {"crypto_over_cap": 1}


def test_a_hello_announcing_more_than_the_cap_stops_the_stream() -> None:
    assembler = QuicInitialAssembler(max_crypto_bytes=4096)
    assert assembler.feed(initial(crypto(0, b"\x01\x01\x00\x00" + bytes(100)))) == []
    assert assembler.errors == {"message_too_large": 1}


def test_fragment_count_is_bounded() -> None:
    stream = CryptoStream()
    reasons = [stream.add(offset, b"x") for offset in range(10, 10 + 2 * 100, 2)]
    assert reasons.count("too_many_fragments") == 100 - 64
    assert stream.messages() == ([], None)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "aead_failed"),
        (lambda p: p[:600], "truncated_packet"),
        (lambda p: p[:1] + b"\x00\x00\x00\x09" + p[5:], "unknown_version"),
        (lambda p: p[:5] + b"\x21" + p[6:], "bad_cid_length"),
    ],
)
def test_damaged_packets_are_counted_not_raised(mutate, reason: str) -> None:
    assembler = QuicInitialAssembler()
    assert assembler.feed(mutate(_packet(QUIC_V1, "client"))) == []
    assert assembler.errors == {reason: 1}


def test_looks_like_quic_initial() -> None:
    assert looks_like_quic_initial(_packet(QUIC_V1, "client"))
    assert looks_like_quic_initial(_packet(QUIC_V2, "client"))
    assert not looks_like_quic_initial(_packet(QUIC_V1, "server"))  # below 1200 bytes
    assert not looks_like_quic_initial(b"\x40" + bytes(1300))  # short header
    v1_handshake = bytes([0xE3]) + _packet(QUIC_V1, "client")[1:]
    assert not looks_like_quic_initial(v1_handshake)
    v2_as_v1_type = bytes([0xC3]) + _packet(QUIC_V2, "client")[1:]  # v2 Initial bits are 01
    assert not looks_like_quic_initial(v2_as_v1_type)
    assert not looks_like_quic_initial(b"")
    draft29 = udp_datagrams(OWN_PCAPS / "draft29.pcap")[0].payload
    assert looks_like_quic_initial(draft29)
    # Draft-22 itself and Google's Q050 (no TLS) have no keys here: not taken for QUIC.
    for number in (0xFF000016, 0x51303530):
        assert not looks_like_quic_initial(draft29[:1] + number.to_bytes(4, "big") + draft29[5:])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes_never_raise(data: bytes) -> None:
    assembler = QuicInitialAssembler()
    assembler.feed(data)
    assembler.feed_server(data)
    looks_like_quic_initial(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_and_truncated_real_packets_never_raise(data: st.DataObject) -> None:
    packet = bytearray(_packet(QUIC_V1, "client"))
    for _ in range(data.draw(st.integers(0, 4))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    assembler = QuicInitialAssembler()
    assembler.feed(bytes(packet[:cut]))
    assembler.feed(bytes(packet))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1100))
def test_random_decrypted_payloads_never_raise(payload: bytes) -> None:
    """Garbage *inside* a valid Initial reaches the frame parser and the stream."""
    assembler = QuicInitialAssembler()
    assembler.feed(initial(payload, pad_to=0 if len(payload) >= 20 else 20))
    crypto_frames(payload, google=True)  # T050/T051's framing


def test_public_surface() -> None:
    assert sorted(ja3svc.quic.__all__) == sorted(
        ["QUIC_V1", "QUIC_V2", "CryptoStream", "QuicInitialAssembler", "looks_like_quic_initial"]
    )
    for name in ja3svc.quic.__all__:
        assert hasattr(ja3svc.quic, name)


# ---------------------------------------------------------------------------------------------
# Captures


def hellos_in_capture(
    path: Path,
) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]]]:
    """(frame, client port, body) of every ClientHello and ServerHello, one assembler per
    4-tuple, created by looks_like_quic_initial as the packet loop will."""
    connections: dict[tuple[str, int, str, int], QuicInitialAssembler] = {}
    clients, servers = [], []
    for d in udp_datagrams(path):
        forward, reverse = (d.src, d.sport, d.dst, d.dport), (d.dst, d.dport, d.src, d.sport)
        if forward in connections:
            clients += [(d.frame, d.sport, b) for b in connections[forward].feed(d.payload)]
        elif reverse in connections:
            servers += [(d.frame, d.dport, b) for b in connections[reverse].feed_server(d.payload)]
        elif looks_like_quic_initial(d.payload):
            connections[forward] = assembler = QuicInitialAssembler()
            clients += [(d.frame, d.sport, b) for b in assembler.feed(d.payload)]
    return clients, servers


def _tshark_quic_rows() -> dict[str, dict[str, list[tuple[int, str]]]]:
    rows: dict[str, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: {"1": [], "2": []})
    with (FOXIO / "expected-ja3-tshark-4.0.17.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["transport"] == "quic":
                rows[row["pcap"]][row["handshake_type"]].append(
                    (int(row["frame"]), row["ja3_or_ja3s_full"])
                )
    return rows


CONFORMANCE_QUIC = [
    "quic-tls-handshake.pcapng",
    "quic-with-several-tls-frames.pcapng",
    "chrome-cloudflare-quic-with-secrets.pcapng",
    "https3-301-get.pcap",
    "ssh2.pcapng",
    "tls-handshake.pcapng",
    "tls-sni.pcapng",
    "tls3.pcapng",
]


@pytest.mark.skipif(not FOXIO.is_dir(), reason="shared/conformance/foxio is not beside the repo")
@pytest.mark.parametrize("name", CONFORMANCE_QUIC)
def test_conformance_capture_ja3_matches_tshark(name: str) -> None:
    expected = _tshark_quic_rows()[name]
    clients, servers = hellos_in_capture(FOXIO / "pcap" / name)
    assert [(f, ja3_string(parse_client_hello(b))) for f, _, b in clients] == sorted(expected["1"])
    assert [(f, ja3s_string(parse_server_hello(b))) for f, _, b in servers] == sorted(expected["2"])


@pytest.mark.skipif(not FOXIO.is_dir(), reason="shared/conformance/foxio is not beside the repo")
@pytest.mark.parametrize(
    "name", [n for n in CONFORMANCE_QUIC if n not in ("https3-301-get.pcap", "tls-sni.pcapng")]
)
def test_conformance_capture_ja4_matches_foxio(name: str) -> None:
    expected = json.loads((OWN_PCAPS / "foxio-ja4.json").read_text())[name]
    clients, _ = hellos_in_capture(FOXIO / "pcap" / name)
    assert {str(port): ja4(parse_client_hello(b), "quic") for _, port, b in clients} == expected


OWN_EXPECTED = json.loads((OWN_PCAPS / "expected.json").read_text())


# After a Retry, aioquic builds a fresh ClientHello (new random and key share) and sends it at
# CRYPTO offset 0 under the new keys. That is a second hello on the wire and ja3svc reports it as
# hello 2; tshark decrypts the packet but takes offset 0 for a retransmission of the first hello
# and dissects nothing. So for retry.pcap the oracle lacks frame 3, whose JA3 is the first's.
TSHARK_MISSES = {"retry.pcap": [3]}


@pytest.mark.parametrize("name", sorted(OWN_EXPECTED))
def test_own_capture_ja3_matches_tshark(name: str) -> None:
    clients, servers = hellos_in_capture(OWN_PCAPS / name)
    expected = OWN_EXPECTED[name]
    want = [(r["frame"], r["ja3"]) for r in expected["client"]]
    want += [(frame, want[0][1]) for frame in TSHARK_MISSES.get(name, [])]
    assert [(f, ja3_string(parse_client_hello(b))) for f, _, b in clients] == sorted(want)
    assert [(f, ja3s_string(parse_server_hello(b))) for f, _, b in servers] == [
        (r["frame"], r["ja3s"]) for r in expected["server"]
    ]


def test_own_captures_cover_every_version_with_keys() -> None:
    """A capture per version in the table, each with a hello tshark decoded in both directions.

    draft27/29/32.pcap are real aioquic 0.8.8 and 0.9.25 connections; no stack available here
    speaks the other drafts, mvfst's versions or Google's T050/T051, so regenerate_versions.py
    re-protects draft29.pcap's Initials under each one's salt (for T050/T051 also re-encoding
    the frames in Google's framing). tshark derives the keys and reads the frames on its own, so
    a wrong salt or frame layout in ja3svc shows as a capture whose hellos ja3svc misses.
    """
    on_the_wire = {}
    for name in OWN_EXPECTED:
        first = udp_datagrams(OWN_PCAPS / name)[0].payload
        on_the_wire.setdefault(int.from_bytes(first[1:5], "big"), []).append(name)
    assert set(VERSIONS) <= set(on_the_wire), sorted(set(VERSIONS) - set(on_the_wire))
    for number, names in on_the_wire.items():
        for name in names:
            expected = OWN_EXPECTED[name]
            assert expected["client"] and expected["server"], (hex(number), name)


def test_own_captures_cover_split_reordered_retry_and_v2() -> None:
    split = udp_datagrams(OWN_PCAPS / "split.pcap")
    reordered = udp_datagrams(OWN_PCAPS / "split-reordered.pcap")
    # The hello needs three Initials; the reordered copy delivers the second piece first.
    assert [d.payload for d in reordered[:2]] == [split[1].payload, split[0].payload]
    assert hellos_in_capture(OWN_PCAPS / "split-reordered.pcap")[0][0][0] == 3
    assert int.from_bytes(udp_datagrams(OWN_PCAPS / "v2.pcap")[0].payload[1:5], "big") == QUIC_V2
    retry = QuicInitialAssembler()
    for d in udp_datagrams(OWN_PCAPS / "retry.pcap"):
        if d.dport == 24433:
            retry.feed(d.payload)
    assert (retry.client_hellos, retry.key_changes, retry.repeated_hellos) == (2, 1, 0)

"""Make the QUIC captures of versions other than v1 and v2 (drafts 23-34, mvfst, Google T050/T051).

Real stacks where one still exists. Current aioquic speaks only v1 and v2; older releases speak
drafts, so each runs from a throwaway venv outside the repository (root: tcpdump records lo)::

    python3 -m venv /tmp/aioquic-0.8 && /tmp/aioquic-0.8/bin/pip install aioquic==0.8.8
    python3 -m venv /tmp/aioquic-0.9 && /tmp/aioquic-0.9/bin/pip install aioquic==0.9.25
    /tmp/aioquic-0.8/bin/python tests/pcaps/quic/regenerate_versions.py capture  # draft-27
    /tmp/aioquic-0.9/bin/python tests/pcaps/quic/regenerate_versions.py capture  # draft-29, -32

No stack available here speaks the other versions, so ``reprotect`` builds them from the real
draft-29 capture: every Initial packet is decrypted under draft-29's keys and encrypted again,
byte for byte the same plaintext and packet number, under the target version's salt, with the
version field rewritten in every long header (Handshake packets keep their protection: nobody
can read them without the TLS secrets anyway). For Google's T050/T051 the frames inside are also
re-encoded the way those versions frame them (see ``_google_frames``)::

    python tests/pcaps/quic/regenerate_versions.py reprotect
    python tests/pcaps/quic/regenerate.py expectations   # tshark, the oracle, for every capture

The salts below are written out from the drafts and Wireshark's packet-quic.c on purpose instead of
importing ja3svc's table: the captures must not depend on the code they test. tshark then decodes
each capture on its own, and its answer is what the tests expect.
"""

from __future__ import annotations

import asyncio
import hmac
import struct
import sys
import tempfile
from functools import partial
from hashlib import sha256
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 24435  # not regenerate.py's port, so both can record at once without mixing

# Real captures: file name -> (aioquic release series that speaks it, version number).
REAL: dict[str, tuple[str, int]] = {
    "draft27.pcap": ("0.8", 0xFF00001B),
    "draft29.pcap": ("0.9", 0xFF00001D),
    "draft32.pcap": ("0.9", 0xFF000020),
}

SALTS = {
    "draft-22": "7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a",
    "draft-23": "c3eef712c72ebb5a11a7d2432bb46365bef9f502",  # drafts 23 to 28
    "draft-29": "afbfec289993d24c9e9786f19c6111e04390a899",  # drafts 29 to 32
    "v1": "38762cf7f55934b34d179ae6a4c80cadccbb7f0a",  # RFC 9001, and drafts 33 and 34
    "t050": "7ff579e5acd072915580304c43a2367c60488310",  # Chromium's quic_versions.cc
    "t051": "7a4edef4e7ccee5fa4506c19124fc8ccda6e033d",
}
SOURCE = ("draft29.pcap", 0xFF00001D, "draft-29")
# Re-protected captures: file name -> (version number, salt name).
REPROTECTED: dict[str, tuple[int, str]] = {
    **{
        f"draft{n}.pcap": (
            0xFF000000 + n,
            "draft-23" if n <= 28 else "draft-29" if n <= 32 else "v1",
        )
        for n in range(23, 35)
        if f"draft{n}.pcap" not in REAL
    },
    "mvfst-faceb001.pcap": (0xFACEB001, "draft-22"),
    "mvfst-faceb002.pcap": (0xFACEB002, "draft-23"),
    "mvfst-faceb00e.pcap": (0xFACEB00E, "draft-23"),
    "gquic-t050.pcap": (0x54303530, "t050"),
    "gquic-t051.pcap": (0x54303531, "t051"),
}
# Google's T050/T051 put IETF long headers around Google QUIC frames: CRYPTO is type 0x08 (then
# the same varint offset and length as IETF's 0x06), ACK is Google's 01nullmm layout.
GOOGLE_FRAMES = {0x54303530, 0x54303531}


def _google_frames(plain: bytes) -> bytes:
    """The IETF frames aioquic put in an Initial, re-encoded as Google QUIC frames, same length.

    Only what aioquic's Initials hold is handled: PADDING, CRYPTO, and an ACK with one range.
    """
    out, pos = bytearray(), 0
    while pos < len(plain):
        frame_type = plain[pos]
        if frame_type == 0x00:
            out.append(0)
            pos += 1
        elif frame_type == 0x06:
            _, p = _varint(plain, pos + 1)
            length, p = _varint(plain, p)
            out += b"\x08" + plain[pos + 1 : p + length]
            pos = p + length
        elif frame_type == 0x02:
            largest, p = _varint(plain, pos + 1)
            _, p = _varint(plain, p)  # ack delay
            ranges, p = _varint(plain, p)
            first, p = _varint(plain, p)
            assert ranges == 0 and largest < 256 and first < 255, "only one small range"
            # 0x40: no extra blocks, 1-byte largest acked, 1-byte block length; the delay is a
            # 16-bit float (0 here); the block length counts packets; no timestamps.
            out += bytes([0x40, largest, 0, 0, first + 1, 0])
            pos = p
        else:
            raise ValueError(f"frame type {frame_type:#x} is not converted")
    # A Google ACK can be a byte longer than an IETF one with a 1-byte delay: trailing PADDING
    # absorbs the difference, so the packet keeps its length.
    if len(out) > len(plain):
        assert not any(out[len(plain) :]), "no trailing padding to absorb the longer ACK"
        del out[len(plain) :]
    return bytes(out.ljust(len(plain), b"\x00"))


# ---------------------------------------------------------------------------------------------
# Real captures


async def _one_connection(version: int, cert: Path, key: Path) -> None:
    import ssl

    from aioquic.asyncio import connect, serve
    from aioquic.quic.configuration import QuicConfiguration

    server_config = QuicConfiguration(
        is_client=False, alpn_protocols=["h3"], supported_versions=[version]
    )
    server_config.load_cert_chain(cert, key)
    server = await serve("127.0.0.1", PORT, configuration=server_config)
    client_config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        server_name="quic.test",
        supported_versions=[version],
        verify_mode=ssl.CERT_NONE,
    )
    try:
        async with connect("127.0.0.1", PORT, configuration=client_config) as client:
            await client.ping()
    finally:
        server.close()


def _record(out: Path, version: int, cert: Path, key: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    from loopback import tcpdump_lo

    with tcpdump_lo(out, ["udp", "port", str(PORT)]):
        asyncio.run(asyncio.wait_for(_one_connection(version, cert, key), 20))


def capture() -> None:
    import aioquic

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from loopback import record_until_captured
    from regenerate import _certificate

    series = ".".join(aioquic.__version__.split(".")[:2])
    wanted = {name: v for name, (s, v) in REAL.items() if s == series}
    if not wanted:
        raise SystemExit(f"aioquic {aioquic.__version__} makes none of {sorted(REAL)}")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = _certificate(Path(tmp))
        for name, version in wanted.items():
            out = HERE / name
            record_until_captured(out, partial(_record, out, version, cert, key))
            print(f"wrote {name} (aioquic {aioquic.__version__})")


# ---------------------------------------------------------------------------------------------
# Re-protected captures


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.digest(secret, info + b"\x01", sha256)[:length]


class _Keys:
    def __init__(self, salt_name: str, dcid: bytes, label: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        initial = hmac.digest(bytes.fromhex(SALTS[salt_name]), dcid, sha256)
        secret = _expand_label(initial, label, 32)
        self.iv = _expand_label(secret, b"quic iv", 12)
        self.aead = AESGCM(_expand_label(secret, b"quic key", 16))
        self.hp = Cipher(algorithms.AES(_expand_label(secret, b"quic hp", 16)), modes.ECB())

    def mask(self, sample: bytes) -> bytes:
        return self.hp.encryptor().update(sample)[:5]

    def nonce(self, pn: int) -> bytes:
        return (int.from_bytes(self.iv, "big") ^ pn).to_bytes(12, "big")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    size = 1 << (buf[pos] >> 6)
    return int.from_bytes(bytes([buf[pos] & 0x3F]) + buf[pos + 1 : pos + size], "big"), pos + size


def _reprotect_datagram(
    data: bytes, version: int, old: tuple[_Keys, _Keys], new: tuple[_Keys, _Keys], client: bool
) -> bytes:
    """Every long-header packet of one datagram with the new version; Initials re-encrypted."""
    out, pos = bytearray(), 0
    while pos < len(data) and data[pos] & 0x80:
        start = pos
        p = pos + 5
        p += 1 + data[p]  # DCID
        p += 1 + data[p]  # SCID
        packet_type = (data[start] >> 4) & 0x03  # every version here has v1's type bits
        if packet_type == 0:
            token_len, p = _varint(data, p)
            p += token_len
        length, pn_offset = _varint(data, p)
        end = pn_offset + length
        packet = bytearray(data[start:end])
        packet[1:5] = version.to_bytes(4, "big")
        if packet_type == 0:
            okeys, nkeys = old[0 if client else 1], new[0 if client else 1]
            pn_at = pn_offset - start
            mask = okeys.mask(bytes(packet[pn_at + 4 : pn_at + 20]))
            first = packet[0] ^ (mask[0] & 0x0F)
            pn_len = (first & 0x03) + 1
            pn_bytes = bytes(
                b ^ m
                for b, m in zip(packet[pn_at : pn_at + pn_len], mask[1 : 1 + pn_len], strict=True)
            )
            pn = int.from_bytes(pn_bytes, "big")  # these captures start at 0 and stay small
            old_header = bytes([first]) + data[start + 1 : pn_offset] + pn_bytes
            plain = okeys.aead.decrypt(okeys.nonce(pn), bytes(packet[pn_at + pn_len :]), old_header)
            new_header = bytes([first]) + bytes(packet[1:pn_at]) + pn_bytes
            if version in GOOGLE_FRAMES:
                plain = _google_frames(plain)
            sealed = nkeys.aead.encrypt(nkeys.nonce(pn), plain, new_header)
            packet = bytearray(new_header + sealed)
            mask = nkeys.mask(bytes(packet[pn_at + 4 : pn_at + 20]))
            packet[0] ^= mask[0] & 0x0F
            for i in range(pn_len):
                packet[pn_at + i] ^= mask[1 + i]
        out += packet
        pos = end
    return bytes(out + data[pos:])


def reprotect() -> None:
    src_name, src_version, src_salt = SOURCE
    raw = (HERE / src_name).read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1" and int.from_bytes(raw[20:24], "little") == 1
    records, pos = [], 24
    while pos + 16 <= len(raw):
        caplen = struct.unpack("<I", raw[pos + 8 : pos + 12])[0]
        records.append((raw[pos : pos + 16], raw[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    # Ethernet + IPv4 without options + UDP on loopback: the QUIC datagram starts at byte 42.
    first_client = next(f for _, f in records if int.from_bytes(f[36:38], "big") == PORT)
    dcid = first_client[42 + 6 : 42 + 6 + first_client[42 + 5]]
    old = (_Keys(src_salt, dcid, b"client in"), _Keys(src_salt, dcid, b"server in"))
    for name, (version, salt) in REPROTECTED.items():
        new = (_Keys(salt, dcid, b"client in"), _Keys(salt, dcid, b"server in"))
        body = bytearray(raw[:24])
        for rec, frame in records:
            quic = frame[42:]
            if quic and quic[0] & 0x80 and int.from_bytes(quic[1:5], "big") == src_version:
                client = int.from_bytes(frame[36:38], "big") == PORT
                # Same length, so the IP and UDP length fields stay right; the UDP checksum
                # is zeroed (allowed for IPv4) and the IP header checksum is unchanged.
                quic = _reprotect_datagram(quic, version, old, new, client)
                frame = frame[:40] + b"\x00\x00" + quic
            body += rec + frame
        (HERE / name).write_bytes(bytes(body))
        print(f"wrote {name} (from {src_name}, version {version:#010x}, {salt} salt)")


if __name__ == "__main__":
    for step in sys.argv[1:] or ["reprotect"]:
        {"capture": capture, "reprotect": reprotect}[step]()

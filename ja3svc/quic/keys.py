"""QUIC Initial packet protection: keys from the Destination Connection ID, header protection, AEAD.

Initial packets are encrypted, but with keys anyone can derive from the client's first Destination
Connection ID and a salt fixed per QUIC version (RFC 9001 section 5.2, RFC 9369 section 3.3). That
is what lets a passive observer read the ClientHello. Initial packets always use AES-128-GCM and
AES-based header protection; ChaCha20 never appears here.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF

# Long-header packet types after mapping the two type bits through the version's table.
INITIAL, ZERO_RTT, HANDSHAKE, RETRY = "initial", "0rtt", "handshake", "retry"


@dataclass(frozen=True, slots=True)
class QuicVersion:
    number: int
    salt: bytes
    key_label: bytes
    iv_label: bytes
    hp_label: bytes
    # The two long-header type bits (byte 0, bits 4-5) -> packet type. QUIC v2 permutes them on
    # purpose (RFC 9369 section 3.2) so middleboxes cannot ossify on v1's values.
    packet_types: tuple[str, str, str, str]
    # Google's T050/T051 carry Google QUIC frames (CRYPTO is 0x08, ACK Google's layout) inside
    # IETF long headers; every other version here has IETF frames.
    google_frames: bool = False

    def type_bits(self, packet_type: str) -> int:
        return self.packet_types.index(packet_type)


_V1_TYPES = (INITIAL, ZERO_RTT, HANDSHAKE, RETRY)

# Initial salts (RFC 9001 section 5.2 and the drafts before it; Chromium's for Google's TLS-in-QUIC
# versions T050 and T051). Every version here but v2 uses the v1 labels and v1's long-header type
# bits.
SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # also draft-33 and -34
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # drafts 23-28
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")  # drafts 29-32
SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")  # Chromium's
SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")
T050, T051 = 0x54303530, 0x54303531  # "T050", "T051"

# Versions from before RFC 9000 still seen on the wire. IETF drafts are 0xff0000NN for draft NN.
# Facebook's mvfst numbers its own versions after the draft they follow, as Wireshark does:
# 0xfaceb001 is draft-22, 0xfaceb002 and 0xfaceb00e ("experimental") draft-27.
PRE_RFC_SALTS: dict[int, bytes] = {
    **{0xFF000000 + draft: SALT_DRAFT_23 for draft in range(23, 29)},
    **{0xFF000000 + draft: SALT_DRAFT_29 for draft in range(29, 33)},
    **{0xFF000000 + draft: SALT_V1 for draft in range(33, 35)},
    0xFACEB001: SALT_DRAFT_22,
    0xFACEB002: SALT_DRAFT_23,
    0xFACEB00E: SALT_DRAFT_23,
}

VERSIONS: dict[int, QuicVersion] = {
    QUIC_V1: QuicVersion(QUIC_V1, SALT_V1, b"quic key", b"quic iv", b"quic hp", _V1_TYPES),
    QUIC_V2: QuicVersion(
        QUIC_V2,
        SALT_V2,
        b"quicv2 key",
        b"quicv2 iv",
        b"quicv2 hp",
        (RETRY, INITIAL, ZERO_RTT, HANDSHAKE),
    ),
    **{
        number: QuicVersion(number, salt, b"quic key", b"quic iv", b"quic hp", _V1_TYPES)
        for number, salt in PRE_RFC_SALTS.items()
    },
    **{
        number: QuicVersion(number, salt, b"quic key", b"quic iv", b"quic hp", _V1_TYPES, True)
        for number, salt in ((T050, SALT_T050), (T051, SALT_T051))
    },
}


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, sha256)


def hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 section 7.1).

    Every output used here is at most 32 bytes, one SHA-256 block, so a single HMAC suffices.
    """
    if length > 32:
        raise ValueError("only single-block expansions are needed for QUIC Initial keys")
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full_label)]) + full_label + b"\x00"
    return hmac.digest(secret, info + b"\x01", sha256)[:length]


def initial_secrets(version: QuicVersion, dcid: bytes) -> tuple[bytes, bytes]:
    """(client_initial_secret, server_initial_secret) for a client's first DCID."""
    initial = hkdf_extract(version.salt, dcid)
    return (
        hkdf_expand_label(initial, b"client in", 32),
        hkdf_expand_label(initial, b"server in", 32),
    )


class PacketKeys:
    """AEAD key, IV and header-protection key of one direction, with the ciphers built once."""

    __slots__ = ("_aead", "_hp", "hp_key", "iv", "key")

    def __init__(self, version: QuicVersion, secret: bytes) -> None:
        self.key = hkdf_expand_label(secret, version.key_label, 16)
        self.iv = hkdf_expand_label(secret, version.iv_label, 12)
        self.hp_key = hkdf_expand_label(secret, version.hp_label, 16)
        self._aead = AESGCM(self.key)
        # ECB on a single 16-byte block is exactly what RFC 9001 section 5.4.3 specifies; the
        # encryptor keeps no state between blocks, so one object serves every packet.
        self._hp = Cipher(algorithms.AES(self.hp_key), modes.ECB()).encryptor()

    def header_mask(self, sample: bytes) -> bytes:
        """The 5 mask bytes for a 16-byte ciphertext sample."""
        return self._hp.update(sample)[:5]

    def open(self, packet_number: int, header: bytes, ciphertext: bytes) -> bytes | None:
        """Decrypt and authenticate a payload; None when the tag does not verify."""
        nonce = (int.from_bytes(self.iv, "big") ^ packet_number).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            return None

    def seal(self, packet_number: int, header: bytes, plaintext: bytes) -> bytes:
        """Encrypt a payload (used by tests to build packets, never on the capture path)."""
        nonce = (int.from_bytes(self.iv, "big") ^ packet_number).to_bytes(12, "big")
        return self._aead.encrypt(nonce, plaintext, header)


def initial_keys(version: QuicVersion, dcid: bytes) -> tuple[PacketKeys, PacketKeys]:
    """(client keys, server keys) for the Initial packets of a connection."""
    client_secret, server_secret = initial_secrets(version, dcid)
    return PacketKeys(version, client_secret), PacketKeys(version, server_secret)

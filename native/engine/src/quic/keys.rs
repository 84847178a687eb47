//! QUIC Initial packet protection: keys from the Destination Connection ID, header protection,
//! AEAD.
//!
//! Initial packets are encrypted, but with keys anyone can derive from the client's first
//! Destination Connection ID and a salt fixed per QUIC version (RFC 9001 section 5.2, RFC 9369
//! section 3.3). That is what lets a passive observer read the ClientHello. Initial packets always
//! use AES-128-GCM and AES-based header protection; ChaCha20 never appears here.

use aes::cipher::array::Array;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::{AeadInOut, Nonce};
use aes_gcm::{Aes128Gcm, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

pub const QUIC_V1: u32 = 0x0000_0001;
pub const QUIC_V2: u32 = 0x6b33_43cf;

/// Long-header packet types, after mapping the two type bits through the version's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// The constants that differ between QUIC versions.
#[derive(Debug, PartialEq, Eq)]
pub struct QuicVersion {
    pub number: u32,
    pub salt: [u8; 20],
    pub key_label: &'static [u8],
    pub iv_label: &'static [u8],
    pub hp_label: &'static [u8],
    /// The two long-header type bits (byte 0, bits 4-5) -> packet type. QUIC v2 permutes them
    /// on purpose (RFC 9369 section 3.2) so middleboxes cannot ossify on v1's values.
    pub packet_types: [PacketType; 4],
    /// Google's T050/T051 carry Google QUIC frames (CRYPTO is 0x08, ACK Google's layout) inside
    /// IETF long headers; every other version here has IETF frames.
    pub google_frames: bool,
}

impl QuicVersion {
    /// The type bits that mean `packet_type` in this version.
    pub fn type_bits(&self, packet_type: PacketType) -> u8 {
        // The table has every type exactly once, so the search always finds it.
        self.packet_types
            .iter()
            .position(|&t| t == packet_type)
            .unwrap_or(0) as u8
    }
}

const V1_TYPES: [PacketType; 4] = [
    PacketType::Initial,
    PacketType::ZeroRtt,
    PacketType::Handshake,
    PacketType::Retry,
];

// Initial salts (RFC 9001 section 5.2 and the drafts before it).
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
]; // also draft-33, -34
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
const SALT_DRAFT_22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd,
    0x7a, 0x02, 0x64, 0x4a,
];
const SALT_DRAFT_23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
]; // drafts 23-28
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
]; // drafts 29-32

// Chromium's salts for Google's TLS-in-QUIC versions.
const SALT_T050: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c,
    0x60, 0x48, 0x83, 0x10,
];
const SALT_T051: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc,
    0xda, 0x6e, 0x03, 0x3d,
];

/// A version before RFC 9000 (or a vendor's): v1's labels and type bits, its own salt.
const fn pre_rfc(number: u32, salt: [u8; 20]) -> QuicVersion {
    QuicVersion {
        number,
        salt,
        key_label: b"quic key",
        iv_label: b"quic iv",
        hp_label: b"quic hp",
        packet_types: V1_TYPES,
        google_frames: false,
    }
}

pub static V1: QuicVersion = QuicVersion {
    number: QUIC_V1,
    salt: SALT_V1,
    key_label: b"quic key",
    iv_label: b"quic iv",
    hp_label: b"quic hp",
    packet_types: V1_TYPES,
    google_frames: false,
};

pub static V2: QuicVersion = QuicVersion {
    number: QUIC_V2,
    salt: SALT_V2,
    key_label: b"quicv2 key",
    iv_label: b"quicv2 iv",
    hp_label: b"quicv2 hp",
    packet_types: [
        PacketType::Retry,
        PacketType::Initial,
        PacketType::ZeroRtt,
        PacketType::Handshake,
    ],
    google_frames: false,
};

/// IETF drafts 23 to 34, wire numbers 0xff0000NN for draft NN, indexed by NN - 23.
const FIRST_DRAFT: u32 = 0xff00_0017;
const LAST_DRAFT: u32 = 0xff00_0022;
static DRAFTS: [QuicVersion; 12] = [
    pre_rfc(0xff00_0017, SALT_DRAFT_23),
    pre_rfc(0xff00_0018, SALT_DRAFT_23),
    pre_rfc(0xff00_0019, SALT_DRAFT_23),
    pre_rfc(0xff00_001a, SALT_DRAFT_23),
    pre_rfc(0xff00_001b, SALT_DRAFT_23),
    pre_rfc(0xff00_001c, SALT_DRAFT_23),
    pre_rfc(0xff00_001d, SALT_DRAFT_29),
    pre_rfc(0xff00_001e, SALT_DRAFT_29),
    pre_rfc(0xff00_001f, SALT_DRAFT_29),
    pre_rfc(0xff00_0020, SALT_DRAFT_29),
    pre_rfc(0xff00_0021, SALT_V1),
    pre_rfc(0xff00_0022, SALT_V1),
];

// Facebook's mvfst numbers its versions after the draft they follow, as Wireshark does:
// 0xfaceb001 is draft-22, 0xfaceb002 and 0xfaceb00e ("experimental") draft-27.
static MVFST_D22: QuicVersion = pre_rfc(0xface_b001, SALT_DRAFT_22);
static MVFST_D27: QuicVersion = pre_rfc(0xface_b002, SALT_DRAFT_23);
static MVFST_EXPERIMENTAL: QuicVersion = pre_rfc(0xface_b00e, SALT_DRAFT_23);
// Google's "T050" and "T051": IETF long headers and v1's labels, Google QUIC frames inside.
pub const T050: u32 = 0x5430_3530;
pub const T051: u32 = 0x5430_3531;
static GOOGLE_T050: QuicVersion = QuicVersion {
    google_frames: true,
    ..pre_rfc(T050, SALT_T050)
};
static GOOGLE_T051: QuicVersion = QuicVersion {
    google_frames: true,
    ..pre_rfc(T051, SALT_T051)
};

/// The version whose Initials can be decrypted here, by its wire number.
pub fn version(number: u32) -> Option<&'static QuicVersion> {
    match number {
        QUIC_V1 => Some(&V1),
        QUIC_V2 => Some(&V2),
        FIRST_DRAFT..=LAST_DRAFT => Some(&DRAFTS[(number - FIRST_DRAFT) as usize]),
        0xface_b001 => Some(&MVFST_D22),
        0xface_b002 => Some(&MVFST_D27),
        0xface_b00e => Some(&MVFST_EXPERIMENTAL),
        T050 => Some(&GOOGLE_T050),
        T051 => Some(&GOOGLE_T051),
        _ => None,
    }
}

/// TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 section 7.1), for outputs of at
/// most 32 bytes (every QUIC Initial secret, key, IV and header-protection key).
fn expand_label<const N: usize>(secret: &[u8; 32], label: &[u8]) -> [u8; N] {
    // HkdfLabel: length(2) || label vector ("tls13 " + label, 1-byte length) || context (empty).
    let mut info = [0u8; 2 + 1 + 6 + 16 + 1];
    let full = 6 + label.len();
    info[..2].copy_from_slice(&(N as u16).to_be_bytes());
    info[2] = full as u8;
    info[3..9].copy_from_slice(b"tls13 ");
    info[9..9 + label.len()].copy_from_slice(label);
    let info = &info[..3 + full + 1]; // the trailing zero is the empty context's length
    let mut out = [0u8; N];
    // A 32-byte PRK is SHA-256's output size and N <= 32 is one block: neither call can fail.
    let hk = Hkdf::<Sha256>::from_prk(secret).expect("32-byte PRK");
    hk.expand(info, &mut out).expect("single-block expansion");
    out
}

/// Which side's Initial secret: the label of RFC 9001 section 5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One side's Initial secret for a client's first DCID. The capture path derives only the side
/// it needs (client keys for every client DCID tried, server keys on the first server packet).
pub fn initial_secret(version: &QuicVersion, dcid: &[u8], side: Side) -> [u8; 32] {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&version.salt), dcid);
    let initial: [u8; 32] = prk.into();
    let label: &[u8] = match side {
        Side::Client => b"client in",
        Side::Server => b"server in",
    };
    expand_label(&initial, label)
}

/// (client_initial_secret, server_initial_secret) for a client's first DCID.
pub fn initial_secrets(version: &QuicVersion, dcid: &[u8]) -> ([u8; 32], [u8; 32]) {
    (
        initial_secret(version, dcid, Side::Client),
        initial_secret(version, dcid, Side::Server),
    )
}

/// Why decryption of a payload failed: the tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadFailed;

/// AEAD key, IV and header-protection key of one direction, with the ciphers built once.
#[derive(Clone)]
pub struct PacketKeys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp_key: [u8; 16],
    aead: Aes128Gcm,
    hp: Aes128,
}

impl PacketKeys {
    pub fn new(version: &QuicVersion, secret: &[u8; 32]) -> Self {
        let key: [u8; 16] = expand_label(secret, version.key_label);
        let iv: [u8; 12] = expand_label(secret, version.iv_label);
        let hp_key: [u8; 16] = expand_label(secret, version.hp_label);
        PacketKeys {
            key,
            iv,
            hp_key,
            aead: Aes128Gcm::new(&Array::from(key)),
            hp: Aes128::new(&Array::from(hp_key)),
        }
    }

    /// The 5 mask bytes for a 16-byte ciphertext sample: AES-ECB on one block, exactly what
    /// RFC 9001 section 5.4.3 specifies.
    pub fn header_mask(&self, sample: &[u8; 16]) -> [u8; 5] {
        let mut block = Array::from(*sample);
        self.hp.encrypt_block(&mut block);
        [block[0], block[1], block[2], block[3], block[4]]
    }

    fn nonce(&self, packet_number: u64) -> Nonce<Aes128Gcm> {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
            *n ^= p;
        }
        Array::from(nonce)
    }

    /// Decrypt and authenticate a payload (ciphertext followed by its 16-byte tag).
    pub fn open(
        &self,
        packet_number: u64,
        header: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, AeadFailed> {
        let Some(body_len) = sealed.len().checked_sub(16) else {
            return Err(AeadFailed);
        };
        let (ciphertext, tag) = sealed.split_at(body_len);
        let tag = Tag::try_from(tag).map_err(|_| AeadFailed)?;
        let mut plain = ciphertext.to_vec();
        self.aead
            .decrypt_inout_detached(
                &self.nonce(packet_number),
                header,
                plain.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| AeadFailed)?;
        Ok(plain)
    }

    /// Encrypt a payload (used by tests and fuzz targets to build packets, never on the capture
    /// path): ciphertext followed by the tag.
    pub fn seal(&self, packet_number: u64, header: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = plaintext.to_vec();
        // AES-GCM only refuses inputs over 64 GiB, far beyond any packet.
        let tag = self
            .aead
            .encrypt_inout_detached(
                &self.nonce(packet_number),
                header,
                out.as_mut_slice().into(),
            )
            .expect("packet-sized input");
        out.extend_from_slice(&tag);
        out
    }
}

/// One side's keys for the Initial packets of a connection.
pub fn side_keys(version: &QuicVersion, dcid: &[u8], side: Side) -> PacketKeys {
    PacketKeys::new(version, &initial_secret(version, dcid, side))
}

/// (client keys, server keys) for the Initial packets of a connection.
pub fn initial_keys(version: &QuicVersion, dcid: &[u8]) -> (PacketKeys, PacketKeys) {
    let (client, server) = initial_secrets(version, dcid);
    (
        PacketKeys::new(version, &client),
        PacketKeys::new(version, &server),
    )
}

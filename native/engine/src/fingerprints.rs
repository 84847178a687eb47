//! JA3, JA3N, JA3S, JA4, ja4_r and Dovecot's JA3 (ports of `ja3svc/grease.py`, `ja3.py`,
//! `ja4.py`, `dovecot.py` and `fingerprints.py`). MD5 and SHA-256 come from RustCrypto.

use ahash::RandomState;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::sync::Arc;
use sha2::Sha256;
use std::fmt::Write;

use crate::hello::{ClientHello, ServerHello, EXT_ALPN, EXT_SERVER_NAME};

/// RFC 8701 GREASE: 0x0a0a, 0x1a1a, ... 0xfafa. Spelled as "both bytes equal and of the form
/// 0x?a", not `v & 0x0f0f == 0x0a0a`, which would also drop real code points such as 0x1a2a.
pub fn is_grease(v: u16) -> bool {
    (v >> 8) == (v & 0xff) && (v & 0x0f) == 0x0a
}

pub fn without_grease(values: &[u16]) -> Vec<u16> {
    values.iter().copied().filter(|&v| !is_grease(v)).collect()
}

/// Which OpenSSL's known-extension set Dovecot's JA3 is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DovecotProfile {
    OpenSsl30,
    OpenSsl32,
}

impl DovecotProfile {
    /// Every profile, in the order the output lists them.
    pub const ALL: [DovecotProfile; 2] = [Self::OpenSsl30, Self::OpenSsl32];

    /// A profile by name or alias (openssl-3.5 is openssl-3.2).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "openssl-3.0" => Some(Self::OpenSsl30),
            "openssl-3.2" | "openssl-3.5" => Some(Self::OpenSsl32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OpenSsl30 => "openssl-3.0",
            Self::OpenSsl32 => "openssl-3.2",
        }
    }

    fn knows(self, ext: u16) -> bool {
        const OPENSSL_30: [u16; 25] = [
            0, 1, 5, 10, 11, 12, 13, 16, 18, 21, 22, 23, 35, 41, 42, 43, 44, 45, 47, 49, 50, 51,
            13172, 65000, 65281,
        ];
        // OpenSSL 3.2 learned certificate compression (27) and raw public keys (19, 20); 14
        // (use_srtp) is known there too (measured on Debian 13's Dovecot 2.4.1 / OpenSSL 3.5).
        OPENSSL_30.contains(&ext) || (self == Self::OpenSsl32 && matches!(ext, 14 | 19 | 20 | 27))
    }
}

pub const DOVECOT_VERSION_FIELD: u16 = 771;

fn join_dash<T: std::fmt::Display>(out: &mut String, values: impl IntoIterator<Item = T>) {
    let mut first = true;
    for v in values {
        if !first {
            out.push('-');
        }
        first = false;
        let _ = write!(out, "{v}");
    }
}

pub fn ja3_string(h: &ClientHello) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{},", h.legacy_version);
    join_dash(&mut s, h.ciphers.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, h.extensions.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, h.supported_groups.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, h.ec_point_formats.iter());
    s
}

/// JA3 with the extension field sorted, so that Chrome's per-connection permutation cancels.
pub fn ja3n_string(h: &ClientHello) -> String {
    let mut exts = without_grease(&h.extensions);
    exts.sort_unstable();
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{},", h.legacy_version);
    join_dash(&mut s, h.ciphers.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, exts.iter());
    s.push(',');
    join_dash(&mut s, h.supported_groups.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, h.ec_point_formats.iter());
    s
}

pub fn ja3s_string(h: &ServerHello) -> String {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "{},{},", h.legacy_version, h.cipher);
    join_dash(&mut s, h.extensions.iter().filter(|&&v| !is_grease(v)));
    s
}

pub fn ja3_dovecot_string(h: &ClientHello, profile: DovecotProfile) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{DOVECOT_VERSION_FIELD},");
    join_dash(&mut s, h.ciphers.iter());
    s.push(',');
    join_dash(&mut s, h.extensions.iter().filter(|&&e| profile.knows(e)));
    s.push(',');
    join_dash(&mut s, h.supported_groups.iter().filter(|&&v| !is_grease(v)));
    s.push(',');
    join_dash(&mut s, h.ec_point_formats.iter());
    s
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub fn md5_hex(text: &str) -> String {
    hex(&Md5::digest(text.as_bytes()))
}

pub fn tls_version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0xFEFF => "DTLS 1.0".into(),
        0xFEFD => "DTLS 1.2".into(),
        0xFEFC => "DTLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

/// The transport a hello was seen on; JA4's first letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Quic,
    Dtls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Dtls => "dtls",
        }
    }

    fn ja4_prefix(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        }
    }
}

fn ja4_version_code(h: &ClientHello) -> &'static str {
    let versions = without_grease(&h.supported_versions);
    let version = if versions.is_empty() {
        h.legacy_version
    } else {
        // DTLS version numbers count downwards (0xfefc is DTLS 1.3): "highest" is per family.
        let all_dtls = versions.iter().all(|&v| v >= 0xFE00);
        if all_dtls {
            *versions.iter().min().unwrap_or(&0)
        } else {
            *versions.iter().max().unwrap_or(&0)
        }
    };
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xFEFF => "d1",
        0xFEFD => "d2",
        0xFEFC => "d3",
        _ => "00",
    }
}

fn ja4_alpn_code(h: &ClientHello) -> String {
    let first = match h.alpn.first() {
        Some(f) if !f.is_empty() => f,
        _ => return "00".into(),
    };
    let (a, z) = (first[0], first[first.len() - 1]);
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        return format!("{}{}", a as char, z as char);
    }
    let hexed = hex(first);
    let b = hexed.as_bytes();
    format!("{}{}", b[0] as char, b[b.len() - 1] as char)
}

fn hash12(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".into();
    }
    let mut h = hex(&Sha256::digest(text.as_bytes()));
    h.truncate(12);
    h
}

fn join_hex4(values: impl IntoIterator<Item = u16>) -> String {
    let mut s = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

struct Ja4Parts {
    a: String,
    b: String,
    c: String,
    sigs: String,
}

fn ja4_parts(h: &ClientHello, transport: Transport) -> Ja4Parts {
    let mut ciphers = without_grease(&h.ciphers);
    let mut exts = without_grease(&h.extensions);
    let a = format!(
        "{}{}{}{:02}{:02}{}",
        transport.ja4_prefix(),
        ja4_version_code(h),
        if exts.contains(&EXT_SERVER_NAME) { 'd' } else { 'i' },
        ciphers.len().min(99),
        exts.len().min(99),
        ja4_alpn_code(h),
    );
    ciphers.sort_unstable();
    exts.sort_unstable();
    let b = join_hex4(ciphers);
    let c = join_hex4(exts.into_iter().filter(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN));
    let sigs = join_hex4(h.signature_algorithms.iter().copied().filter(|&v| !is_grease(v)));
    Ja4Parts { a, b, c, sigs }
}

/// JA4 and its raw form ja4_r, which share all their parts.
pub fn ja4_and_raw(h: &ClientHello, transport: Transport) -> (String, String) {
    let p = ja4_parts(h, transport);
    let c_hash = if p.c.is_empty() {
        "000000000000".into()
    } else if p.sigs.is_empty() {
        hash12(&p.c)
    } else {
        hash12(&format!("{}_{}", p.c, p.sigs))
    };
    let ja4 = format!("{}_{}_{}", p.a, hash12(&p.b), c_hash);
    let raw = if p.sigs.is_empty() {
        format!("{}_{}_{}", p.a, p.b, p.c)
    } else {
        format!("{}_{}_{}_{}", p.a, p.b, p.c, p.sigs)
    };
    (ja4, raw)
}

/// Every fingerprint of a ClientHello, in the order of the reference's output record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFingerprints {
    pub tls_version: String,
    pub ja3: String,
    pub ja3_hash: String,
    pub ja3n: String,
    pub ja3n_hash: String,
    pub ja4: String,
    pub ja4_r: String,
    pub ja3_dovecot: String,
    pub ja3_dovecot_hash: String,
    /// Dovecot's hash under every profile, in `DovecotProfile::ALL` order.
    pub ja3_dovecot_hashes: [String; 2],
}

pub fn client_fingerprints(
    h: &ClientHello,
    transport: Transport,
    profile: DovecotProfile,
) -> ClientFingerprints {
    let offered = without_grease(&h.supported_versions);
    let tls_version = tls_version_name(offered.iter().copied().max().unwrap_or(h.legacy_version));
    let ja3 = ja3_string(h);
    let ja3n = ja3n_string(h);
    let (ja4, ja4_r) = ja4_and_raw(h, transport);
    let ja3_dovecot_hashes = DovecotProfile::ALL.map(|p| md5_hex(&ja3_dovecot_string(h, p)));
    let ja3_dovecot = ja3_dovecot_string(h, profile);
    ClientFingerprints {
        ja3_dovecot_hashes,
        tls_version,
        ja3_hash: md5_hex(&ja3),
        ja3,
        ja3n_hash: md5_hex(&ja3n),
        ja3n,
        ja4,
        ja4_r,
        ja3_dovecot_hash: md5_hex(&ja3_dovecot),
        ja3_dovecot,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFingerprints {
    pub tls_version: String,
    pub ja3s: String,
    pub ja3s_hash: String,
}

pub fn server_fingerprints(h: &ServerHello) -> ServerFingerprints {
    let ja3s = ja3s_string(h);
    // Python's `selected_version or legacy_version`: a selected version of 0 falls back too.
    let version = match h.selected_version {
        Some(v) if v != 0 => v,
        _ => h.legacy_version,
    };
    ServerFingerprints { tls_version: tls_version_name(version), ja3s_hash: md5_hex(&ja3s), ja3s }
}

/// Fingerprints of recently seen hellos, keyed by everything they depend on (the port of the
/// reference's memo): real traffic repeats a few client stacks, and a repeat then costs one
/// lookup instead of four MD5s, two SHA-256s and the strings. Emptied when full, which is
/// cheap and keeps memory flat.
#[derive(Default)]
pub struct Memo {
    client: HashMap<Vec<u8>, Arc<ClientFingerprints>, RandomState>,
    server: HashMap<Vec<u8>, Arc<ServerFingerprints>, RandomState>,
    key: Vec<u8>,
}

pub const MEMO_LIMIT: usize = 16384;

fn push_list(key: &mut Vec<u8>, values: &[u16]) {
    key.extend((values.len() as u32).to_le_bytes());
    for v in values {
        key.extend(v.to_le_bytes());
    }
}

impl Memo {
    pub fn client(
        &mut self,
        h: &ClientHello,
        transport: Transport,
        profile: DovecotProfile,
    ) -> Arc<ClientFingerprints> {
        let key = &mut self.key;
        key.clear();
        key.push(transport as u8);
        key.push(profile as u8);
        key.extend(h.legacy_version.to_le_bytes());
        for list in [
            &h.ciphers,
            &h.extensions,
            &h.supported_groups,
            &h.signature_algorithms,
            &h.supported_versions,
        ] {
            push_list(key, list);
        }
        key.extend((h.ec_point_formats.len() as u32).to_le_bytes());
        key.extend(&h.ec_point_formats);
        if let Some(first) = h.alpn.first() {
            key.extend((first.len() as u32).to_le_bytes());
            key.extend(first);
        } else {
            key.extend(u32::MAX.to_le_bytes());
        }
        if let Some(found) = self.client.get(key.as_slice()) {
            return found.clone();
        }
        if self.client.len() >= MEMO_LIMIT {
            self.client.clear();
        }
        let f = Arc::new(client_fingerprints(h, transport, profile));
        self.client.insert(key.clone(), f.clone());
        f
    }

    pub fn server(&mut self, h: &ServerHello) -> Arc<ServerFingerprints> {
        let key = &mut self.key;
        key.clear();
        key.extend(h.legacy_version.to_le_bytes());
        key.extend(h.cipher.to_le_bytes());
        key.extend(h.selected_version.map_or(u32::MAX, u32::from).to_le_bytes());
        push_list(key, &h.extensions);
        if let Some(found) = self.server.get(key.as_slice()) {
            return found.clone();
        }
        if self.server.len() >= MEMO_LIMIT {
            self.server.clear();
        }
        let f = Arc::new(server_fingerprints(h));
        self.server.insert(key.clone(), f.clone());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_table() {
        let all: Vec<u16> = (0..=0xffffu16).filter(|&v| is_grease(v)).collect();
        assert_eq!(all.len(), 16);
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x1a2a));
    }

    #[test]
    fn md5_of_empty_and_known() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn ja4_of_minimal_hello() {
        let h = ClientHello {
            legacy_version: 0x0303,
            ciphers: vec![0x1301],
            extensions: vec![],
            supported_groups: vec![],
            ec_point_formats: vec![],
            signature_algorithms: vec![],
            supported_versions: vec![],
            sni: None,
            alpn: vec![],
            duplicate_extensions: vec![],
        };
        let (ja4, raw) = ja4_and_raw(&h, Transport::Tcp);
        assert_eq!(raw, "t12i010000_1301_");
        assert!(ja4.starts_with("t12i010000_") && ja4.ends_with("_000000000000"));
    }
}

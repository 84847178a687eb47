//! The row a hello becomes for the fingerprint database: the port of the reference's
//! `ja3svc.store.sighting_writer.sighting_row`, column for column (`STORE_COLUMNS`).
//!
//! Built here so that `ja3svc pcap --store` hands the writer finished rows a chunk at a time,
//! instead of a dict per hello that Python then takes apart. The values from the wire are
//! clipped to their columns' sizes with NUL written as `\x00` (PostgreSQL refuses NUL in
//! text), exactly as the reference does; `tests/test_store_differential.py` stores the golden
//! captures through both engines and requires identical database contents.

use crate::engine::Sighting;
use crate::fingerprints::{DovecotProfile, Memo};
use crate::hello::{ascii_backslashreplace, Hello};
use crate::json::{write_addr, write_ascii_str};

/// The columns of a row, in order: the sightings table's (its uniqueness key first), then what
/// the database needs for the aggregates (each fingerprint's full string, and the Dovecot
/// hashes of the `dovecot_hashes` key, set only when that key is complete).
pub const STORE_COLUMNS: [&str; 25] = [
    "sensor",
    "ts",
    "src",
    "sport",
    "dst",
    "dport",
    "hello",
    "hello_index",
    "transport",
    "sni",
    "alpn",
    "tls_version",
    "ja3_hash",
    "ja3n_hash",
    "ja4",
    "ja3_dovecot_hash",
    "ja3s_hash",
    "ja3_dovecot_hashes",
    "ja3",
    "ja3n",
    "ja4_r",
    "ja3_dovecot",
    "ja3s",
    "dovecot_openssl30",
    "dovecot_openssl32",
];

/// One row, `STORE_COLUMNS` in field order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreRow {
    pub sensor: String,
    pub ts: f64,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    pub hello: &'static str,
    pub hello_index: u64,
    pub transport: String,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub tls_version: Option<String>,
    pub ja3_hash: Option<String>,
    pub ja3n_hash: Option<String>,
    pub ja4: Option<String>,
    pub ja3_dovecot_hash: Option<String>,
    pub ja3s_hash: Option<String>,
    pub ja3_dovecot_hashes: Option<String>,
    pub ja3: Option<String>,
    pub ja3n: Option<String>,
    pub ja4_r: Option<String>,
    pub ja3_dovecot: Option<String>,
    pub ja3s: Option<String>,
    pub dovecot_openssl30: Option<String>,
    pub dovecot_openssl32: Option<String>,
}

/// The reference's `_clip`: NUL written as `\x00`, then at most `limit` characters.
pub fn clip(s: &str, limit: usize) -> String {
    if !s.contains('\0') && (s.len() <= limit || s.chars().count() <= limit) {
        return s.to_owned();
    }
    s.replace('\0', "\\x00").chars().take(limit).collect()
}

/// `json.dumps(alpn)`: `["h2", "http/1.1"]`, Python's default separators.
fn alpn_json<'a>(names: impl Iterator<Item = &'a [u8]>) -> String {
    let mut out = String::from("[");
    for (i, a) in names.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_ascii_str(&ascii_backslashreplace(a), &mut out);
    }
    out.push(']');
    out
}

fn addr(a: &crate::engine::Addr) -> String {
    let mut s = String::with_capacity(15);
    write_addr(a, &mut s);
    clip(&s, 45)
}

/// The row of one hello; `sensor` is clipped already (`clip(sensor, 200)`), as it is the
/// same for every row of a run.
pub fn store_row(s: &Sighting, sensor: &str, profile: DovecotProfile, memo: &mut Memo) -> StoreRow {
    let mut row = StoreRow {
        sensor: sensor.to_owned(),
        ts: s.ts,
        src: addr(&s.src),
        sport: s.sport,
        dst: addr(&s.dst),
        dport: s.dport,
        hello: "client",
        // The reference's `index or 1`.
        hello_index: if s.index == 0 { 1 } else { s.index },
        transport: clip(s.transport.as_str(), 8),
        sni: None,
        alpn: None,
        tls_version: None,
        ja3_hash: None,
        ja3n_hash: None,
        ja4: None,
        ja3_dovecot_hash: None,
        ja3s_hash: None,
        ja3_dovecot_hashes: None,
        ja3: None,
        ja3n: None,
        ja4_r: None,
        ja3_dovecot: None,
        ja3s: None,
        dovecot_openssl30: None,
        dovecot_openssl32: None,
    };
    match &s.hello {
        Hello::Client(h) => {
            row.sni = h.sni.as_deref().map(|n| clip(n, 255));
            row.alpn = Some(alpn_json(h.alpn.iter().map(Vec::as_slice)));
            let f = memo.client(h, s.transport, profile);
            row.tls_version = Some(clip(&f.tls_version, 16));
            row.ja3_hash = Some(clip(&f.ja3_hash, 32));
            row.ja3n_hash = Some(clip(&f.ja3n_hash, 32));
            row.ja4 = Some(clip(&f.ja4, 64));
            row.ja3_dovecot_hash = Some(clip(&f.ja3_dovecot_hash, 32));
            // Python's json.dumps of {profile: hash}, sorted by profile, compact separators.
            let mut by_profile: Vec<(&str, String)> = DovecotProfile::ALL
                .iter()
                .zip(&f.ja3_dovecot_hashes)
                .map(|(p, h)| (p.name(), clip(h, 32)))
                .collect();
            by_profile.sort();
            let mut hashes = String::from("{");
            for (i, (p, h)) in by_profile.iter().enumerate() {
                if i > 0 {
                    hashes.push(',');
                }
                write_ascii_str(p, &mut hashes);
                hashes.push(':');
                write_ascii_str(h, &mut hashes);
            }
            hashes.push('}');
            row.ja3_dovecot_hashes = Some(hashes);
            row.ja3 = Some(f.ja3.clone());
            row.ja3n = Some(f.ja3n.clone());
            row.ja4_r = Some(f.ja4_r.clone());
            row.ja3_dovecot = Some(f.ja3_dovecot.clone());
            // The Dovecot-hash key needs both profiles' hashes (`DovecotProfile::ALL` order:
            // 3.0, 3.2), JA3, JA3N and JA4.
            let [h30, h32] = &f.ja3_dovecot_hashes;
            if ![h30, h32, &f.ja3_hash, &f.ja4, &f.ja3n_hash]
                .iter()
                .any(|v| v.is_empty())
            {
                row.dovecot_openssl30 = Some(clip(h30, 32));
                row.dovecot_openssl32 = Some(clip(h32, 32));
            }
        }
        Hello::Server(h) => {
            row.hello = "server";
            let names = h.alpn.as_deref().filter(|a| !a.is_empty());
            row.alpn = Some(alpn_json(names.into_iter()));
            let f = memo.server(h);
            row.tls_version = Some(clip(&f.tls_version, 16));
            row.ja3s_hash = Some(clip(&f.ja3s_hash, 32));
            row.ja3s = Some(f.ja3s.clone());
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_like_the_reference() {
        // Expected values from Python: s.replace("\x00", "\\x00")[:limit].
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc");
        assert_eq!(clip("a\0b", 10), "a\\x00b");
        assert_eq!(clip("a\0b", 3), "a\\x");
        assert_eq!(clip("ééé", 2), "éé"); // characters, not bytes
        assert_eq!(clip("ééé", 3), "ééé");
    }

    #[test]
    fn json_strings_like_python_json_dumps() {
        let dumps = |s: &str| {
            let mut out = String::new();
            write_ascii_str(s, &mut out);
            out
        };
        // Expected values printed by Python's json.dumps.
        assert_eq!(dumps("h2"), r#""h2""#);
        assert_eq!(dumps("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(dumps("\u{1}\u{7f}\n"), r#""\u0001\u007f\n""#);
        assert_eq!(dumps("é😀"), r#""\u00e9\ud83d\ude00""#);
        assert_eq!(
            alpn_json([b"h2".as_slice(), b"http/1.1"].into_iter()),
            r#"["h2", "http/1.1"]"#
        );
        assert_eq!(alpn_json(std::iter::empty()), "[]");
        assert_eq!(
            alpn_json([b"\xffx".as_slice()].into_iter()),
            r#"["\\xffx"]"#
        );
    }

    #[test]
    fn columns_match_the_row() {
        assert_eq!(STORE_COLUMNS.len(), 25);
        assert_eq!(
            &STORE_COLUMNS[..8],
            &[
                "sensor",
                "ts",
                "src",
                "sport",
                "dst",
                "dport",
                "hello",
                "hello_index"
            ]
        );
    }
}

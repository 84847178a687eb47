//! The JSON line of a hello, byte for byte what the reference prints: `HelloSighting.as_dict`
//! through `json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)`. That means Python's
//! float repr for `ts`, glibc's `inet_ntop` for addresses, Python's string escapes, and the
//! record's key order.
//!
//! Hand-written rather than serde_json: serde_json writes floats as ryu does ("1e16", "1e-5"
//! where Python writes "1e+16", "1e-05"), and the record is flat and small.

use std::fmt::Write;

use crate::engine::{Addr, Sighting};
use crate::fingerprints::{DovecotProfile, Memo};
use crate::hello::{ascii_backslashreplace, Hello};

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for decimal exponents
/// -4..16, otherwise `d.ddde+XX`.
pub fn py_float_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits too: "1.2345e9", "0e0", "-5e-7". But
    // where two strings of that length round-trip (x exactly halfway between them, as a
    // timestamp in 2^-20 s units can be), it may take either, while Python takes the one
    // nearest x, ties to even. Rust's fixed-precision `{:.Ne}` rounds exactly, ties to even: at
    // the shortest length that is Python's choice.
    let shortest = format!("{x:e}");
    let len = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let sci = if len > 1 {
        format!("{x:.prec$e}", prec = len - 1)
    } else {
        shortest
    };
    let (mant, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// glibc's `inet_ntop`: dotted quad, or RFC 5952-style IPv6 with "::" for the first longest
/// run of two or more zero groups and the IPv4 tail of ::a.b.c.d and ::ffff:a.b.c.d.
pub fn write_addr(a: &Addr, out: &mut String) {
    let b = a.as_bytes();
    if b.len() == 4 {
        let _ = write!(out, "{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
        return;
    }
    let w: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let (mut best_base, mut best_len) = (usize::MAX, 0usize);
    let (mut cur_base, mut cur_len) = (usize::MAX, 0usize);
    for (i, &word) in w.iter().enumerate() {
        if word == 0 {
            if cur_base == usize::MAX {
                cur_base = i;
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base != usize::MAX {
            if best_base == usize::MAX || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = usize::MAX;
        }
    }
    if cur_base != usize::MAX && (best_base == usize::MAX || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base != usize::MAX && best_len < 2 {
        best_base = usize::MAX;
    }
    for i in 0..8 {
        if best_base != usize::MAX && i >= best_base && i < best_base + best_len {
            if i == best_base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let _ = write!(out, "{}.{}.{}.{}", b[12], b[13], b[14], b[15]);
            return;
        }
        let _ = write!(out, "{:x}", w[i]);
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        out.push(':');
    }
}

/// A JSON string as Python's encoder writes it with ensure_ascii=False (`ja3svc pcap`'s JSON).
pub fn write_str(s: &str, out: &mut String) {
    write_escaped(s, false, out);
}

/// A JSON string as Python's `json.dumps` writes it by default (ensure_ascii: anything outside
/// printable ASCII as `\uXXXX`, with surrogate pairs above the BMP; the stored ALPN and hash
/// columns).
pub fn write_ascii_str(s: &str, out: &mut String) {
    write_escaped(s, true, out);
}

/// Python's two string encoders differ only in what lies outside printable ASCII: with
/// `ascii` it is escaped as UTF-16 units (DEL included), without it only controls are.
fn write_escaped(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\' && (!ascii || b <= b'~');
    if s.bytes().all(plain) {
        out.push_str(s); // nearly every string: hex digits, numbers, names
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && c > '~') => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn key(name: &str, out: &mut String) {
    out.push(',');
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn kv_str(name: &str, value: &str, out: &mut String) {
    key(name, out);
    write_str(value, out);
}

fn kv_int(name: &str, value: u64, out: &mut String) {
    key(name, out);
    let _ = write!(out, "{value}");
}

fn kv_addr(name: &str, value: &Addr, out: &mut String) {
    key(name, out);
    out.push('"');
    write_addr(value, out);
    out.push('"');
}

/// Append the record's JSON line (with its newline): `{"file": file, "frame": n, ...}` then
/// the keys of `HelloSighting.as_dict`, as `ja3svc pcap` prints them.
pub fn write_record(
    s: &Sighting,
    file: &str,
    profile: DovecotProfile,
    memo: &mut Memo,
    out: &mut String,
) {
    out.push_str("{\"file\":");
    write_str(file, out);
    kv_int("frame", s.frame, out);
    key("ts", out);
    py_float_repr(s.ts, out);
    kv_addr("src", &s.src, out);
    kv_int("sport", s.sport.into(), out);
    kv_addr("dst", &s.dst, out);
    kv_int("dport", s.dport.into(), out);
    kv_str("transport", s.transport.as_str(), out);
    match &s.hello {
        Hello::Client(h) => {
            kv_str("hello", "client", out);
            kv_int("index", s.index, out);
            key("sni", out);
            match &h.sni {
                Some(n) => write_str(n, out),
                None => out.push_str("null"),
            }
            key("alpn", out);
            out.push('[');
            for (i, a) in h.alpn.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&ascii_backslashreplace(a), out);
            }
            out.push(']');
            let f = memo.client(h, s.transport, profile);
            kv_str("tls_version", &f.tls_version, out);
            kv_str("ja3", &f.ja3, out);
            kv_str("ja3_hash", &f.ja3_hash, out);
            kv_str("ja3n", &f.ja3n, out);
            kv_str("ja3n_hash", &f.ja3n_hash, out);
            kv_str("ja4", &f.ja4, out);
            kv_str("ja4_r", &f.ja4_r, out);
            kv_str("ja3_dovecot", &f.ja3_dovecot, out);
            kv_str("ja3_dovecot_hash", &f.ja3_dovecot_hash, out);
            key("ja3_dovecot_hashes", out);
            for (i, (p, h)) in DovecotProfile::ALL.iter().zip(&f.ja3_dovecot_hashes).enumerate() {
                out.push(if i == 0 { '{' } else { ',' });
                write_str(p.name(), out);
                out.push(':');
                write_str(h, out);
            }
            out.push('}');
        }
        Hello::Server(h) => {
            kv_str("hello", "server", out);
            kv_int("index", s.index, out);
            key("sni", out);
            out.push_str("null");
            key("alpn", out);
            out.push('[');
            if let Some(a) = h.alpn.as_ref().filter(|a| !a.is_empty()) {
                write_str(&ascii_backslashreplace(a), out);
            }
            out.push(']');
            key("hello_retry_request", out);
            out.push_str(if h.is_hello_retry_request { "true" } else { "false" });
            let f = memo.server(h);
            kv_str("tls_version", &f.tls_version, out);
            kv_str("ja3s", &f.ja3s, out);
            kv_str("ja3s_hash", &f.ja3s_hash, out);
        }
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut s = String::new();
        py_float_repr(x, &mut s);
        s
    }

    #[test]
    fn float_repr_like_python() {
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1.5e-5), "1.5e-05");
        assert_eq!(repr(123456789012345.6), "123456789012345.6");
        assert_eq!(repr(1e15), "1000000000000000.0");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(1700000000.5), "1700000000.5");
        assert_eq!(repr(0.0), "0.0");
        assert_eq!(repr(-2.0), "-2.0");
        // Exactly halfway between two shortest candidates (581 / 2^20): Python's
        // repr(581 / 1048576) takes the even one, where `{:e}` alone gives ...313.
        assert_eq!(repr(581.0 / 1048576.0), "0.0005540847778320312");
    }

    fn v6(s: &str) -> String {
        let ip: std::net::Ipv6Addr = s.parse().unwrap();
        let mut out = String::new();
        write_addr(&Addr::from_slice(&ip.octets()), &mut out);
        out
    }

    #[test]
    fn inet_ntop_like_glibc() {
        // Expected values printed by Python's socket.inet_ntop (glibc).
        assert_eq!(v6("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(v6("::2"), "::2");
        assert_eq!(v6("::ffff:0:0"), "::ffff:0.0.0.0");
        assert_eq!(v6("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("0:0:1::"), "0:0:1::");
        assert_eq!(v6("1:2:3:4:5:6:7:0"), "1:2:3:4:5:6:7:0");
    }
}

//! ClientHello and ServerHello bodies: bytes in, the raw lists every fingerprint is built from
//! (port of `ja3svc/hello.py`).
//!
//! Written by hand rather than with tls-parser: the reference reports a malformed hello under
//! one of two stable reasons ("truncated", "odd_length") that become counter names, keeps lists
//! raw (GREASE included) and parses only the six extensions fingerprints read, tolerating junk
//! in every other one. tls-parser parses every extension it knows and fails on different
//! inputs, so counters and results would differ from the reference.

pub const EXT_SERVER_NAME: u16 = 0;
pub const EXT_SUPPORTED_GROUPS: u16 = 10;
pub const EXT_EC_POINT_FORMATS: u16 = 11;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub const EXT_ALPN: u16 = 16;
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;

pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Why a hello could not be parsed; `as_str` is the counter suffix the reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloError {
    Truncated,
    OddLength,
}

impl HelloError {
    pub fn as_str(self) -> &'static str {
        match self {
            HelloError::Truncated => "truncated",
            HelloError::OddLength => "odd_length",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub supported_groups: Vec<u16>,
    pub ec_point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    pub supported_versions: Vec<u16>,
    /// The first host_name, non-ASCII bytes written as `\xNN` (Python's backslashreplace).
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
    /// Extensions 10 / 11 listed more than once (the fingerprints use the last).
    pub duplicate_extensions: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    pub selected_version: Option<u16>,
    pub alpn: Option<Vec<u8>>,
    pub is_hello_retry_request: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    Client(ClientHello),
    Server(ServerHello),
}

type R<T> = Result<T, HelloError>;

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn u16_list(body: &[u8], start: usize, stop: usize) -> R<Vec<u16>> {
    if (stop - start) & 1 != 0 {
        return Err(HelloError::OddLength);
    }
    Ok(body[start..stop].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
}

/// Bounds (start, stop) of the `width`-byte length-prefixed vector at `pos`.
fn vector(body: &[u8], pos: usize, end: usize, width: usize) -> R<(usize, usize)> {
    let start = pos + width;
    if start > end {
        return Err(HelloError::Truncated);
    }
    let n = if width == 1 { body[pos] as usize } else { be16(body, pos) as usize };
    let stop = start + n;
    if stop > end {
        return Err(HelloError::Truncated);
    }
    Ok((start, stop))
}

/// Walks an extensions block: calls `each(type, start, stop)` in wire order.
fn extensions(
    body: &[u8],
    pos: usize,
    end: usize,
    mut each: impl FnMut(u16, usize, usize) -> R<()>,
) -> R<()> {
    let (mut pos, ext_end) = vector(body, pos, end, 2)?;
    while pos < ext_end {
        if pos + 4 > ext_end {
            return Err(HelloError::Truncated);
        }
        let ext_type = be16(body, pos);
        let start = pos + 4;
        pos = start + be16(body, pos + 2) as usize;
        if pos > ext_end {
            return Err(HelloError::Truncated);
        }
        each(ext_type, start, pos)?;
    }
    Ok(())
}

/// Parse a ClientHello body (handshake type 1, without its 4-byte header).
pub fn parse_client_hello(body: &[u8]) -> R<ClientHello> {
    let end = body.len();
    if end < 35 {
        return Err(HelloError::Truncated);
    }
    let version = be16(body, 0);
    let (_, pos) = vector(body, 34, end, 1)?;
    let (start, pos) = vector(body, pos, end, 2)?;
    let ciphers = u16_list(body, start, pos)?;
    let (_, pos) = vector(body, pos, end, 1)?;
    let mut h = ClientHello {
        legacy_version: version,
        ciphers,
        extensions: Vec::new(),
        supported_groups: Vec::new(),
        ec_point_formats: Vec::new(),
        signature_algorithms: Vec::new(),
        supported_versions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        duplicate_extensions: Vec::new(),
    };
    // A hello may end right after compression_methods (no extensions block, e.g. SSL 3.0).
    if pos < end {
        extensions(body, pos, end, |ext_type, start, stop| {
            match ext_type {
                EXT_SUPPORTED_GROUPS => {
                    if h.extensions.contains(&ext_type) {
                        h.duplicate_extensions.push(ext_type);
                    }
                    let (a, b) = vector(body, start, stop, 2)?;
                    h.supported_groups = u16_list(body, a, b)?;
                }
                EXT_EC_POINT_FORMATS => {
                    if h.extensions.contains(&ext_type) {
                        h.duplicate_extensions.push(ext_type);
                    }
                    let (a, b) = vector(body, start, stop, 1)?;
                    h.ec_point_formats = body[a..b].to_vec();
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    let (a, b) = vector(body, start, stop, 2)?;
                    h.signature_algorithms = u16_list(body, a, b)?;
                }
                EXT_SUPPORTED_VERSIONS => {
                    let (a, b) = vector(body, start, stop, 1)?;
                    h.supported_versions = u16_list(body, a, b)?;
                }
                EXT_SERVER_NAME if start < stop => {
                    h.sni = first_host_name(body, start, stop)?;
                }
                EXT_ALPN if start < stop => {
                    let (a, b) = vector(body, start, stop, 2)?;
                    h.alpn = protocol_names(body, a, b)?;
                }
                _ => {}
            }
            h.extensions.push(ext_type);
            Ok(())
        })?;
    }
    Ok(h)
}

/// Parse a ServerHello body (handshake type 2, without its 4-byte header).
pub fn parse_server_hello(body: &[u8]) -> R<ServerHello> {
    let end = body.len();
    if end < 35 {
        return Err(HelloError::Truncated);
    }
    let version = be16(body, 0);
    let is_hrr = body[2..34] == HELLO_RETRY_REQUEST_RANDOM;
    let (_, mut pos) = vector(body, 34, end, 1)?;
    if pos + 3 > end {
        return Err(HelloError::Truncated);
    }
    let cipher = be16(body, pos);
    pos += 3;
    let mut exts = Vec::new();
    let mut selected = None;
    let mut alpn = None;
    if pos < end {
        extensions(body, pos, end, |ext_type, start, stop| {
            exts.push(ext_type);
            if ext_type == EXT_SUPPORTED_VERSIONS && stop - start >= 2 {
                selected = Some(be16(body, start));
            } else if ext_type == EXT_ALPN && start < stop {
                let (a, b) = vector(body, start, stop, 2)?;
                alpn = protocol_names(body, a, b)?.into_iter().next();
            }
            Ok(())
        })?;
    }
    Ok(ServerHello {
        legacy_version: version,
        cipher,
        extensions: exts,
        selected_version: selected,
        alpn,
        is_hello_retry_request: is_hrr,
    })
}

fn first_host_name(body: &[u8], start: usize, stop: usize) -> R<Option<String>> {
    let (mut pos, end) = vector(body, start, stop, 2)?;
    while pos < end {
        let name_type = body[pos];
        let (a, next) = vector(body, pos + 1, end, 2)?;
        pos = next;
        if name_type == 0 {
            return Ok(Some(ascii_backslashreplace(&body[a..pos])));
        }
    }
    Ok(None)
}

fn protocol_names(body: &[u8], mut pos: usize, end: usize) -> R<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while pos < end {
        let (a, next) = vector(body, pos, end, 1)?;
        pos = next;
        out.push(body[a..pos].to_vec());
    }
    Ok(out)
}

/// Python's `bytes.decode("ascii", errors="backslashreplace")`.
pub fn ascii_backslashreplace(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(raw.len());
    for &b in raw {
        if b < 0x80 {
            s.push(b as char);
        } else {
            s.push_str("\\x");
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_body(exts: &[u8]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([0u8; 32]);
        b.push(0); // session id
        b.extend([0, 4, 0x0a, 0x0a, 0x13, 0x01]); // GREASE + TLS_AES_128_GCM_SHA256
        b.extend([1, 0]);
        b.extend((exts.len() as u16).to_be_bytes());
        b.extend(exts);
        b
    }

    #[test]
    fn client_hello_lists_and_sni() {
        // server_name "a\xffb", supported_groups twice (last wins, duplicate noted)
        let mut e = vec![0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', 0xff, b'b'];
        e.extend([0, 10, 0, 4, 0, 2, 0, 23]);
        e.extend([0, 10, 0, 4, 0, 2, 0, 29]);
        let h = parse_client_hello(&client_body(&e)).unwrap();
        assert_eq!(h.ciphers, vec![0x0a0a, 0x1301]);
        assert_eq!(h.extensions, vec![0, 10, 10]);
        assert_eq!(h.supported_groups, vec![29]);
        assert_eq!(h.duplicate_extensions, vec![10]);
        assert_eq!(h.sni.as_deref(), Some("a\\xffb"));
    }

    #[test]
    fn lying_lengths_are_reasons() {
        let mut body = client_body(&[0, 10, 0, 3, 0, 1, 0]);
        assert_eq!(parse_client_hello(&body), Err(HelloError::OddLength));
        body.truncate(body.len() - 1);
        assert_eq!(parse_client_hello(&body), Err(HelloError::Truncated));
        assert_eq!(parse_client_hello(&[3, 3]), Err(HelloError::Truncated));
    }
}

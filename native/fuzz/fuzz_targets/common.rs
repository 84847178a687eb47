//! The input framing shared by the datagram and frame targets, so that seed corpora can be
//! written from real captures (native/fuzz/seeds.py): a sequence of
//! `flags(1) length(2, big-endian) bytes`. A truncated last record is dropped.

/// The records with their flags byte (the engine target takes the link type from it).
#[allow(dead_code)] // each target includes this file and uses one of the two views
pub fn frames(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        if data.len() < 3 + len {
            break;
        }
        out.push((data[0], &data[3..3 + len]));
        data = &data[3 + len..];
    }
    out
}

/// The records as datagrams: bit 0 of flags set for a server-to-client one.
#[allow(dead_code)]
pub fn datagrams(data: &[u8]) -> Vec<(bool, &[u8])> {
    frames(data)
        .into_iter()
        .map(|(flags, d)| (flags & 1 == 1, d))
        .collect()
}

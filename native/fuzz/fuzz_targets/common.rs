//! The input framing shared by the datagram targets, so that seed corpora can be written from
//! real captures (native/fuzz/seeds.py): a sequence of `flags(1) length(2, big-endian) bytes`,
//! bit 0 of flags set for a server-to-client datagram. A truncated last record is dropped.

pub fn datagrams(mut data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let from_server = data[0] & 1 == 1;
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        if data.len() < 3 + len {
            break;
        }
        out.push((from_server, &data[3..3 + len]));
        data = &data[3 + len..];
    }
    out
}

//! QUIC Initial decryption and ClientHello reassembly.
//!
//! Oracles: the test vectors printed in RFC 9001 appendix A (v1) and RFC 9369 appendix A (v2):
//! the same client DCID and ClientHello for both versions, the secrets, keys, header-protection
//! masks and the protected packets as the RFCs print them. Packets the RFCs do not print (split,
//! reordered, coalesced) are built by `protect`, which is first shown to reproduce the RFC bytes.

use super::assembler::{CryptoStream, QuicInitialAssembler};
use super::keys::{initial_keys, initial_secrets, version, PacketKeys, QUIC_V1, QUIC_V2};
use super::looks_like_quic_initial;
use super::packets::{decode_packet_number, seal_initial};
use crate::hello::HELLO_RETRY_REQUEST_RANDOM;
use sha2::{Digest, Sha256};

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// RFC 9001 A.2: the client's only frame: CRYPTO (06), offset 0 (00), length 0x0f1 (40f1), then
// the ClientHello handshake message: type 1, length 0x0000ed, body (SNI example.com, ALPN
// "alpn"). A.3: the server's payload: ACK (02 00 00 00 00) then CRYPTO with the ServerHello.
const DCID: &str = "8394c8f03e515708";
const CLIENT_CRYPTO_FRAME: &str = concat!(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69",
    "484c00000413011302010000c000000010000e00000b6578616d706c652e636f6dff01000100000a",
    "00080006001d0017001800100007000504616c706e000500050100000000003300260024001d0020",
    "9370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400",
    "0d0010000e0403050306030203080408050806002d00020101001c00024001003900320408ffffff",
    "ffffffffff05048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806",
    "048000ffff",
);
const SERVER_PAYLOAD: &str = concat!(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566d",
    "c5430b9a045a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d10",
    "81287c834d5311bcf32bb9da1a002b00020304",
);
const V1_CLIENT_SECRET: &str = "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea";
const V1_SERVER_SECRET: &str = "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b";
const V1_CLIENT_KEYS: [&str; 3] = [
    "1f369613dd76d5467730efcbe3b1a22d",
    "fa044b2f42a3fd3b46fb255c",
    "9f50449e04a0e810283a1e9933adedd2",
];
const V1_SERVER_KEYS: [&str; 3] = [
    "cf3a5331653c364c88f0f379b6067e37",
    "0ac1493ca1905853b0bba03e",
    "c206b8d9b9f0f37644430b490eeaa314",
];
const V1_CLIENT_SAMPLE: [&str; 2] = ["d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"];
const V1_SERVER_SAMPLE: [&str; 2] = ["2cd0991cd25b0aac406a5816b6394100", "2ec0d8356a"];
const V1_CLIENT_HEADER: &str = "c300000001088394c8f03e5157080000449e00000002";
const V1_SERVER_HEADER: &str = "c1000000010008f067a5502a4262b50040750001";
const V1_CLIENT_PACKET: &str = concat!(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11d242b123dc9bd8ba",
    "b936b47d92ec356c0bab7df5976d27cd449f63300099f3991c260ec4c60d17b31f8429157bb35a12",
    "82a643a8d2262cad67500cadb8e7378c8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6",
    "005f80fcb7df621230c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5",
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c2084dce25ff9b06cde5",
    "35d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec4e15daf8500a6ef69ec4e3feb6b1d98e",
    "610ac8b7ec3faf6ad760b7bad1db4ba3485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e3",
    "0c5c4287e53805db059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c",
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f89937f5a67258bf63",
    "ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556be52afe3f565636ad1b17d508b73d874",
    "3eeb524be22b3dcbc2c7468d54119c7468449a13d8e3b95811a198f3491de3e7fe942b330407abf8",
    "2a4ed7c1b311663ac69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00",
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632291d6a418211cc29",
    "62e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe5896425c5bac4aee82e57a85aaf4e2513e4f0",
    "5796b07ba2ee47d80506f8d2c25e50fd14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c",
    "1f28ff18f58891ffef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198",
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009ddc324044e847a4f4a",
    "0ab34f719595de37252d6235365e9b84392b061085349d73203a4a13e96f5432ec0fd4a1ee65accd",
    "d5e3904df54c1da510b0ff20dcc0c77fcb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de3",
    "54270123cb11450efc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade",
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e72404790a2181014f3b94a",
    "4e97d117b438130368cc39dbb2d198065ae3986547926cd2162f40a29f0c3c8745c0f50fba3852e5",
    "66d44575c29d39a03f0cda721984b6f440591f355e12d439ff150aab7613499dbd49adabc8676eef",
    "023b15b65bfc5ca06948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e",
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0be79e2fb8f5d5fbb",
    "e2e30ecadd220723c8c0aea8078cdfcb3868263ff8f0940054da48781893a7e49ad5aff4af300cd8",
    "04a6b6279ab3ff3afb64491c85194aab760d58a606654f9f4400e8b38591356fbf6425aca26dc852",
    "44259ff2b19c41b9f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4",
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd46840647e78bfe706ca4cf5",
    "e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241e221af44860018ab0856972e194cd934",
);
const V1_SERVER_PACKET: &str = concat!(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a",
    "1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9",
    "c3bf9c73cc3f3bded74b562bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d",
    "20398c276456cbc42158407dd074ee",
);
const V2_CLIENT_SECRET: &str = "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b";
const V2_SERVER_SECRET: &str = "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1";
const V2_CLIENT_KEYS: [&str; 3] = [
    "8b1a0bc121284290a29e0971b5cd045d",
    "91f73e2351d8fa91660e909f",
    "45b95e15235d6f45a6b19cbcb0294ba9",
];
const V2_SERVER_KEYS: [&str; 3] = [
    "82db637861d55e1d011f19ea71d5d2a7",
    "dd13c276499c0249d3310652",
    "edf6d05c83121201b436e16877593c3a",
];
const V2_CLIENT_SAMPLE: [&str; 2] = ["ffe67b6abcdb4298b485dd04de806071", "94a0c95e80"];
const V2_CLIENT_HEADER: &str = "d36b3343cf088394c8f03e5157080000449e00000002";
const V2_SERVER_HEADER: &str = "d16b3343cf0008f067a5502a4262b50040750001";
const V2_CLIENT_PACKET: &str = concat!(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485dd04de806071bf03",
    "dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad049f9a3dd4425ae4d0992cfff18ecf0fdb",
    "5a842d09747052f17ac2053d21f57c5d250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4",
    "f03b55545243cf1a12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500",
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd6818f6625efce3b6de",
    "f6ba7e4b37a40f7732e093daa7d52190935b8da58976ff3312ae50b187c1433c0f028edcc4c2838b",
    "6a9bfc226ca4b4530e7a4ccee1bfa2a3d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c",
    "7777c023462239dd6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520",
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045636e7c0c0fe4eb0f",
    "697545460c806910d2c355f1d253bc9d2452aaa549e27a1fac7cf4ed77f322e8fa894b6a83810a34",
    "b361901751a6f5eb65a0326e07de7c1216ccce2d0193f958bb3850a833f7ae432b65bc5a53975c15",
    "5aa4bcb4f7b2c4e54df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4",
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b8017c25ca9052ca1",
    "079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de714d19d61370f8149748c72f132f0fc99",
    "f34d766c6938597040d8f9e2bb522ff99c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c44",
    "6151adfeceb51b91abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd",
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db848265e3e5eb72df",
    "e8299ad7481a408322cac55786e52f633b2fb6b614eaed18d703dd84045a274ae8bfa73379661388",
    "d6991fe39b0d93debb41700b41f90a15c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e5",
    "7f32162a8560cacc7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61",
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e7071010d3f270121b493c",
    "e85054ef58bada42310138fe081adb04e2bd901f2f13458b3d6758158197107c14ebb193230cd115",
    "7380aa79cae1374a7c1e5bbcb80ee23e06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6",
    "adc38b7ca7331dce8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1",
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1e86215c2d54e6670",
    "e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd5d3b22dc2be80919b490437ae4f36a0a",
    "e55edf1d0b5cb4e9a3ecabee93dfc6e38d209d0fa6536d27a5d6fbb17641cde27525d61093f1b280",
    "72d111b2b4ae5f89d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53",
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb199a37ddec60054547",
    "3cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96ba18b2faa745b6fe189cf772a9f84cbfc",
);
const V2_SERVER_PACKET: &str = concat!(
    "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698baeea26b91eb761d",
    "9b89237bbf87263017915358230035f7fd3945d88965cf17f9af6e16886c61bfc703106fbaf3cb4c",
    "fa52382dd16a393e42757507698075b2c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a",
    "3e2c43edd9ce7ca84bed8521e2e140",
);

struct Rfc {
    number: u32,
    client_secret: &'static str,
    server_secret: &'static str,
    client_keys: [&'static str; 3],
    server_keys: [&'static str; 3],
    client_sample: [&'static str; 2],
    server_sample: Option<[&'static str; 2]>,
    client_header: &'static str,
    server_header: &'static str,
    client_packet: &'static str,
    server_packet: &'static str,
}

const RFC_V1: Rfc = Rfc {
    number: QUIC_V1,
    client_secret: V1_CLIENT_SECRET,
    server_secret: V1_SERVER_SECRET,
    client_keys: V1_CLIENT_KEYS,
    server_keys: V1_SERVER_KEYS,
    client_sample: V1_CLIENT_SAMPLE,
    server_sample: Some(V1_SERVER_SAMPLE),
    client_header: V1_CLIENT_HEADER,
    server_header: V1_SERVER_HEADER,
    client_packet: V1_CLIENT_PACKET,
    server_packet: V1_SERVER_PACKET,
};

// v2's Initial type bits are 01, so the unprotected first byte is d3 rather than c3.
const RFC_V2: Rfc = Rfc {
    number: QUIC_V2,
    client_secret: V2_CLIENT_SECRET,
    server_secret: V2_SERVER_SECRET,
    client_keys: V2_CLIENT_KEYS,
    server_keys: V2_SERVER_KEYS,
    client_sample: V2_CLIENT_SAMPLE,
    server_sample: None,
    client_header: V2_CLIENT_HEADER,
    server_header: V2_SERVER_HEADER,
    client_packet: V2_CLIENT_PACKET,
    server_packet: V2_SERVER_PACKET,
};

fn client_hello_body() -> Vec<u8> {
    unhex(CLIENT_CRYPTO_FRAME)[8..].to_vec()
}

// ----------------------------------------------------------------------------------------------
// A test-side packet builder (header protection + AEAD).

pub(crate) fn protect(
    keys: &PacketKeys,
    header: &[u8],
    payload: &[u8],
    pn: u64,
    pn_len: usize,
) -> Vec<u8> {
    let mut packet = header.to_vec();
    packet.extend(keys.seal(pn, header, payload));
    let pn_offset = header.len() - pn_len;
    let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20].try_into().unwrap();
    let mask = keys.header_mask(&sample);
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    packet
}

pub(crate) fn varint(value: u64) -> Vec<u8> {
    if value < 0x40 {
        vec![value as u8]
    } else if value < 0x4000 {
        ((value | 0x4000) as u16).to_be_bytes().to_vec()
    } else {
        ((value | 0x8000_0000) as u32).to_be_bytes().to_vec()
    }
}

pub(crate) struct Initial<'a> {
    pub version: u32,
    pub dcid: &'a [u8],
    pub pn: u64,
    pub server: bool,
    pub pad_to: usize,
    pub token: &'a [u8],
}

impl Default for Initial<'_> {
    fn default() -> Self {
        Initial {
            version: QUIC_V1,
            dcid: &RFC_DCID_BYTES,
            pn: 0,
            server: false,
            pad_to: 1162,
            token: b"",
        }
    }
}

const RFC_DCID_BYTES: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

/// One protected Initial packet with a 4-byte packet number, PADDING up to `pad_to`.
pub(crate) fn initial(payload: &[u8], o: &Initial<'_>) -> Vec<u8> {
    let v = version(o.version).unwrap();
    let (client_keys, server_keys) = initial_keys(v, o.dcid);
    let mut payload = payload.to_vec();
    if payload.len() < o.pad_to {
        payload.resize(o.pad_to, 0);
    }
    let keys = if o.server { &server_keys } else { &client_keys };
    seal_initial(v, keys, o.dcid, o.token, o.pn as u32, &payload).unwrap()
}

pub(crate) fn crypto(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset));
    f.extend(varint(data.len() as u64));
    f.extend(data);
    f
}

fn errors(asm: &QuicInitialAssembler) -> Vec<(&'static str, u64)> {
    asm.errors.iter().map(|(k, v)| (*k, *v)).collect()
}

// ----------------------------------------------------------------------------------------------
// RFC vectors

#[test]
fn initial_secrets_and_keys_match_the_rfcs() {
    assert_eq!(hex(&unhex(DCID)), hex(&RFC_DCID_BYTES));
    for rfc in [RFC_V1, RFC_V2] {
        let v = version(rfc.number).unwrap();
        let (client, server) = initial_secrets(v, &RFC_DCID_BYTES);
        assert_eq!(hex(&client), rfc.client_secret);
        assert_eq!(hex(&server), rfc.server_secret);
        let (client, server) = initial_keys(v, &RFC_DCID_BYTES);
        assert_eq!(
            [hex(&client.key), hex(&client.iv), hex(&client.hp_key)],
            rfc.client_keys
        );
        assert_eq!(
            [hex(&server.key), hex(&server.iv), hex(&server.hp_key)],
            rfc.server_keys
        );
    }
}

#[test]
fn header_protection_masks_match_the_rfcs() {
    for rfc in [RFC_V1, RFC_V2] {
        let (client, server) = initial_keys(version(rfc.number).unwrap(), &RFC_DCID_BYTES);
        let sample: [u8; 16] = unhex(rfc.client_sample[0]).try_into().unwrap();
        assert_eq!(hex(&client.header_mask(&sample)), rfc.client_sample[1]);
        if let Some([sample, mask]) = rfc.server_sample {
            let sample: [u8; 16] = unhex(sample).try_into().unwrap();
            assert_eq!(hex(&server.header_mask(&sample)), mask);
        }
    }
}

#[test]
fn test_builder_reproduces_the_rfc_packets() {
    for rfc in [RFC_V1, RFC_V2] {
        let (client, server) = initial_keys(version(rfc.number).unwrap(), &RFC_DCID_BYTES);
        let mut payload = unhex(CLIENT_CRYPTO_FRAME);
        payload.resize(1162, 0);
        let built = protect(&client, &unhex(rfc.client_header), &payload, 2, 4);
        assert_eq!(hex(&built), rfc.client_packet);
        let built = protect(
            &server,
            &unhex(rfc.server_header),
            &unhex(SERVER_PAYLOAD),
            1,
            2,
        );
        assert_eq!(hex(&built), rfc.server_packet);
        let o = Initial {
            version: rfc.number,
            pn: 2,
            ..Default::default()
        };
        assert_eq!(
            hex(&initial(&unhex(CLIENT_CRYPTO_FRAME), &o)),
            rfc.client_packet
        );
    }
}

#[test]
fn rfc_client_initial_gives_the_client_hello_and_server_initial_the_server_hello() {
    for rfc in [RFC_V1, RFC_V2] {
        let mut asm = QuicInitialAssembler::new();
        assert_eq!(
            asm.feed(&unhex(rfc.client_packet)),
            vec![client_hello_body()]
        );
        assert!(asm.errors.is_empty());
        assert!(!asm.done);
        let bodies = asm.feed_server(&unhex(rfc.server_packet));
        // after ACK (5 bytes), the CRYPTO frame header (4) and the handshake header (4)
        assert_eq!(bodies, vec![unhex(SERVER_PAYLOAD)[13..].to_vec()]);
        assert_eq!((asm.client_hellos, asm.server_hellos), (1, 1));
        assert!(asm.done);
        assert!(asm.errors.is_empty());
        assert!(asm.feed(&unhex(rfc.client_packet)).is_empty());
    }
}

#[test]
fn server_initial_before_any_client_initial_is_counted() {
    let mut asm = QuicInitialAssembler::new();
    assert!(asm.feed_server(&unhex(V1_SERVER_PACKET)).is_empty());
    assert_eq!(errors(&asm), vec![("server_before_client", 1)]);
}

#[test]
fn packet_number_decoding_rfc9000_a3() {
    // RFC 9000 A.3's example: largest 0xa82f30ea, 16-bit truncated 0x9b32 -> 0xa82f9b32.
    assert_eq!(decode_packet_number(0xa82f30ea, 0x9b32, 16), 0xa82f9b32);
    assert_eq!(decode_packet_number(-1, 2, 32), 2);
    assert_eq!(decode_packet_number(255, 0, 8), 256);
}

#[test]
fn hello_retry_request_random_is_the_sha256_of_its_name() {
    assert_eq!(
        HELLO_RETRY_REQUEST_RANDOM,
        <[u8; 32]>::from(Sha256::digest(b"HelloRetryRequest"))
    );
}

// ----------------------------------------------------------------------------------------------
// Reassembly: split, reordered, coalesced, duplicated

/// A ~3.2 KB ClientHello message: the RFC hello plus a large padding extension (21).
fn big_hello_message() -> Vec<u8> {
    let mut body = client_hello_body();
    let mut ext = vec![0x00, 0x15];
    ext.extend(3000u16.to_be_bytes());
    ext.extend(vec![0u8; 3000]);
    let at = 2 + 32 + 1 + 2 + 4 + 2; // version, random, sid(0), ciphers(4), compression
    let old = u16::from_be_bytes([body[at], body[at + 1]]);
    body[at..at + 2].copy_from_slice(&(old + ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut message = vec![1];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    message
}

#[test]
fn hello_split_over_three_initials_out_of_order() {
    let message = big_hello_message();
    let packets: Vec<Vec<u8>> = [(0usize, 1100usize), (1100, 2200), (2200, message.len())]
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            initial(
                &crypto(a as u64, &message[a..b]),
                &Initial {
                    pn: i as u64,
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut asm = QuicInitialAssembler::new();
    assert!(asm.feed(&packets[2]).is_empty());
    assert!(asm.feed(&packets[0]).is_empty());
    assert!(asm.feed(&packets[0]).is_empty()); // a retransmission changes nothing
    assert_eq!(asm.feed(&packets[1]), vec![message[4..].to_vec()]);
    assert!(asm.errors.is_empty());
}

#[test]
fn chrome_style_frames_ping_padding_and_ack_between_reversed_crypto_frames() {
    let message = unhex(CLIENT_CRYPTO_FRAME)[4..].to_vec();
    let mut frames = vec![0x01]; // PING
    frames.extend(crypto(100, &message[100..]));
    frames.extend([0, 0, 0]); // PADDING
    frames.extend([0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]); // ACK: 1 range
    frames.push(0x01);
    frames.extend(crypto(0, &message[..100]));
    frames.extend([0x03, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03]); // ACK_ECN, 3 ECN counts
    let mut asm = QuicInitialAssembler::new();
    assert_eq!(
        asm.feed(&initial(&frames, &Initial::default())),
        vec![client_hello_body()]
    );
    assert!(asm.errors.is_empty());
}

#[test]
fn coalesced_initial_and_handshake_packets_in_one_datagram() {
    let message = unhex(CLIENT_CRYPTO_FRAME)[4..].to_vec();
    let first = initial(
        &crypto(0, &message[..50]),
        &Initial {
            pad_to: 0,
            ..Default::default()
        },
    );
    let second = initial(
        &crypto(50, &message[50..]),
        &Initial {
            pn: 1,
            pad_to: 0,
            ..Default::default()
        },
    );
    // A Handshake packet (v1 type bits 10) we cannot decrypt, skipped by its Length field.
    let mut handshake = vec![0xe0, 0, 0, 0, 1, 8];
    handshake.extend(RFC_DCID_BYTES);
    handshake.extend([0x00, 0x40, 0x20]);
    handshake.extend([0u8; 32]);
    let mut datagram = [first.clone(), second].concat();
    datagram.push(0x40); // a short-header packet fills the rest
    datagram.extend([0u8; 20]);
    let mut asm = QuicInitialAssembler::new();
    assert_eq!(asm.feed(&datagram), vec![client_hello_body()]);
    assert!(asm.errors.is_empty());
    assert!(!asm.done);
    assert!(asm.feed(&[first, handshake].concat()).is_empty()); // the client has Handshake keys
    assert!(asm.done);
}

#[test]
fn later_client_initial_addressed_to_the_server_chosen_id_keeps_the_original_keys() {
    let message = unhex(CLIENT_CRYPTO_FRAME)[4..].to_vec();
    let (client_keys, _) = initial_keys(version(QUIC_V1).unwrap(), &RFC_DCID_BYTES);
    let mut asm = QuicInitialAssembler::new();
    assert!(asm
        .feed(&initial(&crypto(0, &message[..60]), &Initial::default()))
        .is_empty());
    let mut payload = crypto(60, &message[60..]);
    payload.extend([0u8; 1000]);
    let mut header = vec![0xc3, 0, 0, 0, 1, 8];
    header.extend(unhex("f067a5502a4262b5")); // the server's ID, same keys
    header.extend([0, 0]);
    header.extend((0x4000 | (4 + payload.len() + 16) as u16).to_be_bytes());
    header.extend(1u32.to_be_bytes());
    assert_eq!(
        asm.feed(&protect(&client_keys, &header, &payload, 1, 4)),
        vec![client_hello_body()]
    );
    assert_eq!(asm.key_changes, 0);
    assert!(asm.errors.is_empty());
}

#[test]
fn retry_resend_is_not_a_second_hello_but_a_new_hello_is() {
    let frame = unhex(CLIENT_CRYPTO_FRAME);
    let mut asm = QuicInitialAssembler::new();
    assert_eq!(
        asm.feed(&initial(&frame, &Initial::default())),
        vec![client_hello_body()]
    );
    let new_dcid = unhex("0011223344556677");
    let resend = initial(
        &frame,
        &Initial {
            dcid: &new_dcid,
            token: b"retry-token",
            ..Default::default()
        },
    );
    assert!(asm.feed(&resend).is_empty());
    assert_eq!(
        (asm.key_changes, asm.repeated_hellos, asm.client_hellos),
        (1, 1, 1)
    );
    let mut other = frame.clone();
    other[8 + 2] ^= 0xff; // a new random: a different hello on the same 4-tuple
    let third_dcid = unhex("8899aabbccddeeff");
    assert_eq!(
        asm.feed(&initial(
            &other,
            &Initial {
                dcid: &third_dcid,
                ..Default::default()
            }
        )),
        vec![other[8..].to_vec()]
    );
    assert_eq!(asm.client_hellos, 2);
    assert!(asm.errors.is_empty());
}

#[test]
fn hello_retry_request_does_not_finish_the_exchange() {
    let mut asm = QuicInitialAssembler::new();
    asm.feed(&initial(&unhex(CLIENT_CRYPTO_FRAME), &Initial::default()));
    let mut hrr = unhex(SERVER_PAYLOAD)[5..].to_vec(); // the CRYPTO frame alone
    hrr[4 + 4 + 2..4 + 4 + 34].copy_from_slice(&HELLO_RETRY_REQUEST_RANDOM);
    let packet = initial(
        &hrr,
        &Initial {
            server: true,
            pad_to: 0,
            ..Default::default()
        },
    );
    assert_eq!(asm.feed_server(&packet).len(), 1);
    assert!(!asm.done);
}

// ----------------------------------------------------------------------------------------------
// Bounds and garbage

#[test]
fn crypto_data_beyond_the_cap_is_dropped_and_counted() {
    let mut asm = QuicInitialAssembler::with_max_crypto_bytes(4096);
    assert!(asm
        .feed(&initial(&crypto(5000, &[b'x'; 100]), &Initial::default()))
        .is_empty());
    assert_eq!(errors(&asm), vec![("crypto_over_cap", 1)]);
}

#[test]
fn a_hello_announcing_more_than_the_cap_stops_the_stream() {
    let mut asm = QuicInitialAssembler::with_max_crypto_bytes(4096);
    let mut data = vec![1, 1, 0, 0];
    data.extend([0u8; 100]);
    assert!(asm
        .feed(&initial(&crypto(0, &data), &Initial::default()))
        .is_empty());
    assert_eq!(errors(&asm), vec![("message_too_large", 1)]);
}

#[test]
fn fragment_count_is_bounded() {
    let mut stream = CryptoStream::default();
    let refused = (0..100u64)
        .filter_map(|i| stream.add(10 + 2 * i, b"x"))
        .map(|r| r.as_str())
        .collect::<Vec<_>>();
    assert_eq!(refused, vec!["too_many_fragments"; 100 - 64]);
    assert_eq!(stream.messages(), (vec![], None));
}

#[test]
fn damaged_packets_are_counted_not_panicked() {
    let packet = unhex(V1_CLIENT_PACKET);
    let mut flipped = packet.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut version9 = packet.clone();
    version9[1..5].copy_from_slice(&[0, 0, 0, 9]);
    let mut long_cid = packet.clone();
    long_cid[5] = 0x21;
    for (datagram, reason) in [
        (flipped, "aead_failed"),
        (packet[..600].to_vec(), "truncated_packet"),
        (version9, "unknown_version"),
        (long_cid, "bad_cid_length"),
    ] {
        let mut asm = QuicInitialAssembler::new();
        assert!(asm.feed(&datagram).is_empty());
        assert_eq!(errors(&asm), vec![(reason, 1)]);
    }
}

#[test]
fn looks_like_quic_initial_filters() {
    assert!(looks_like_quic_initial(&unhex(V1_CLIENT_PACKET)));
    assert!(looks_like_quic_initial(&unhex(V2_CLIENT_PACKET)));
    assert!(!looks_like_quic_initial(&unhex(V1_SERVER_PACKET))); // below 1200 bytes
    let mut short = vec![0x40];
    short.extend([0u8; 1300]);
    assert!(!looks_like_quic_initial(&short));
    let mut v1_handshake = unhex(V1_CLIENT_PACKET);
    v1_handshake[0] = 0xe3;
    assert!(!looks_like_quic_initial(&v1_handshake));
    let mut v2_as_v1_type = unhex(V2_CLIENT_PACKET);
    v2_as_v1_type[0] = 0xc3; // v2's Initial bits are 01
    assert!(!looks_like_quic_initial(&v2_as_v1_type));
    assert!(!looks_like_quic_initial(b""));
    // Only the version field is read before the table lookup: a v1 packet renumbered as a draft
    // with keys passes, draft-22 and Google's Q050 (no keys here) do not.
    for (number, taken) in [
        (0xff00_001d_u32, true),
        (0xface_b00e, true),
        (0xff00_0016, false),
        (0x5130_3530, false),
    ] {
        let mut packet = unhex(V1_CLIENT_PACKET);
        packet[1..5].copy_from_slice(&number.to_be_bytes());
        assert_eq!(looks_like_quic_initial(&packet), taken, "{number:#x}");
    }
}

#[test]
fn every_draft_number_finds_its_own_entry() {
    // The drafts sit in an array indexed by number - 23: each entry must carry its own number,
    // and the salt must change exactly where the drafts changed it (29 and 33).
    for draft in 23u32..=34 {
        let v = version(0xff00_0000 + draft).unwrap();
        assert_eq!(v.number, 0xff00_0000 + draft);
        let same_as = match draft {
            23..=28 => 0xff00_0017,
            29..=32 => 0xff00_001d,
            _ => QUIC_V1,
        };
        assert_eq!(v.salt, version(same_as).unwrap().salt, "draft {draft}");
    }
    assert!(version(0xff00_0016).is_none());
    assert!(version(0xff00_0023).is_none());
    // Google's TLS versions have their own salts and Google's frames; Q050 (no TLS) is absent.
    for number in [0x5430_3530, 0x5430_3531] {
        let v = version(number).unwrap();
        assert!(v.google_frames && v.salt != version(QUIC_V1).unwrap().salt);
    }
    assert!(!version(QUIC_V1).unwrap().google_frames);
    assert!(version(0x5130_3530).is_none());
}

#[test]
fn every_truncation_and_single_byte_change_of_a_real_packet_is_survived() {
    let packet = unhex(V1_CLIENT_PACKET);
    for cut in 0..=packet.len() {
        let mut asm = QuicInitialAssembler::new();
        asm.feed(&packet[..cut]);
        asm.feed_server(&packet[..cut]);
    }
    for at in (0..packet.len()).step_by(7) {
        let mut damaged = packet.clone();
        damaged[at] ^= 0x5a;
        let mut asm = QuicInitialAssembler::new();
        // Every byte is covered: the header is the AEAD's associated data (or changes the
        // version, type or keys), the rest is ciphertext or tag. A damaged packet must lose
        // the hello, never yield a different one.
        assert!(asm.feed(&damaged).is_empty(), "byte {at}");
    }
}

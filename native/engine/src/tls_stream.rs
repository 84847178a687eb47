//! One direction of a TCP stream seen as TLS records: in-order bytes in, hello messages out
//! (port of `ja3svc/tls_stream.py`, whose docstring describes the states DETECT, HEADER, BODY
//! and DONE, STARTTLS detection and the post-CCS hello after a HelloRetryRequest).
//!
//! Hand-written: tls-parser parses whole records from a buffer and has no notion of a stream
//! that starts in plaintext (STARTTLS), of the reference's give-up rules, or of its counters.

pub const CONTENT_CCS: u8 = 20;
pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;
pub const CONTENT_HEARTBEAT: u8 = 24;
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;

pub const MAX_RECORD_LENGTH: usize = 16384 + 2048;
pub const MAX_HELLO_LENGTH: usize = 65536;
pub const MAX_PLAINTEXT: usize = 32768;
pub const MAX_HELLOS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Detect,
    Header,
    Body,
    Done,
}

/// What a feed found: a hello body (handshake type 1 or 2) or a problem to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Hello(u8, Vec<u8>),
    Problem(&'static str),
}

fn is_handshake_header(data: &[u8], i: usize) -> bool {
    if data.len() < i + 5 || data[i] != CONTENT_HANDSHAKE || data[i + 1] != 3 || data[i + 2] > 4 {
        return false;
    }
    let length = ((data[i + 3] as usize) << 8) | data[i + 4] as usize;
    if !(0 < length && length <= MAX_RECORD_LENGTH) {
        return false;
    }
    data.len() <= i + 5
        || data[i + 5] == HANDSHAKE_CLIENT_HELLO
        || data[i + 5] == HANDSHAKE_SERVER_HELLO
}

/// Whether the stream starts like an unencrypted 2-byte alert record of level warning, as far
/// as its first 6 bytes are here (at least one). Encrypted alerts are longer or sent as
/// application data: this only matches an alert sent during the handshake.
fn may_be_plain_warning_alert(data: &[u8]) -> bool {
    const WANT: [u8; 6] = [CONTENT_ALERT, 3, 0xFF, 0, 2, 1]; // 0xFF: the minor version, 0-4
    !data.is_empty()
        && data.iter().zip(WANT).all(|(&b, w)| if w == 0xFF { b <= 4 } else { b == w })
}

fn is_sslv2_client_hello(data: &[u8]) -> bool {
    data.len() >= 5
        && data[0] & 0x80 != 0
        && data[2] == 1
        && (data[3] == 3 || (data[3] == 0 && data[4] == 2))
}

/// What the plaintext bytes since the last line break are: nothing, a line of text in
/// progress (a segment boundary there is no place for a hello), or binary (a prologue such as
/// SOCKS, which may end at a segment boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextRun {
    Empty,
    Text,
    Binary,
}

/// Printable ASCII, tab and CR. Bytes >= 0x80 count as binary: a SOCKS reply can hold a 0x0a
/// followed by only such bytes.
fn is_text_byte(b: u8) -> bool {
    b == 9 || b == 13 || (0x20..0x7F).contains(&b)
}

/// The run after plaintext `data[pos..]`. A line breaks at "\n", and at ">" for XMPP, whose
/// `<proceed/>` ends without a newline. Read backwards from the end, stopping at the first
/// line break or non-text byte (a byte or two into binary data), with the same result as the
/// reference's search for the last break and check of what follows it.
fn text_run_after(run: TextRun, data: &[u8], pos: usize) -> TextRun {
    let mut text_after = false; // a text byte seen between here and the end
    for &b in data[pos..].iter().rev() {
        if b == b'\n' || b == b'>' {
            return if text_after { TextRun::Text } else { TextRun::Empty };
        }
        if !is_text_byte(b) {
            return TextRun::Binary;
        }
        text_after = true;
    }
    if !text_after || run == TextRun::Binary {
        run
    } else {
        TextRun::Text
    }
}

/// IMAP literals (the reference's `_LITERAL` comment says why they are plaintext and why the
/// rule is safe for the other STARTTLS protocols): a line ending in "{N}", "{N+}" or "{N-}" and
/// CRLF (or a bare LF) is followed by N bytes of literal data. N only counts bytes, capped at
/// `LITERAL_CAP`: any larger literal exhausts the `MAX_PLAINTEXT` budget the same way.
const LITERAL_CAP: usize = MAX_PLAINTEXT + 1;

/// Where a literal announcement stands at a chunk's end: after "{", digits, the sign, "}" and
/// "}\r".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiteralPart {
    None,
    Open,
    Digits,
    Sign,
    Close,
    Cr,
}

fn find(data: &[u8], needle: &[u8; 2], from: usize) -> Option<usize> {
    if from >= data.len() {
        return None;
    }
    data[from..].windows(2).position(|w| w == needle).map(|p| p + from)
}

#[derive(Debug)]
pub struct TlsStreamParser {
    state: State,
    started: bool,
    /// The stream's first bytes not judged yet (TLS, plaintext, a session under way).
    at_start: bool,
    /// In plaintext: what the bytes since the last line break are.
    text_run: TextRun,
    /// In plaintext: bytes of an IMAP literal still to come, and an announcement cut by the
    /// end of the last chunk (its state and its size so far).
    literal_left: usize,
    literal_part: LiteralPart,
    literal_size: usize,
    hellos: u32,
    pending: Vec<u8>,
    record_type: u8,
    record_length: usize,
    record_left: usize,
    hs_buf: Vec<u8>,
    hs_skip: usize,
    after_ccs: bool,
    msg_starts_record: bool,
    plaintext_seen: usize,
}

impl Default for TlsStreamParser {
    fn default() -> Self {
        Self {
            state: State::Detect,
            started: false,
            at_start: true,
            text_run: TextRun::Empty,
            literal_left: 0,
            literal_part: LiteralPart::None,
            literal_size: 0,
            hellos: 0,
            pending: Vec::new(),
            record_type: 0,
            record_length: 0,
            record_left: 0,
            hs_buf: Vec::new(),
            hs_skip: 0,
            after_ccs: false,
            msg_starts_record: false,
            plaintext_seen: 0,
        }
    }
}

impl TlsStreamParser {
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether any byte of the stream has been fed.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Consume the next in-order bytes of the stream; push completed hellos and problems.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<StreamItem>) {
        if self.state == State::Done || data.is_empty() {
            return;
        }
        let joined;
        let data: &[u8] = if self.pending.is_empty() {
            data
        } else {
            let mut j = std::mem::take(&mut self.pending);
            j.extend_from_slice(data);
            joined = j;
            &joined
        };
        let mut pos = 0;
        let end = data.len();
        while pos < end {
            match self.state {
                State::Body => {
                    let take = self.record_left.min(end - pos);
                    if self.record_type == CONTENT_HANDSHAKE {
                        self.handshake(&data[pos..pos + take], out);
                    }
                    pos += take;
                    self.record_left -= take;
                    if self.record_left == 0 && self.state == State::Body {
                        self.state = State::Header;
                    }
                }
                State::Header => {
                    if end - pos < 5 {
                        self.pending = data[pos..].to_vec();
                        break;
                    }
                    pos = self.header(data, pos, out);
                }
                State::Detect => match self.detect(data, pos) {
                    Some(p) => pos = p,
                    None => break,
                },
                State::Done => break,
            }
        }
    }

    /// Where TLS starts in this chunk (None: wait for more bytes).
    fn detect(&mut self, data: &[u8], pos: usize) -> Option<usize> {
        let end = data.len();
        self.started = true;
        if self.at_start {
            return self.detect_start(data);
        }
        if self.literal_left > 0 {
            // Literal data: plaintext, and its line goes on after it (text_run is already
            // Text), so no hello starts right after it either.
            let take = self.literal_left.min(end - pos);
            self.literal_left -= take;
            return Some(if self.count_plaintext(take) { end } else { pos + take });
        }
        if self.text_run != TextRun::Text
            && end - pos < 6
            && data[pos] == CONTENT_HANDSHAKE
            && self.plaintext_seen < MAX_PLAINTEXT
        {
            // A record header split before its sixth byte: decide once it is here; the pending
            // bytes count as plaintext so tiny 0x16 chunks cannot keep this forever.
            self.pending = data[pos..].to_vec();
            self.plaintext_seen += end - pos;
            return None;
        }
        if self.text_run != TextRun::Text && is_handshake_header(data, pos) {
            // A chunk that starts a line, or follows a binary prologue (SOCKS, a PostgreSQL
            // SSLRequest, ...) after which the client starts TLS with a new write.
            self.state = State::Header;
            return Some(pos);
        }
        // Plaintext up to the end of the chunk, or of the first line that announces a literal.
        let stop = self.literal_announced(data, pos);
        let limit = stop.unwrap_or(end);
        // A STARTTLS hello starts right after the line that ended in "\n"; inside a line of
        // text it is never a hello, wherever a segment happens to end.
        let mut found = find(&data[..limit], b"\x16\x03", pos + 1);
        while let Some(i) = found {
            if data[i - 1] == 0x0A && end - i >= 5 && is_handshake_header(data, i) {
                self.state = State::Header;
                return Some(i);
            }
            found = find(&data[..limit], b"\x16\x03", i + 1);
        }
        if let Some(stop) = stop {
            self.literal_left = self.literal_size;
            self.text_run = TextRun::Text; // the announcing line goes on after the literal
            return Some(if self.count_plaintext(stop - pos) { end } else { stop });
        }
        // The chunk may end inside a record header that follows a newline: keep it.
        for t in (pos + 1).max(end.saturating_sub(4))..end {
            if data[t - 1] == 0x0A
                && data[t] == CONTENT_HANDSHAKE
                && (t + 1 == end || data[t + 1] == 3)
                && self.plaintext_seen < MAX_PLAINTEXT
            {
                self.pending = data[t..].to_vec();
                self.plaintext_seen += t - pos;
                self.text_run = TextRun::Empty;
                self.literal_part = LiteralPart::None; // as it stands after the newline before t
                return None;
            }
        }
        self.text_run = text_run_after(self.text_run, data, pos);
        self.count_plaintext(end - pos);
        Some(end)
    }

    /// Count `n` more bytes of plaintext; true, and the direction Done, once the bytes before
    /// a STARTTLS hello pass MAX_PLAINTEXT.
    fn count_plaintext(&mut self, n: usize) -> bool {
        self.plaintext_seen += n;
        if self.plaintext_seen > MAX_PLAINTEXT {
            self.state = State::Done;
            return true;
        }
        false
    }

    /// The end of the first literal announcement in plaintext `data[pos..]` (just after its
    /// "\n"; its size goes to `literal_size`), or None with the announcement the chunk ends in,
    /// if any, kept in `literal_part` and `literal_size` for the next chunk. The same automaton
    /// as the reference's regular expressions, a byte at a time.
    fn literal_announced(&mut self, data: &[u8], pos: usize) -> Option<usize> {
        let (mut part, mut size) = (self.literal_part, self.literal_size);
        for (i, &b) in data.iter().enumerate().skip(pos) {
            part = match (part, b) {
                (_, b'{') => {
                    size = 0;
                    LiteralPart::Open
                }
                (LiteralPart::Open | LiteralPart::Digits, b'0'..=b'9') => {
                    size = (size * 10 + usize::from(b - b'0')).min(LITERAL_CAP);
                    LiteralPart::Digits
                }
                (LiteralPart::Digits, b'+' | b'-') => LiteralPart::Sign,
                (LiteralPart::Digits | LiteralPart::Sign, b'}') => LiteralPart::Close,
                (LiteralPart::Close, b'\r') => LiteralPart::Cr,
                (LiteralPart::Close | LiteralPart::Cr, b'\n') => {
                    self.literal_part = LiteralPart::None;
                    self.literal_size = size;
                    return Some(i + 1);
                }
                _ => LiteralPart::None,
            };
        }
        self.literal_part = part;
        self.literal_size = size;
        None
    }

    /// Judge the stream's first bytes (`data` holds all of them so far) once there are enough
    /// of them, whatever the segment sizes: Some(0) to go on reading them, None to wait, or
    /// Some(end) when the direction is done.
    #[cold] // once per stream: kept out of `detect`, which runs for every plaintext chunk
    fn detect_start(&mut self, data: &[u8]) -> Option<usize> {
        let end = data.len();
        let needed = if data[0] == CONTENT_HANDSHAKE {
            6 // the record header and the handshake type
        } else if may_be_plain_warning_alert(data) {
            12 // the alert record and the next record's header and handshake type
        } else {
            5 // a record header, or the start of an SSLv2 hello
        };
        if end < needed {
            self.pending = data.to_vec();
            return None;
        }
        self.at_start = false;
        if is_handshake_header(data, 0) {
            self.state = State::Header;
            return Some(0);
        }
        if may_be_plain_warning_alert(data) && is_handshake_header(data, 7) {
            // A server that does not know the SNI name may send a warning alert
            // (unrecognized_name) before its ServerHello: the hello follows in the next record.
            self.state = State::Header;
            return Some(0);
        }
        let midstream = matches!(
            data[0],
            CONTENT_CCS | CONTENT_ALERT | CONTENT_APPLICATION_DATA | CONTENT_HEARTBEAT
        ) && data[1] == 3
            && data[2] <= 4;
        if midstream || is_sslv2_client_hello(data) {
            // Joined an established TLS connection (or an SSLv2-framed hello, which has
            // nothing to fingerprint): no hello to come in this direction.
            self.state = State::Done;
            return Some(end);
        }
        // Plaintext, which `detect` reads from here on.
        Some(0)
    }

    fn header(&mut self, data: &[u8], pos: usize, out: &mut Vec<StreamItem>) -> usize {
        let ctype = data[pos];
        let length = ((data[pos + 3] as usize) << 8) | data[pos + 4] as usize;
        if !((CONTENT_CCS..=CONTENT_HEARTBEAT).contains(&ctype) && data[pos + 1] == 3)
            || length > MAX_RECORD_LENGTH
        {
            out.push(StreamItem::Problem("bad_record_header"));
            self.state = State::Done;
            return data.len();
        }
        if ctype == CONTENT_APPLICATION_DATA {
            self.state = State::Done;
            return data.len();
        }
        if ctype == CONTENT_CCS {
            self.after_ccs = true;
        }
        if !self.hs_buf.is_empty() {
            self.msg_starts_record = false; // the buffered message continues in a new record
        }
        self.record_type = ctype;
        self.record_length = length;
        self.record_left = length;
        self.state = if length > 0 { State::Body } else { State::Header };
        pos + 5
    }

    fn handshake(&mut self, chunk: &[u8], out: &mut Vec<StreamItem>) {
        let mut chunk = chunk;
        if self.hs_skip > 0 {
            if chunk.len() <= self.hs_skip {
                self.hs_skip -= chunk.len();
                return;
            }
            chunk = &chunk[self.hs_skip..];
            self.hs_skip = 0;
        }
        if self.hs_buf.is_empty() {
            self.msg_starts_record = self.record_left == self.record_length;
        }
        let mut message_starts_record = self.msg_starts_record;
        self.hs_buf.extend_from_slice(chunk);
        // Consumed prefix of hs_buf, dropped once at the end instead of per message.
        let mut at = 0;
        let result = loop {
            let buf = &self.hs_buf[at..];
            if buf.len() < 4 {
                break false;
            }
            if self.after_ccs && buf.len() < 5 {
                break false; // decide on a post-CCS message once its version's first byte is here
            }
            let msg_type = buf[0];
            let length = ((buf[1] as usize) << 16) | ((buf[2] as usize) << 8) | buf[3] as usize;
            let is_hello = msg_type == HANDSHAKE_CLIENT_HELLO || msg_type == HANDSHAKE_SERVER_HELLO;
            if self.after_ccs
                && !(is_hello
                    && message_starts_record
                    && length + 4 == self.record_length
                    && buf[4] == 3)
            {
                // Encrypted Finished after CCS: nothing readable follows.
                self.state = State::Done;
                break true;
            }
            self.after_ccs = false;
            if !is_hello {
                // Certificates and friends: skipped without buffering them.
                if buf.len() >= 4 + length {
                    at += 4 + length;
                    message_starts_record = false;
                    self.msg_starts_record = false;
                    continue;
                }
                self.hs_skip = 4 + length - buf.len();
                break true;
            }
            if length > MAX_HELLO_LENGTH {
                out.push(StreamItem::Problem("oversized_hello"));
                self.state = State::Done;
                break true;
            }
            if buf.len() < 4 + length {
                break false;
            }
            out.push(StreamItem::Hello(msg_type, buf[4..4 + length].to_vec()));
            at += 4 + length;
            message_starts_record = false;
            self.msg_starts_record = false;
            self.hellos += 1;
            if self.hellos >= MAX_HELLOS {
                self.state = State::Done;
                break true;
            }
        };
        if result {
            self.hs_buf.clear();
        } else {
            self.hs_buf.drain(..at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ctype: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![ctype, 3, 1];
        r.extend((payload.len() as u16).to_be_bytes());
        r.extend(payload);
        r
    }

    fn hello_msg(t: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![t, 0, 0, body.len() as u8];
        m.extend(body);
        m
    }

    #[test]
    fn starttls_hello_split_byte_by_byte() {
        let mut stream = b"a001 STARTTLS\r\na001 OK Begin TLS\r\n".to_vec();
        stream.extend(record(22, &hello_msg(1, b"BODY")));
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        for b in &stream {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, vec![StreamItem::Hello(1, b"BODY".to_vec())]);
    }

    #[test]
    fn application_data_in_one_byte_pieces_at_start_is_done() {
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        let mut stream = record(23, b"ciphertext\n");
        stream.extend(record(22, &hello_msg(1, b"BODY")));
        for b in &stream {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        assert!(p.done() && out.is_empty());
    }

    #[test]
    fn chunk_starting_with_a_header_inside_a_line_is_plaintext() {
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        p.feed(b"a001 LOGIN ", &mut out);
        p.feed(&record(22, &hello_msg(1, b"BODY")), &mut out);
        assert!(out.is_empty() && !p.done());
        p.feed(b"\r\n", &mut out);
        p.feed(&record(22, &hello_msg(1, b"BODY")), &mut out);
        assert_eq!(out, vec![StreamItem::Hello(1, b"BODY".to_vec())]);
    }

    #[test]
    fn hello_after_a_binary_prologue_or_an_xmpp_tag_in_its_own_chunk() {
        let hello = record(22, &hello_msg(1, b"BODY"));
        for prologue in [&b"\x04\x01\x01\xbb\x5d\xb8\xd8\x77\x00"[..], b"<starttls/>"] {
            let mut p = TlsStreamParser::default();
            let mut out = Vec::new();
            p.feed(prologue, &mut out);
            p.feed(&hello, &mut out);
            assert_eq!(out, vec![StreamItem::Hello(1, b"BODY".to_vec())]);
        }
    }

    #[test]
    fn sslv2_hello_behind_a_one_byte_chunk_is_done() {
        let mut v2 = vec![0x80, 0x1f, 1, 3, 1, 0, 3, 0, 0, 0, 16, 0, 0, 4];
        v2.extend([0; 16]);
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        p.feed(&v2[..1], &mut out);
        p.feed(&v2[1..], &mut out);
        assert!(p.done() && out.is_empty());
    }

    /// An IMAP dialogue whose command before STARTTLS sends a literal (announced by `announce`,
    /// e.g. "{N}\r\n") holding a hello record of its own, then the real STARTTLS hello.
    fn literal_dialogue(announce: &str) -> (Vec<u8>, Vec<u8>) {
        let fake = record(22, &hello_msg(1, b"FAKE"));
        let real = record(22, &hello_msg(1, b"REAL"));
        let mut stream = b"a001 ID (\"x\" ".to_vec();
        stream.extend(announce.replace('N', &fake.len().to_string()).bytes());
        stream.extend(&fake);
        stream.extend(b")\r\na002 STARTTLS\r\n");
        stream.extend(&real);
        (stream, b"REAL".to_vec())
    }

    fn feed_chunks(chunks: &[&[u8]]) -> (Vec<StreamItem>, TlsStreamParser) {
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        (out, p)
    }

    #[test]
    fn literal_holding_a_hello_is_plaintext_wherever_segments_split() {
        for announce in ["{N}\r\n", "{N+}\r\n", "{N-}\r\n", "{N}\n", "{000N+}\r\n"] {
            let (stream, real) = literal_dialogue(announce);
            let want = vec![StreamItem::Hello(1, real)];
            assert_eq!(feed_chunks(&[&stream]).0, want, "{announce:?} whole");
            for i in 0..=stream.len() {
                let (a, b) = stream.split_at(i);
                assert_eq!(feed_chunks(&[a, b]).0, want, "{announce:?} split at {i}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(feed_chunks(&bytes).0, want, "{announce:?} byte by byte");
        }
    }

    #[test]
    fn an_announcement_inside_a_literal_is_literal_data() {
        // The 5-byte literal "{9}\r\n" announces nothing: the hello after the line's CRLF is
        // the real one.
        let mut stream = b"a001 ID {5}\r\n{9}\r\n)\r\n".to_vec();
        stream.extend(record(22, &hello_msg(1, b"REAL")));
        assert_eq!(feed_chunks(&[&stream]).0, vec![StreamItem::Hello(1, b"REAL".to_vec())]);
    }

    #[test]
    fn the_line_goes_on_after_an_empty_literal() {
        let hello = record(22, &hello_msg(1, b"BODY"));
        let (out, p) = feed_chunks(&[b"a001 ID {0+}\r\n", &hello]);
        assert!(out.is_empty() && !p.done());
        let (out, _) = feed_chunks(&[b"a001 ID {0+}\r\n", &hello, b"\r\n", &hello]);
        assert_eq!(out, vec![StreamItem::Hello(1, b"BODY".to_vec())]);
    }

    #[test]
    fn a_huge_literal_spends_the_plaintext_budget_without_allocating() {
        let hello = record(22, &hello_msg(1, b"BODY"));
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        p.feed(b"a001 ID {", &mut out);
        for _ in 0..1000 {
            p.feed(b"99999999999999999999", &mut out);
        }
        p.feed(b"}\r\n", &mut out);
        p.feed(&hello, &mut out);
        assert!(out.is_empty() && !p.done());
        assert!(p.pending.capacity() < 64 && p.literal_size == LITERAL_CAP);
        let filler = vec![b'x'; MAX_PLAINTEXT];
        p.feed(&filler, &mut out);
        assert!(out.is_empty() && p.done());
    }

    #[test]
    fn application_data_at_start_is_done() {
        let mut p = TlsStreamParser::default();
        let mut out = Vec::new();
        p.feed(&record(23, b"xx"), &mut out);
        assert!(p.done() && out.is_empty());
    }
}

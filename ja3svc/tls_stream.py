"""One direction of a TCP stream, seen as TLS records: in-order bytes in, hello messages out.

The machine is fed the stream's bytes in order (whatever the segment boundaries) and returns
the ClientHello/ServerHello handshake messages it completes. It never raises on bad input; it
reports a problem and stops looking at that direction.

States and what moves between them:

    DETECT   start of stream, or plaintext (STARTTLS): a TLS handshake record header must start
             the stream (possibly after one plaintext warning alert), or in plaintext follow a
             newline, or start a chunk that does not continue a line of text (after a binary
             prologue such as SOCKS, or XMPP's <proceed/>) -> HEADER; TLS records of another
             type or an SSLv2 hello at the start (capture began mid-connection) -> DONE; too
             much plaintext without a hello -> DONE. The stream's start is judged once its
             first record header is whole (5 bytes; 6 to see a handshake type, 12 after a
             possible warning alert), however small the first segments are; a segment of a
             text protocol that starts with 16 03 inside a line (an argument of a command
             before STARTTLS) is plaintext. A line ending in an IMAP literal announcement,
             "{N}", "{N+}" or "{N-}" before CRLF (or a bare LF), is followed by N bytes of
             literal data that are plaintext whatever they hold, the line going on after them
             (see _LITERAL below).
    HEADER   expecting a 5-byte record header (kept across chunks) -> BODY; an invalid header
             -> DONE with problem "bad_record_header"; application data (23) -> DONE, because
             everything after it is encrypted.
    BODY     consuming a record's payload; handshake payload is reassembled into messages
             (a message may span records, a record may hold several) -> HEADER when consumed.
    DONE     nothing more to find in this direction.

After a ChangeCipherSpec the handshake is normally encrypted (TLS 1.2), but after a TLS 1.3
HelloRetryRequest a plaintext hello follows a compatibility CCS. A post-CCS handshake record is
taken as a hello only if it is exactly one well-formed hello header filling the record;
anything else there ends the direction quietly.
"""

from __future__ import annotations

import re

DETECT, HEADER, BODY, DONE = range(4)

CONTENT_CCS = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_HEARTBEAT = 24

HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2

# A TLSCiphertext fragment is at most 2^14 + 2048 bytes (RFC 5246, 6.2.3).
MAX_RECORD_LENGTH = 16384 + 2048
# Real hellos are a few KB; a larger "hello" is junk or an attack on our memory.
MAX_HELLO_LENGTH = 65536
# Plaintext (STARTTLS dialogue, HTTP, ...) watched for a hello before giving up on a direction.
MAX_PLAINTEXT = 32768
# Hellos per direction: two after a HelloRetryRequest; more is not a real handshake.
MAX_HELLOS = 4

_TLS_MIDSTREAM_TYPES = (CONTENT_CCS, CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HEARTBEAT)

# Emitted items: (1, body) ClientHello, (2, body) ServerHello, (0, reason) a problem.
StreamItem = tuple[int, bytes | str]


def _is_handshake_header(data: bytes, i: int) -> bool:
    """Whether ``data[i:]`` starts like a TLS handshake record carrying a hello.

    Needs 5 bytes; if a sixth is there it must be a hello type, which is what makes a plaintext
    0x16 0x03 by chance unlikely to pass.
    """
    if len(data) < i + 5 or data[i] != CONTENT_HANDSHAKE or data[i + 1] != 3 or data[i + 2] > 4:
        return False
    length = (data[i + 3] << 8) | data[i + 4]
    if not 0 < length <= MAX_RECORD_LENGTH:
        return False
    return len(data) <= i + 5 or data[i + 5] in (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO)


def _may_be_plain_warning_alert(data: bytes) -> bool:
    """Whether the stream starts like an unencrypted 2-byte alert record of level warning, as
    far as its first 6 bytes are here (at least one).

    Encrypted alerts (after the handshake) are longer than 2 bytes or sent as application data,
    so this only matches an alert sent during the handshake.
    """
    want = (CONTENT_ALERT, 3, -1, 0, 2, 1)  # -1: the minor version, 0-4
    return bool(data) and all(
        b <= 4 if w < 0 else b == w for b, w in zip(data[:6], want, strict=False)
    )


def _is_sslv2_client_hello(data: bytes) -> bool:
    # 2-byte header with the high bit set, msg type 1, then a version 0x0002 or 0x03xx.
    return (
        len(data) >= 5
        and data[0] & 0x80 != 0
        and data[2] == 1
        and (data[3] == 3 or (data[3] == 0 and data[4] == 2))
    )


_RUN_EMPTY, _RUN_TEXT, _RUN_BINARY = range(3)
# Bytes of a line of text: printable ASCII, tab and CR. (Bytes >= 0x80 count as binary: a
# binary prologue such as a SOCKS reply can hold a 0x0a followed by only such bytes.)
_TEXT_BYTES = bytes([9, 13, *range(0x20, 0x7F)])


def _text_run_after(run: int, data: bytes, pos: int) -> int:
    """What the bytes since the last line break are after plaintext ``data[pos:]``: nothing,
    text (a text protocol's line in progress: a segment boundary there is no place for a
    hello), or binary (a binary prologue such as SOCKS, which may end at a segment boundary).

    A line breaks at "\n", and at ">" for XMPP, whose <proceed/> ends without one.
    """
    brk = max(data.rfind(b"\n", pos), data.rfind(b">", pos))
    if brk >= 0:
        run, pos = _RUN_EMPTY, brk + 1
    if pos == len(data) or run == _RUN_BINARY:
        return run
    return _RUN_BINARY if data[pos:].translate(None, _TEXT_BYTES) else _RUN_TEXT


# IMAP literals (RFC 9051 4.3; LITERAL+ and LITERAL-, RFC 7888; ManageSieve and ACAP use the
# same syntax): a line that ends with "{N}", "{N+}" or "{N-}" and CRLF is followed by N bytes of
# literal data, after which the command line goes on. Those bytes are plaintext whatever they
# hold: a client (or an attacker) can send a whole hello record there before STARTTLS, and
# tshark's IMAP dissector takes it for IMAP. A bare LF counts as CRLF, and leading zeros are
# allowed: Dovecot 2.3 reads "{3}\n" and "{003+}" as literals (seen on this project's test
# instance), so an attacker could use either form.
#
# The rule can only take hello candidates away, never add one: a line of another protocol that
# happens to end like an announcement (SMTP, POP3, XMPP, LDAP's BER, a binary prologue) hides
# at most the next N bytes of its own direction, and the STARTTLS hello of a client or server
# follows that side's own command or answer line (STARTTLS, OK, 220, <proceed/>, an LDAP
# extended response), none of which ends with "}". A literal the server refuses is not sent:
# a synchronising one it answers with NO or BAD instead of the "+" continuation (on the other
# side, which this parser does not see), or "{N-}", which Dovecot 2.3 answers "BAD Invalid
# literal size". Up to N bytes of what follows are then skipped as if they were literal data,
# so a client can hide its own STARTTLS hello (if N reaches past the newline of its STARTTLS
# command); but no more than it already can by sending MAX_PLAINTEXT bytes of commands, as the
# skipped bytes count against the same MAX_PLAINTEXT budget, and never another connection's.
# N is never used to allocate: only to count, capped at _LITERAL_CAP (any larger literal
# exhausts that budget anyway).
_LITERAL_CAP = MAX_PLAINTEXT + 1
_LITERAL = re.compile(rb"\{([0-9]+)[+-]?\}\r?\n")
# An announcement cut by the end of a chunk: "{", "{12", "{12+", "{12}", "{12+}\r", ...
_LITERAL_PART = re.compile(rb"\{([0-9]*)([+-]?)(\}?)(\r?)\Z")
_DIGITS = re.compile(rb"[0-9]+")
# Where a partial announcement stands: nothing, after "{", after digits, after the sign, after
# "}", after "}\r".
_LIT_NONE, _LIT_OPEN, _LIT_DIGITS, _LIT_SIGN, _LIT_CLOSE, _LIT_CR = range(6)


def _more_digits(size: int, digits: bytes) -> int:
    """A literal size so far followed by more decimal ``digits``, at most _LITERAL_CAP (Python
    refuses int() of a very long string, and N may be any length)."""
    digits = (b"%d" % size + digits).lstrip(b"0")
    if len(digits) > len(str(_LITERAL_CAP)):
        return _LITERAL_CAP
    return min(int(digits or b"0"), _LITERAL_CAP)


class TlsStreamParser:
    """TLS record and handshake reassembly for one direction of one TCP stream."""

    __slots__ = (
        "_after_ccs",
        "_at_start",
        "_hs_buf",
        "_hs_skip",
        "_literal_left",
        "_literal_part",
        "_literal_size",
        "_msg_starts_record",
        "_pending",
        "_plaintext_seen",
        "_record_left",
        "_record_length",
        "_record_type",
        "_text_run",
        "hellos",
        "started",
        "state",
    )

    def __init__(self) -> None:
        self.state = DETECT
        self.started = False  # any byte seen yet
        self._at_start = True  # the stream's first bytes not judged yet (TLS, plaintext, ...)
        # In plaintext: what the bytes since the last line break are (_RUN_EMPTY, _RUN_TEXT,
        # _RUN_BINARY).
        self._text_run = _RUN_EMPTY
        # In plaintext: bytes of an IMAP literal still to come, and an announcement cut by the
        # end of the last chunk (_LIT_* state, and its size so far).
        self._literal_left = 0
        self._literal_part = _LIT_NONE
        self._literal_size = 0
        self.hellos = 0
        self._pending = b""  # an incomplete record header (HEADER) or stream start (DETECT)
        self._record_type = 0
        self._record_length = 0
        self._record_left = 0
        self._hs_buf = bytearray()
        self._hs_skip = 0
        self._after_ccs = False
        # Whether the handshake message being buffered began at the first byte of its record
        # (kept across feeds, so a post-CCS hello whose header arrives in pieces still counts).
        self._msg_starts_record = False
        self._plaintext_seen = 0

    @property
    def done(self) -> bool:
        return self.state == DONE

    def feed(self, data: bytes) -> list[StreamItem]:
        """Consume the next in-order bytes of the stream; return completed hellos and problems."""
        out: list[StreamItem] = []
        if self.state == DONE or not data:
            return out
        if self._pending:
            data = self._pending + data
            self._pending = b""
        pos = 0
        end = len(data)
        while pos < end:
            state = self.state
            if state == BODY:
                take = min(self._record_left, end - pos)
                if self._record_type == CONTENT_HANDSHAKE:
                    self._handshake(data[pos : pos + take], out)
                pos += take
                self._record_left -= take
                if self._record_left == 0 and self.state == BODY:
                    self.state = HEADER
            elif state == HEADER:
                if end - pos < 5:
                    self._pending = data[pos:]
                    break
                pos = self._header(data, pos, out)
            elif state == DETECT:
                pos = self._detect(data, pos)
                if pos < 0:
                    break
            else:
                break
        return out

    def _detect(self, data: bytes, pos: int) -> int:
        """Find where TLS starts in this chunk; return its offset, or -1 to wait for more."""
        end = len(data)
        self.started = True
        if self._at_start:
            return self._detect_start(data)
        if self._literal_left:
            # Literal data: plaintext, and the line it belongs to goes on after it (_text_run
            # is already _RUN_TEXT), so no hello starts right after it either.
            take = min(self._literal_left, end - pos)
            self._literal_left -= take
            return end if self._count_plaintext(take) else pos + take
        if (
            self._text_run != _RUN_TEXT
            and end - pos < 6
            and data[pos] == CONTENT_HANDSHAKE
            and self._plaintext_seen < MAX_PLAINTEXT
        ):
            # A record header split before its sixth byte: decide once the first handshake
            # byte is here; the pending bytes count as plaintext so a stream of tiny 0x16 chunks
            # cannot keep this forever.
            self._pending = data[pos:]
            self._plaintext_seen += end - pos
            return -1
        if self._text_run != _RUN_TEXT and _is_handshake_header(data, pos):
            # A chunk that starts a line, or follows a binary prologue (a SOCKS reply, a
            # PostgreSQL SSLRequest, ...) after which the client starts TLS with a new write.
            self.state = HEADER
            return pos
        # Plaintext up to the end of the chunk, or of the first line that announces a literal.
        stop = self._literal_announced(data, pos)
        limit = end if stop < 0 else stop
        # A STARTTLS hello starts right after the line (the client's command, the server's
        # answer) that ended in "\n". Inside a line of text it is never a hello, wherever a
        # segment happens to end.
        i = data.find(b"\x16\x03", pos + 1, limit)
        while i != -1:
            if data[i - 1] == 0x0A and end - i >= 5 and _is_handshake_header(data, i):
                self.state = HEADER
                return i
            i = data.find(b"\x16\x03", i + 1, limit)
        if stop >= 0:
            self._literal_left = self._literal_size
            self._text_run = _RUN_TEXT  # the announcing line goes on after the literal
            return end if self._count_plaintext(stop - pos) else stop
        # The chunk may end inside a record header that follows a newline (reassembled TCP can
        # join the last plaintext line and the start of the hello): keep it for the next chunk.
        for t in range(max(pos + 1, end - 4), end):
            if (
                data[t - 1] == 0x0A
                and data[t] == CONTENT_HANDSHAKE
                and (t + 1 == end or data[t + 1] == 3)
                and self._plaintext_seen < MAX_PLAINTEXT
            ):
                self._pending = data[t:]
                self._plaintext_seen += t - pos
                self._text_run = _RUN_EMPTY
                self._literal_part = _LIT_NONE  # as it stands after the newline before t
                return -1
        self._text_run = _text_run_after(self._text_run, data, pos)
        self._count_plaintext(end - pos)
        return end

    def _count_plaintext(self, n: int) -> bool:
        """Count ``n`` more bytes of plaintext; True, and the direction DONE, once the bytes
        before a STARTTLS hello pass MAX_PLAINTEXT."""
        self._plaintext_seen += n
        if self._plaintext_seen > MAX_PLAINTEXT:
            self.state = DONE
            return True
        return False

    def _literal_announced(self, data: bytes, pos: int) -> int:
        """The end of the first literal announcement in plaintext ``data[pos:]`` (just after its
        "\n"; its size goes to _literal_size), or -1 with the announcement the chunk ends in,
        if any, kept in _literal_part and _literal_size for the next chunk."""
        end = len(data)
        part, size = self._literal_part, self._literal_size
        i = pos
        # An announcement begun in an earlier chunk: a few bytes decide it (digits in bulk).
        while part != _LIT_NONE and i < end:
            b = data[i]
            if 0x30 <= b <= 0x39 and part in (_LIT_OPEN, _LIT_DIGITS):
                m = _DIGITS.match(data, i)
                assert m is not None
                size = _more_digits(size, m.group())
                part, i = _LIT_DIGITS, m.end()
                continue
            i += 1
            if b == 0x7B:  # "{" starts another
                part, size = _LIT_OPEN, 0
            elif b in (0x2B, 0x2D) and part == _LIT_DIGITS:
                part = _LIT_SIGN
            elif b == 0x7D and part in (_LIT_DIGITS, _LIT_SIGN):
                part = _LIT_CLOSE
            elif b == 0x0D and part == _LIT_CLOSE:
                part = _LIT_CR
            elif b == 0x0A and part in (_LIT_CLOSE, _LIT_CR):
                self._literal_part, self._literal_size = _LIT_NONE, size
                return i
            else:
                part = _LIT_NONE
        if part == _LIT_NONE:
            m = _LITERAL.search(data, i)
            if m is not None:
                self._literal_part, self._literal_size = _LIT_NONE, _more_digits(0, m[1])
                return m.end()
            m = _LITERAL_PART.search(data, max(i, data.rfind(b"\n", i) + 1))
            if m is not None:
                digits, sign, close, cr = m.groups()
                size = _more_digits(0, digits)
                if not digits:
                    part = _LIT_NONE if sign or close or cr else _LIT_OPEN
                elif close:
                    part = _LIT_CR if cr else _LIT_CLOSE
                elif cr:
                    part = _LIT_NONE
                else:
                    part = _LIT_SIGN if sign else _LIT_DIGITS
        self._literal_part, self._literal_size = part, size
        return -1

    def _detect_start(self, data: bytes) -> int:
        """Judge the stream's first bytes (``data`` holds all of them so far), once there are
        enough of them whatever the segment sizes; return 0 to go on reading them, -1 to wait,
        or the end of ``data`` when the direction is done."""
        end = len(data)
        if data[0] == CONTENT_HANDSHAKE:
            needed = 6  # the record header and the handshake type
        elif _may_be_plain_warning_alert(data):
            needed = 12  # the alert record and the next record's header and handshake type
        else:
            needed = 5  # a record header, or the start of an SSLv2 hello
        if end < needed:
            self._pending = data
            return -1
        self._at_start = False
        if _is_handshake_header(data, 0):
            self.state = HEADER
            return 0
        if _may_be_plain_warning_alert(data) and _is_handshake_header(data, 7):
            # A server that does not know the SNI name may send a warning alert
            # (unrecognized_name) before its ServerHello: the hello follows in the next record.
            self.state = HEADER
            return 0
        if (
            data[0] in _TLS_MIDSTREAM_TYPES and data[1] == 3 and data[2] <= 4
        ) or _is_sslv2_client_hello(data):
            # Joined an established TLS connection (or an SSLv2-framed hello, which has nothing
            # to fingerprint): no hello to come in this direction.
            self.state = DONE
            return end
        # Plaintext (a STARTTLS protocol's greeting or first command, or anything else), which
        # _detect reads from here on.
        return 0

    def _header(self, data: bytes, pos: int, out: list[StreamItem]) -> int:
        ctype = data[pos]
        length = (data[pos + 3] << 8) | data[pos + 4]
        if not (CONTENT_CCS <= ctype <= CONTENT_HEARTBEAT and data[pos + 1] == 3) or (
            length > MAX_RECORD_LENGTH
        ):
            out.append((0, "bad_record_header"))
            self.state = DONE
            return len(data)
        if ctype == CONTENT_APPLICATION_DATA:
            self.state = DONE
            return len(data)
        if ctype == CONTENT_CCS:
            self._after_ccs = True
        if self._hs_buf:
            self._msg_starts_record = False  # the buffered message continues in a new record
        self._record_type = ctype
        self._record_length = length
        self._record_left = length
        self.state = BODY if length else HEADER
        return pos + 5

    def _handshake(self, chunk: bytes, out: list[StreamItem]) -> None:
        if self._hs_skip:
            if len(chunk) <= self._hs_skip:
                self._hs_skip -= len(chunk)
                return
            chunk = chunk[self._hs_skip :]
            self._hs_skip = 0
        buf = self._hs_buf
        if not buf:
            self._msg_starts_record = self._record_left == self._record_length
        message_starts_record = self._msg_starts_record
        buf += chunk
        while len(buf) >= 4:
            if self._after_ccs and len(buf) < 5:
                return  # decide on a post-CCS message once its version's first byte is here
            msg_type = buf[0]
            length = (buf[1] << 16) | (buf[2] << 8) | buf[3]
            if self._after_ccs and not (
                msg_type in (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO)
                and message_starts_record
                and length + 4 == self._record_length
                and buf[4] == 3
            ):
                # Encrypted Finished after CCS: nothing readable follows.
                self.state = DONE
                buf.clear()
                return
            # Accepted as a post-HelloRetryRequest hello; its remaining bytes may come later.
            self._after_ccs = False
            if msg_type not in (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO):
                # Certificates and friends: skip without buffering them.
                if len(buf) >= 4 + length:
                    del buf[: 4 + length]
                    message_starts_record = self._msg_starts_record = False
                    continue
                self._hs_skip = 4 + length - len(buf)
                buf.clear()
                return
            if length > MAX_HELLO_LENGTH:
                out.append((0, "oversized_hello"))
                self.state = DONE
                buf.clear()
                return
            if len(buf) < 4 + length:
                return
            out.append((msg_type, bytes(buf[4 : 4 + length])))
            del buf[: 4 + length]
            message_starts_record = self._msg_starts_record = False
            self.hellos += 1
            if self.hellos >= MAX_HELLOS:
                self.state = DONE
                buf.clear()
                return

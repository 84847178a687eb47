"""Frames in, fingerprinted hellos out: link layer, IP, tunnels and TCP on the hot path.

``FingerprintEngine.feed_frame`` is called once per captured packet, so the common cases
(Ethernet or cooked capture, IPv4/IPv6, TCP, a flow that is already finished) are decoded
inline with integer offsets into the frame instead of a header object per layer. Everything the
engine gives up on is counted in ``stats`` under a reason; nothing raises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ja3svc.addresses import format_address
from ja3svc.dovecot import DEFAULT_PROFILE, canonical_profile
from ja3svc.dtls import looks_like_dtls_client_hello, looks_like_dtls_server_hello
from ja3svc.flow_table import FlowDirection, FlowTable
from ja3svc.hello import (
    ClientHello,
    HelloError,
    ServerHello,
    parse_client_hello,
    parse_server_hello,
)
from ja3svc.quic import looks_like_quic_initial
from ja3svc.record import HelloRecord, record_of
from ja3svc.tls_stream import HANDSHAKE_CLIENT_HELLO

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_12 = 12
LINKTYPE_RAW_14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
ETH_MPLS = (0x8847, 0x8848)
ETH_PPPOE_SESSION = 0x8864
ETH_TRANSPARENT_BRIDGING = 0x6558  # Ethernet inside GRE / GENEVE
ETH_ERSPAN_II = 0x88BE
ETH_ERSPAN_III = 0x22EB

PROTO_IPIP = 4  # IPv4 in IP (4in4, 4in6)
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41  # IPv6 in IP (6in4 "sit", 6in6)
PROTO_GRE = 47
IPV6_EXTENSION_HEADERS = (0, 43, 60, 135, 139, 140)  # skipped by their length field
IPV6_FRAGMENT = 44
IPV6_AH = 51

UDP_VXLAN = 4789
UDP_GENEVE = 6081
UDP_GTPU = 2152  # GTP-U (3GPP TS 29.281), mobile core user plane
UDP_CAPWAP_DATA = 5247  # CAPWAP data channel (RFC 5415): access point <-> wireless controller

PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# Ethernet pads frames to 60 bytes: a bare IPv4 ACK without TCP options (54) gets 6 bytes.
MAX_ACK_PADDING = 6

MAX_TUNNEL_DEPTH = 4
# A QUIC/DTLS handshake is over within a few datagrams; after this many a session is ignored.
MAX_UDP_HANDSHAKE_DATAGRAMS = 64

# NULL/LOOP address family values meaning IPv6 on the various BSDs and macOS.
_BSD_AF_INET6 = (10, 24, 28, 30)

_NOTHING: tuple[HelloRecord, ...] = ()


class FingerprintEngine:
    """Stateful: feed every frame of a capture in order; collect ``HelloRecord`` objects.

    ``dovecot_profile`` picks the OpenSSL extension set of the Dovecot JA3 in client records
    (see ``ja3svc.dovecot.OPENSSL_PROFILES``).
    """

    def __init__(
        self, flow_table: FlowTable | None = None, *, dovecot_profile: str = DEFAULT_PROFILE
    ) -> None:
        self.dovecot_profile = canonical_profile(dovecot_profile)  # ValueError if unknown
        self.flows = flow_table if flow_table is not None else FlowTable()
        self.stats: Counter[str] = Counter()
        self._directions_get = self.flows.directions.get

    # --- link layer ---------------------------------------------------------------------

    def feed_frame(
        self, ts: float, linktype: int, frame: bytes, wire_length: int = 0
    ) -> Sequence[HelloRecord]:
        try:
            if linktype == LINKTYPE_ETHERNET:
                # Fast path for the bulk of any capture: a packet of a finished flow, or a bare
                # ACK of a known flow, over plain IPv4 (no options) or IPv6 (no extension
                # headers). Addresses and ports are contiguous there, so the flow key is one
                # slice. Finished flows do not refresh their idle time: a long transfer may be
                # aged out and is then re-learnt from its next packet, which is cheap.
                if frame[12] == 8 and frame[13] == 0 and frame[14] == 0x45 and frame[23] == 6:
                    key, tcp = frame[26:38], 34
                    payload = (frame[16] << 8 | frame[17]) - 20
                elif frame[12] == 0x86 and frame[13] == 0xDD and frame[20] == 6:
                    key, tcp = frame[22:58], 54
                    payload = frame[18] << 8 | frame[19]
                else:
                    return self._ethernet(ts, frame, 0, 0)
                d = self._directions_get(key)
                if d is not None:
                    flags = frame[tcp + 13]
                    if d.done:
                        if flags & (TCP_RST | TCP_FIN):
                            self._finish(d, flags)
                        return _NOTHING
                    if not flags & 7 and payload == (frame[tcp + 12] >> 4) * 4:
                        return _NOTHING  # a bare ACK
                return self._ethernet(ts, frame, 0, 0)
            if linktype == LINKTYPE_LINUX_SLL2:
                return self._ethertype(ts, frame, (frame[0] << 8) | frame[1], 20, 0)
            if linktype == LINKTYPE_LINUX_SLL:
                return self._ethertype(ts, frame, (frame[14] << 8) | frame[15], 16, 0)
            if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14):
                return self._ip_by_version(ts, frame, 0, 0)
            if linktype == LINKTYPE_IPV4 or linktype == LINKTYPE_IPV6:
                return self._ip_by_version(ts, frame, 0, 0)
            if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
                family = int.from_bytes(frame[0:4], "little")
                if family > 0xFFFF:  # written in the other byte order
                    family = int.from_bytes(frame[0:4], "big")
                if family == 2:
                    return self._ipv4(ts, frame, 4, 0)
                if family in _BSD_AF_INET6:
                    return self._ipv6(ts, frame, 4, 0)
                self.stats["skipped.non_ip"] += 1
                return _NOTHING
            if linktype == LINKTYPE_PPP:
                return self._ppp(ts, frame)
        except IndexError:
            self.stats["malformed.short_frame"] += 1
            return _NOTHING
        self.stats[f"skipped.linktype_{linktype}"] += 1
        return _NOTHING

    def _ppp(self, ts: float, frame: bytes) -> Sequence[HelloRecord]:
        # RFC 1662 framing: the FF 03 address/control pair may be omitted (ACFC), and a protocol
        # number with its low bit set in the first byte is one byte long (PFC, RFC 1661).
        off = 2 if frame[0] == 0xFF and frame[1] == 0x03 else 0
        proto = frame[off]
        if proto & 0x01:
            off += 1
        else:
            proto = (proto << 8) | frame[off + 1]
            off += 2
        if proto == PPP_IPV4:
            return self._ipv4(ts, frame, off, 0)
        if proto == PPP_IPV6:
            return self._ipv6(ts, frame, off, 0)
        self.stats["skipped.non_ip"] += 1
        return _NOTHING

    def _ethernet(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        ethertype = (frame[off + 12] << 8) | frame[off + 13]
        return self._ethertype(ts, frame, ethertype, off + 14, depth)

    def _ethertype(
        self, ts: float, frame: bytes, ethertype: int, off: int, depth: int
    ) -> Sequence[HelloRecord]:
        while ethertype in ETH_VLAN:
            ethertype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        if ethertype == ETH_IPV4:
            return self._ipv4(ts, frame, off, depth)
        if ethertype == ETH_IPV6:
            return self._ipv6(ts, frame, off, depth)
        if ethertype in ETH_MPLS:
            while not frame[off + 2] & 0x01:  # bottom-of-stack bit
                off += 4
            return self._ip_by_version(ts, frame, off + 4, depth)
        if ethertype == ETH_PPPOE_SESSION:
            ppp = (frame[off + 6] << 8) | frame[off + 7]
            if ppp == 0x0021:
                return self._ipv4(ts, frame, off + 8, depth)
            if ppp == 0x0057:
                return self._ipv6(ts, frame, off + 8, depth)
        self.stats["skipped.non_ip"] += 1
        return _NOTHING

    # --- network layer ------------------------------------------------------------------

    def _ip_by_version(
        self, ts: float, frame: bytes, off: int, depth: int
    ) -> Sequence[HelloRecord]:
        version = frame[off] >> 4
        if version == 4:
            return self._ipv4(ts, frame, off, depth)
        if version == 6:
            return self._ipv6(ts, frame, off, depth)
        self.stats["malformed.ip_version"] += 1
        return _NOTHING

    def _ipv4(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        vihl = frame[off]
        ihl = (vihl & 0x0F) * 4
        total = (frame[off + 2] << 8) | frame[off + 3]
        if vihl >> 4 != 4 or ihl < 20 or total < ihl:
            self.stats["malformed.ipv4_header"] += 1
            return _NOTHING
        end = off + total
        if end > len(frame):
            self.stats["skipped.truncated_packet"] += 1
            return _NOTHING
        if (frame[off + 6] & 0x3F) | frame[off + 7]:
            # Fragments are rare for TCP (path MTU discovery sets DF); not reassembled.
            self.stats["skipped.ip_fragment"] += 1
            return _NOTHING
        proto = frame[off + 9]
        l4 = off + ihl
        if proto == PROTO_TCP:
            return self._tcp(ts, frame, l4, end, frame[off + 12 : off + 20], 4)
        return self._other_l4(ts, frame, proto, l4, end, depth, frame[off + 12 : off + 20], 4)

    def _ipv6(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        if frame[off] >> 4 != 6:
            self.stats["malformed.ipv6_header"] += 1
            return _NOTHING
        end = off + 40 + ((frame[off + 4] << 8) | frame[off + 5])
        if end > len(frame):
            self.stats["skipped.truncated_packet"] += 1
            return _NOTHING
        proto = frame[off + 6]
        l4 = off + 40
        for _ in range(8):
            if proto in IPV6_EXTENSION_HEADERS:
                proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
            elif proto == IPV6_FRAGMENT:
                if ((frame[l4 + 2] << 8) | frame[l4 + 3]) & 0xFFF9:  # offset or more-fragments
                    self.stats["skipped.ip_fragment"] += 1
                    return _NOTHING
                proto, l4 = frame[l4], l4 + 8
            elif proto == IPV6_AH:
                proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 2) * 4
            else:
                break
        if l4 > end:
            self.stats["malformed.ipv6_extension"] += 1
            return _NOTHING
        if proto == PROTO_TCP:
            return self._tcp(ts, frame, l4, end, frame[off + 8 : off + 40], 16)
        return self._other_l4(ts, frame, proto, l4, end, depth, frame[off + 8 : off + 40], 16)

    def _other_l4(
        self,
        ts: float,
        frame: bytes,
        proto: int,
        l4: int,
        end: int,
        depth: int,
        addrs: bytes,
        alen: int,
    ) -> Sequence[HelloRecord]:
        if proto == PROTO_UDP and end - l4 >= 8:
            dport = (frame[l4 + 2] << 8) | frame[l4 + 3]
            if depth < MAX_TUNNEL_DEPTH:
                if dport == UDP_VXLAN:
                    return self._ethernet(ts, frame[:end], l4 + 16, depth + 1)
                if dport == UDP_GENEVE:
                    opt_len = (frame[l4 + 8] & 0x3F) * 4
                    inner = (frame[l4 + 10] << 8) | frame[l4 + 11]
                    return self._tunnelled(ts, frame[:end], inner, l4 + 16 + opt_len, depth + 1)
                if dport == UDP_GTPU:
                    return self._gtpu(ts, frame[:end], l4 + 8, depth + 1)
                # The controller answers from 5247 to the access point's own port.
                if dport == UDP_CAPWAP_DATA or (frame[l4] << 8) | frame[l4 + 1] == UDP_CAPWAP_DATA:
                    return self._capwap(ts, frame[:end], l4 + 8, depth + 1)
            return self._udp(ts, frame, l4, end, addrs, alen)
        if depth < MAX_TUNNEL_DEPTH:
            if proto == PROTO_GRE:
                return self._gre(ts, frame, l4, end, depth + 1)
            # The inner packet must lie within the outer one: cut there, so a truncated inner
            # header is counted as such rather than read from the outer packet's trailer.
            if proto == PROTO_IPIP:
                return self._ipv4(ts, frame[:end], l4, depth + 1)
            if proto == PROTO_IPV6:
                return self._ipv6(ts, frame[:end], l4, depth + 1)
        self.stats["skipped.not_tcp_udp"] += 1
        return _NOTHING

    def _udp(
        self, ts: float, frame: bytes, l4: int, end: int, addrs: bytes, alen: int
    ) -> Sequence[HelloRecord]:
        """QUIC Initials and DTLS handshakes: one assembler per UDP 4-tuple that starts like one."""
        key = addrs + frame[l4 : l4 + 4]
        payload = frame[l4 + 8 : end]
        flows = self.flows
        session = flows.udp.get(key)
        if session is None:
            flows.sweep(ts)
            if looks_like_quic_initial(payload):
                session = flows.create_udp(ts, key, _reverse_key(key, alen), "quic")
            elif looks_like_dtls_client_hello(payload):
                session = flows.create_udp(ts, key, _reverse_key(key, alen), "dtls")
            elif looks_like_dtls_server_hello(payload):
                # Only the server's side is in the capture so far: the client is the receiver.
                session = flows.create_udp(ts, _reverse_key(key, alen), key, "dtls")
            else:
                self.stats["skipped.udp_not_quic_dtls"] += 1
                return _NOTHING
        session.last_ts = ts
        if session.done:
            return _NOTHING
        asm = session.assembler
        from_client = key == session.client_key
        bodies = asm.feed(payload) if from_client else asm.feed_server(payload)
        session.datagrams += 1
        if getattr(asm, "done", False) is True or session.datagrams >= MAX_UDP_HANDSHAKE_DATAGRAMS:
            session.done = True
        if not bodies:
            return _NOTHING
        sender, receiver = addrs[:alen], addrs[alen:]
        sport = (frame[l4] << 8) | frame[l4 + 1]
        dport = (frame[l4 + 2] << 8) | frame[l4 + 3]
        count = asm.client_hellos if from_client else asm.server_hellos
        out: list[HelloRecord] = []
        for i, body in enumerate(bodies):
            try:
                hello = parse_client_hello(body) if from_client else parse_server_hello(body)
            except HelloError as exc:
                side = "client" if from_client else "server"
                self.stats[f"malformed.{session.transport}_{side}_hello_{exc.reason}"] += 1
                continue
            out.append(
                record_of(
                    hello,
                    ts=ts,
                    src=format_address(sender),
                    sport=sport,
                    dst=format_address(receiver),
                    dport=dport,
                    transport=session.transport,
                    index=count - len(bodies) + i + 1,
                    dovecot_profile=self.dovecot_profile,
                )
            )
        self.stats["hellos.client" if from_client else "hellos.server"] += len(out)
        return out

    def _gre(
        self, ts: float, frame: bytes, off: int, end: int, depth: int
    ) -> Sequence[HelloRecord]:
        flags = frame[off]
        if frame[off + 1] & 0x07:
            self.stats["skipped.gre_version"] += 1  # GRE v1 is PPTP's enhanced GRE
            return _NOTHING
        inner = (frame[off + 2] << 8) | frame[off + 3]
        off += 4 + 4 * ((flags >> 7) + ((flags >> 5) & 1) + ((flags >> 4) & 1))
        if inner == ETH_ERSPAN_II:
            # ERSPAN type II has an 8-byte header when GRE carries a sequence number.
            return self._ethernet(ts, frame[:end], off + 8, depth)
        if inner == ETH_ERSPAN_III:
            extra = 8 if frame[off + 11] & 0x01 else 0  # optional platform-specific subheader
            return self._ethernet(ts, frame[:end], off + 12 + extra, depth)
        return self._tunnelled(ts, frame[:end], inner, off, depth)

    def _gtpu(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        """GTP-U at `off` (the frame ends with the UDP datagram): a G-PDU carries one IP packet."""
        flags = frame[off]
        if flags >> 5 != 1 or not flags & 0x10 or frame[off + 1] != 0xFF:
            # GTP' or GTPv2-C on the port, or echo / error-indication / end-marker messages.
            self.stats["skipped.gtpu_not_gpdu"] += 1
            return _NOTHING
        off += 8
        if flags & 0x07:
            # Sequence number, N-PDU number and next-extension type come as one 4-byte block
            # when any of E/S/PN is set; each extension header gives its length in 4-byte units.
            off += 4
            ext = frame[off - 1]
            while ext:
                size = frame[off] * 4
                if not size:
                    self.stats["malformed.gtpu_extension"] += 1
                    return _NOTHING
                ext = frame[off + size - 1]
                off += size
        return self._ip_by_version(ts, frame, off, depth)

    def _capwap(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        """A CAPWAP data packet at `off`: an 802.3 frame (T=0) or a native 802.11 one (T=1)."""
        if frame[off] != 0:
            # Preamble type 1: a DTLS-protected data channel, nothing readable inside.
            self.stats["skipped.capwap_not_plain"] += 1
            return _NOTHING
        hlen = (frame[off + 1] >> 3) * 4
        b2, b3 = frame[off + 2], frame[off + 3]
        if hlen < 8:
            self.stats["malformed.capwap_header"] += 1
            return _NOTHING
        if b3 & 0x88:
            # F: a fragment (not reassembled); K: a keep-alive, which carries no frame.
            self.stats["skipped.capwap_not_frame"] += 1
            return _NOTHING
        off += hlen
        if not b2 & 0x01:
            return self._ethernet(ts, frame, off, depth)
        if (b2 >> 1) & 0x1F == 1:  # wireless binding 1: IEEE 802.11
            return self._ieee80211(ts, frame, off, depth)
        self.stats["skipped.non_ip"] += 1
        return _NOTHING

    def _ieee80211(self, ts: float, frame: bytes, off: int, depth: int) -> Sequence[HelloRecord]:
        """An 802.11 data frame with an LLC/SNAP header; control, management, null-data and
        protected (encrypted) frames carry nothing to read.

        Cisco access points and controllers send the frame control field byte-swapped
        (Wireshark's capwap.swap_fc, on by default, swaps every frame). The swapped order is
        read when only it makes a data frame, and tried second when both orders do (a swapped
        frame with Retry set, whose flags byte looks like a data type) and the standard order
        has no LLC/SNAP header where it says. A standard data frame that decodes is never
        swapped, and a swapped reading still has to find the LLC/SNAP header.
        """
        fc0, fc1 = frame[off], frame[off + 1]
        if fc0 & 0x0C == 0x08:
            llc = _dot11_llc(frame, off, fc0, fc1)
            if llc < 0 and fc1 & 0x0C == 0x08:
                llc = _dot11_llc(frame, off, fc1, fc0)
        elif fc1 & 0x0C == 0x08:
            llc = _dot11_llc(frame, off, fc1, fc0)
        else:
            llc = -1
        if llc < 0:
            self.stats["skipped.non_ip"] += 1
            return _NOTHING
        return self._ethertype(ts, frame, (frame[llc + 6] << 8) | frame[llc + 7], llc + 8, depth)

    def _tunnelled(
        self, ts: float, frame: bytes, inner: int, off: int, depth: int
    ) -> Sequence[HelloRecord]:
        if inner == ETH_TRANSPARENT_BRIDGING:
            return self._ethernet(ts, frame, off, depth)
        return self._ethertype(ts, frame, inner, off, depth)

    # --- transport ----------------------------------------------------------------------

    def _tcp(
        self, ts: float, frame: bytes, l4: int, end: int, addrs: bytes, alen: int
    ) -> Sequence[HelloRecord]:
        key = addrs + frame[l4 : l4 + 4]
        flags = frame[l4 + 13]
        payload_at = l4 + ((frame[l4 + 12] >> 4) * 4)
        flows = self.flows
        d = flows.directions.get(key)
        if d is not None:
            d.flow.last_ts = ts
            if d.done:
                if flags & (TCP_RST | TCP_FIN):
                    self._finish(d, flags)
                return _NOTHING
        else:
            flows.sweep(ts)
            if payload_at >= end and not flags & TCP_SYN:
                return _NOTHING  # a bare ACK of a flow we never saw start
            if payload_at < l4 + 20 or payload_at > end:
                self.stats["malformed.tcp_header"] += 1
                return _NOTHING
            sport = (frame[l4] << 8) | frame[l4 + 1]
            dport = (frame[l4 + 2] << 8) | frame[l4 + 3]
            rkey = _reverse_key(key, alen)
            d = flows.create(ts, key, rkey, addrs[:alen], addrs[alen:], sport, dport)
        if payload_at > end:
            self.stats["malformed.tcp_header"] += 1
            return _NOTHING
        seq = int.from_bytes(frame[l4 + 4 : l4 + 8], "big")
        if flags & TCP_ACK:
            flow = d.flow
            peer = flow.reverse if flow.forward is d else flow.forward
            if peer.tcp.anchors is not None:
                # The peer sent SYNs with different numbers: this ACK says which one counts.
                peer.tcp.acked(int.from_bytes(frame[l4 + 8 : l4 + 12], "big"))
        if flags & TCP_SYN:
            d.tcp.syn(seq)
            seq = (seq + 1) & 0xFFFFFFFF
        found: Sequence[HelloRecord] = _NOTHING
        if payload_at < end and _ethernet_padding_in_ack(frame, payload_at, end, flags, d):
            # A middlebox counted a bare ACK's Ethernet padding into its IP length: zero bytes at
            # the hello's sequence number, which would win as the first copy over the real ones.
            self.stats["skipped.tcp_ack_padding"] += 1
        elif payload_at < end:
            data = d.tcp.push(seq, frame[payload_at:end])
            if d.tcp.gap:
                self.stats["skipped.tcp_gap"] += 1
                d.done = True
            elif data:
                found = self._stream(ts, d, data)
        if flags & (TCP_RST | TCP_FIN):
            self._finish(d, flags)
        return found

    def _finish(self, d: FlowDirection, flags: int) -> None:
        flow = d.flow
        if flags & TCP_RST or flow.closing:
            self.flows.close(d)
        else:
            flow.closing = True  # wait for the other side's FIN before forgetting the flow

    def _stream(self, ts: float, d: FlowDirection, data: bytes) -> Sequence[HelloRecord]:
        items = d.tls.feed(data)
        if d.tls.done:
            d.done = True
        if not items:
            return _NOTHING
        out: list[HelloRecord] = []
        stats = self.stats
        for kind, value in items:
            if kind == 0:
                stats[f"malformed.{value!s}"] += 1  # a reason (str) in place of a message
                continue
            assert isinstance(value, bytes)
            hello: ClientHello | ServerHello
            try:
                if kind == HANDSHAKE_CLIENT_HELLO:
                    hello = parse_client_hello(value)
                    d.client_hellos += 1
                    index = d.client_hellos
                else:
                    hello = parse_server_hello(value)
                    d.server_hellos += 1
                    index = d.server_hellos
                    if not hello.is_hello_retry_request:
                        # The handshake's last plaintext hello: everything after it on this
                        # connection (certificates, renegotiation) is of no interest or
                        # encrypted, so both directions can take the fast path from now on.
                        d.done = True
                        flow = d.flow
                        peer = flow.forward if d is flow.reverse else flow.reverse
                        # Every ServerHello answers one ClientHello; once the client has sent
                        # as many as were answered, no other can follow.
                        if peer.client_hellos >= d.server_hellos:
                            peer.done = True
            except HelloError as exc:
                side = "client" if kind == HANDSHAKE_CLIENT_HELLO else "server"
                self.stats[f"malformed.{side}_hello_{exc.reason}"] += 1
                continue
            out.append(
                record_of(
                    hello,
                    ts=ts,
                    src=format_address(d.src),
                    sport=d.sport,
                    dst=format_address(d.dst),
                    dport=d.dport,
                    transport="tcp",
                    index=index,
                    dovecot_profile=self.dovecot_profile,
                )
            )
            stats["hellos.client" if kind == HANDSHAKE_CLIENT_HELLO else "hellos.server"] += 1
        return out

    def finish(self) -> None:
        """End of input: count what was left incomplete."""
        for _ in self.flows.flush():
            self.stats["skipped.tcp_gap_at_end"] += 1


def _dot11_llc(frame: bytes, off: int, fc0: int, fc1: int) -> int:
    """Where the LLC/SNAP header of the 802.11 frame at `off` is, read with frame control bytes
    `fc0` `fc1`: -1 unless an unprotected data frame with a payload carries one there."""
    if fc0 & 0x4C != 0x08 or fc1 & 0x40:
        return -1
    llc = off + 24
    if fc1 & 0x03 == 0x03:
        llc += 6  # a fourth address between two distribution systems
    if fc0 & 0x80:
        llc += 2  # QoS control
        if fc1 & 0x80:
            llc += 4  # HT control
    if frame[llc] == 0xAA and frame[llc + 1] == 0xAA and frame[llc + 2] == 0x03:
        return llc
    return -1


def _ethernet_padding_in_ack(
    frame: bytes, payload_at: int, end: int, flags: int, d: FlowDirection
) -> bool:
    """A segment that is a bare ACK plus at most the 6 bytes of zeros Ethernet pads a 54-byte
    frame with, before this direction has sent anything: no TLS stream starts with zeros."""
    return (
        end - payload_at <= MAX_ACK_PADDING
        and not flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH)
        and flags & TCP_ACK != 0
        and not d.tls.started
        and not any(frame[payload_at:end])
    )


def _reverse_key(key: bytes, alen: int) -> bytes:
    """The key of the opposite direction: addresses and ports swapped."""
    a = 2 * alen
    return key[alen:a] + key[:alen] + key[a + 2 : a + 4] + key[a : a + 2]

"""QUIC v1 (RFC 9001) and v2 (RFC 9369) Initial packets: the TLS hellos inside them.

Also the versions before RFC 9000 still seen on the wire (IETF drafts 23-34, Facebook mvfst,
Google T050/T051): ``keys.VERSIONS`` lists every version whose Initials can be read.

Public surface: :class:`QuicInitialAssembler` (one per connection, fed UDP payloads) and
:func:`looks_like_quic_initial` (the cheap pre-check). The submodules hold the wire pieces:
``keys`` (key derivation and packet protection), ``packets`` (long headers, coalescing),
``frames`` (CRYPTO and the frames around it), ``assembler`` (per-connection reassembly).
"""

from ja3svc.quic.assembler import CryptoStream, QuicInitialAssembler, looks_like_quic_initial
from ja3svc.quic.keys import QUIC_V1, QUIC_V2

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "CryptoStream",
    "QuicInitialAssembler",
    "looks_like_quic_initial",
]

"""Inputs of the verdict engine: small immutable records, built by the HTTP layer from a request
and from the store. Nothing here performs IO; the engine only ever sees these values, so a verdict
can be replayed and explained from the facts alone.

The records are named tuples rather than frozen dataclasses: a dozen of them are built for every
Dovecot request, and a frozen dataclass's ``__init__`` sets each field through
``object.__setattr__`` (measured: 700 ns for eight fields against 190 ns for a named tuple, and
the policy endpoint builds ~60 fields per request). They stay immutable and keep their field
names; a ``FingerprintRef`` also equals the plain ``(kind, value)`` tuple the store and the
caches key by, so no conversion is needed between them.

The records built on every request also have ``of``, a keyword-only constructor. Calling the
class with keywords costs a dict per call (a class is called with a tuple and a dict of
keywords, which its ``__new__`` unpacks again: measured under callgrind, ~4,000 more
instructions than positional for RequestFacts); ``of`` takes the same keywords the way a plain
function does, without that dict, and builds the tuple in field order. tests/unit checks that
its parameters are the fields, in order, with the same defaults.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol


class Stage(enum.Enum):
    """Which of Dovecot's calls a request is.

    A successful login is ``allow`` (before the password check), ``allow`` (after it), ``report``.
    Dovecot honours a positive status (tarpit) only on the first one.
    """

    BEFORE_AUTH = "before_auth"
    AFTER_AUTH = "after_auth"


class Action(enum.Enum):
    ALLOW = "allow"
    TARPIT = "tarpit"
    REJECT = "reject"


class FingerprintRef(NamedTuple):
    """One fingerprint hash as the label table keys it, e.g. ``("ja3_dovecot", "8a9d...")``."""

    kind: str
    value: str


class CorrelatedFingerprints(tuple[FingerprintRef, ...]):
    """What a ``ConnectionLookup`` found for a connection: its fingerprint refs (it is that
    tuple, and equals it) plus ``dovecot_hashes``, the hello's Dovecot hash under each OpenSSL
    profile (``{profile: hash}``), from which the service tells which profile the Dovecot of the
    connection uses."""

    dovecot_hashes: Mapping[str, str]

    def __new__(
        cls, refs: Iterable[FingerprintRef], dovecot_hashes: Mapping[str, str] | None = None
    ) -> CorrelatedFingerprints:
        obj = super().__new__(cls, refs)
        obj.dovecot_hashes = dict(dovecot_hashes or {})
        return obj


class ConnectionPeer(NamedTuple):
    """The TCP peer Dovecot saw (``real_rip``/``real_rport``): what a passive capture sees."""

    ip: str
    port: int | None = None


class RequestFacts(NamedTuple):
    """What one Dovecot ``allow`` request tells us, already parsed and normalised."""

    login: str
    stage: Stage = Stage.BEFORE_AUTH
    # Fingerprints to match, in priority order: the hash Dovecot sent (looked up both as its own
    # variant and as standard JA3, since plain OpenSSL clients give the same value both ways) and
    # whatever a ConnectionLookup added from a capture.
    fingerprints: tuple[FingerprintRef, ...] = ()
    remote_ip: str = ""
    protocol: str = ""
    session_id: str = ""
    tls: bool = False
    peer: ConnectionPeer | None = None
    # True when a capture gave the connection's hello (its JA4/JA3N are in ``fingerprints``);
    # False when Dovecot's hash is all there is.
    correlated: bool = False

    @classmethod
    def of(
        cls,
        *,
        login: str,
        stage: Stage = Stage.BEFORE_AUTH,
        fingerprints: tuple[FingerprintRef, ...] = (),
        remote_ip: str = "",
        protocol: str = "",
        session_id: str = "",
        tls: bool = False,
        peer: ConnectionPeer | None = None,
        correlated: bool = False,
    ) -> RequestFacts:
        """The keyword constructor of the request path (see the module's doc)."""
        return tuple.__new__(
            cls,
            (login, stage, fingerprints, remote_ip, protocol, session_id, tls, peer, correlated),
        )


class LabelFact(NamedTuple):
    """One label row that matched a fingerprint of the request."""

    kind: str
    value: str
    action: str  # allow | deny | tarpit | none
    client_name: str = ""
    category: str = ""
    tarpit_seconds: int | None = None
    source: str = ""
    confidence: int = 100  # 0-100, as stored


class UserHistory(NamedTuple):
    """Fingerprints previously seen with successful logins of this account."""

    # (kind, value) pairs; a FingerprintRef finds its plain-tuple twin here.
    known: frozenset[tuple[str, str]] = frozenset()
    successes: int = 0
    # Of the account's Dovecot hashes first seen most recently (at most RECENT_DOVECOT_HASHES),
    # how many came with one successful login only, and how many were looked at: a client that
    # brings a new hash to every login (GnuTLS 3.8's permuted extensions, GREASE ciphers) shows
    # up as "all of them single-use".
    single_use_hashes: int = 0
    recent_hashes: int = 0


# How many of an account's most recently first-seen Dovecot hashes tell whether its client
# randomises (see UserHistory.single_use_hashes).
RECENT_DOVECOT_HASHES = 10


def dovecot_hash_history(rows: Iterable[tuple[str, str, int, float]]) -> tuple[int, int]:
    """``(single_use_hashes, recent_hashes)`` from an account's learned rows
    ``(kind, value, successes, first_seen)`` (see ``UserHistory``)."""
    recent = sorted(
        ((first, n) for kind, _, n, first in rows if kind == "ja3_dovecot"), reverse=True
    )[:RECENT_DOVECOT_HASHES]
    return sum(1 for _, n in recent if n == 1), len(recent)


class Reputation(NamedTuple):
    """Failed logins with a fingerprint within the window, counted in the scopes the reputation
    rules judge by (see ``ja3svc.policy.engine.reputation_scope``).

    A copied hello fails logins wherever its copier sits, so failures are scoped: by the remote
    network they came from (``network_of``) and by Dovecot's ``fail_type`` (failures on accounts
    that do not exist say nothing about the accounts that do), and weighed against the accounts
    that logged in successfully with the fingerprint.
    """

    # Every failure in the window, every network and type (the facts behind the explanation).
    distinct_failed_accounts: int = 0
    failures: int = 0
    window_seconds: int = 0
    # The request's remote network ("203.0.113.0/24"; "" when Dovecot sent no usable address)
    # and the distinct accounts that failed with the fingerprint from it (any failure type but
    # the server's own: internal, policy).
    network: str = ""
    network_failed_accounts: int = 0
    # Distinct accounts whose failure counts everywhere (failure types that say an existing
    # account was tried: credentials, expired, disabled, or none given), and how many distinct
    # networks those failures came from.
    counted_failed_accounts: int = 0
    failed_networks: int = 0
    # Distinct accounts that logged in successfully with the fingerprint within the window. The
    # store only counts them when ``counted_failed_accounts`` could matter (it is 0 otherwise).
    succeeded_accounts: int = 0


# Dovecot 2.4's fail_type values (report only): the failures of these types do not count
# anywhere: "internal" is the server's own trouble, "policy" a policy service's refusal.
UNCOUNTED_FAIL_TYPES = ("internal", "policy")
# ... and these count only against the network they came from: "account" is a login name the
# password database does not know, which a sprayer produces at will and which no real user's
# client produces for long.
NETWORK_ONLY_FAIL_TYPES = ("account",)

# Prefix lengths of a "network" (see network_of): an IPv4 /24 is the smallest block routed
# between networks, and an IPv6 /56 the usual smallest delegation to one customer (RIPE-690).
IPV4_NETWORK_PREFIX = 24
IPV6_NETWORK_PREFIX = 56


@functools.lru_cache(maxsize=65536)
def network_of(
    address: str, ipv4_prefix: int = IPV4_NETWORK_PREFIX, ipv6_prefix: int = IPV6_NETWORK_PREFIX
) -> str:
    """The network ``address`` belongs to, as CIDR text (``"203.0.113.0/24"``,
    ``"2001:db8:0:100::/56"``); an IPv4-mapped IPv6 address counts as its IPv4 address. ``""``
    for anything that is not an IP address (Dovecot sends ``remote`` as text it was given)."""
    try:
        ip = ipaddress.ip_address(address.strip().partition("%")[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network((ip, prefix), strict=False))


_NO_HISTORY = UserHistory()
_NO_REPUTATION = Reputation()


class PolicyInputs(NamedTuple):
    """Everything the engine needs for one verdict."""

    request: RequestFacts
    labels: tuple[LabelFact, ...] = ()
    history: UserHistory = _NO_HISTORY
    reputation: Reputation = _NO_REPUTATION
    # True when the fingerprint database was unreachable and facts came from the cache only.
    degraded: bool = False

    @classmethod
    def of(
        cls,
        *,
        request: RequestFacts,
        labels: tuple[LabelFact, ...] = (),
        history: UserHistory = _NO_HISTORY,
        reputation: Reputation = _NO_REPUTATION,
        degraded: bool = False,
    ) -> PolicyInputs:
        """The keyword constructor of the request path (see the module's doc)."""
        return tuple.__new__(cls, (request, labels, history, reputation, degraded))


class ConnectionLookup(Protocol):
    """Hook for passive-capture correlation: fingerprints of the hello sent on a TCP connection.

    The default returns nothing; the live-capture worker provides one that finds the hello by
    the peer address and port Dovecot reports as ``real_rip``/``real_rport``.

    The service awaits ``fingerprints_for_async`` (only for requests that carry a peer): a
    lookup may wait for a capture or a database, and doing that on the event loop would stall
    every other request. There is no blocking form: one implementation, awaited.

    ``dovecot_hash`` is the JA3 hash Dovecot 2.4 sent for the connection ("" from 2.3). A
    lookup that can check it returns fingerprints only for a hello that gives that hash under
    some OpenSSL profile: a peer address and port name a connection only loosely (ports are
    reused, behind NAT by other users too), and a hello of another connection must not decide
    this login. For a hello that gives no profile's hash it returns no refs but still the
    hello's ``dovecot_hashes``, so the service can count the mismatch.
    """

    async def fingerprints_for_async(
        self, peer: ConnectionPeer, dovecot_hash: str = ""
    ) -> tuple[FingerprintRef, ...]: ...


class NoConnectionLookup:
    async def fingerprints_for_async(
        self, peer: ConnectionPeer, dovecot_hash: str = ""
    ) -> tuple[FingerprintRef, ...]:
        return ()

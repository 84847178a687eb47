"""The policy service of one worker: turns a parsed Dovecot request into a verdict.

It gathers facts (cache, database with a deadline, connection lookup), calls the pure engine and
queues the writes. Database trouble never raises out of here: facts degrade to what the cache
knows and the verdict says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from ja3svc.api.auth import DovecotCredentials
from ja3svc.api.caches import HistoryCache, LabelCache, ReputationCache, SessionTracker, TtlMap
from ja3svc.api.dovecot_profile import ProfileDetector, profile_counter
from ja3svc.api.dovecot_request import DovecotRequest, normalise_hash, parse_port
from ja3svc.api.metrics import PolicyMetrics
from ja3svc.api.writer import BatchWriter
from ja3svc.config.settings import PolicySettings
from ja3svc.store.policy_store import DecisionRecord, PolicyStore, Reads, Ref

from ja3svc.policy import (
    RULES,
    Action,
    ConnectionLookup,
    ConnectionPeer,
    FingerprintRef,
    LabelFact,
    NoConnectionLookup,
    PolicyConfig,
    PolicyInputs,
    Reputation,
    RequestFacts,
    Stage,
    UserHistory,
    Verdict,
    evaluate,
    network_of,
    parse_action,
)

log = logging.getLogger("ja3svc.policy")
T = TypeVar("T")

# Dovecot's hash is its own variant; failures and per-user learning are recorded under it.
DOVECOT_KIND = "ja3_dovecot"
# After a database error, skip the database for this long: each attempt could cost the full
# deadline, and Dovecot's budget is 2 s per request.
CIRCUIT_OPEN_SECONDS = 5.0
PRELOAD_LABELS = 100_000
# Dovecot hashes whose refs are kept made (PolicyService._refs_of_hash). Named tuples stay
# tracked by the collector (see api.caches), so a few thousand: the hashes of one site's clients.
HASH_REFS_MAX = 4096
_NO_REFS: tuple[tuple[FingerprintRef, ...], tuple[Ref, ...]] = ((), ())
# The connection lookup bounds its own waits; this is the backstop that keeps the whole answer
# inside Dovecot's 2 s budget whatever the lookup does.
LOOKUP_TIMEOUT_SECONDS = 1.5


def policy_config(p: PolicySettings) -> PolicyConfig:
    return PolicyConfig(
        unknown_action=Action(p.unknown_action),
        no_fingerprint_action=Action(p.no_fingerprint_action),
        new_fingerprint_action=Action(p.new_fingerprint_action),
        user_min_successes=p.user_min_successes,
        randomising_min_hashes=p.randomising_min_hashes,
        tarpit_seconds=p.tarpit_seconds,
        deny_min_confidence=p.deny_min_confidence,
        user_actions={u: parse_action(a) for u, a in p.user_actions.items()},
        reputation_tarpit_accounts=p.reputation_tarpit_accounts,
        reputation_reject_accounts=p.reputation_reject_accounts,
        reputation_min_networks=p.reputation_min_networks,
        reputation_success_ratio=p.reputation_success_ratio,
        log_only=p.log_only,
        reject_message=p.reject_message,
        fail_open=p.fail_open,
    )


class ParsedFacts(NamedTuple):
    request: RequestFacts
    ja3_hash: str
    identity: tuple[Ref, ...]  # refs that successes/failures are recorded under


# What the audit log calls a log-only decision. Actions are named by ``_value_`` on the verdict
# path: ``Enum.value`` is a Python-level property and an Enum's hash a Python-level method, so
# neither a ``.value`` nor a dict keyed by the enum is free, and both ran for every verdict.
_LOG_ONLY_NAME = {a._value_: f"log:{a._value_}" for a in Action}
_ALLOW_COMMAND = ("allow/before", "allow/after")  # by "is it the after-auth allow?"
_NO_HISTORY = UserHistory()
_REPORT_REASON = {o: f"report: {o}" for o in ("success", "failure", "policy_reject")}


class _Cached(NamedTuple):
    """What the caches know for one allow; None (and misses) for what must be asked.

    This and ParsedFacts are built per request with tuple.__new__: calling a named tuple's
    class runs its Python-level __new__ for the same tuple (~1,500 instructions)."""

    labels: list[LabelFact]
    misses: list[Ref]
    reputation: Reputation | None
    history: UserHistory | None


def _counter(name: str) -> Callable[[int], None]:
    from ja3svc.api.limits import COUNTERS

    def count(n: int) -> None:
        COUNTERS[name] += n

    return count


class PolicyService:
    def __init__(
        self,
        settings: PolicySettings,
        store: PolicyStore,
        connection_lookup: ConnectionLookup | None = None,
        clock: Callable[[], float] = time.time,
        spool_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config = policy_config(settings)
        self.store = store
        self.lookup = connection_lookup or NoConnectionLookup()
        self.clock = clock
        self.metrics = PolicyMetrics([name for name, _ in RULES])
        self.profiles = ProfileDetector(profile_counter(self.metrics), clock)
        # Correlation outcomes counted where every worker's count adds up (multiprocess).
        if hasattr(self.lookup, "on_count"):
            self.lookup.on_count = self.metrics.correlation.inc
        self.credentials = DovecotCredentials(settings.api_header, settings.api_keys)
        self.labels = LabelCache(ttl=settings.label_cache_seconds)
        self.sessions = SessionTracker(settings.session_window_seconds)
        self._reputation = ReputationCache(100_000, settings.reputation_cache_seconds)
        # Accounts' learned fingerprints, briefly: the second allow of a login and bursts from
        # one account need no query. Updated in place by this worker's own success reports.
        self._history = HistoryCache(100_000, settings.label_cache_seconds)
        self._ja3_kinds = tuple(settings.ja3_label_kinds)
        self._hash_refs: dict[str, tuple[tuple[FingerprintRef, ...], tuple[Ref, ...]]] = {}
        # The lowest reputation threshold in force: below it no verdict needs the fingerprint's
        # successful accounts counted (PolicyStore.allow_facts_reads).
        thresholds = [
            n
            for n in (settings.reputation_tarpit_accounts, settings.reputation_reject_accounts)
            if n
        ]
        self._min_reputation_accounts = min(thresholds, default=0) or 1
        # Dovecot hash -> the other fingerprints of the hellos a capture saw giving it (under
        # any OpenSSL profile), for requests that bring the hash alone.
        self._equivalents: TtlMap[str, tuple[Ref, ...]] = TtlMap(
            100_000, settings.label_cache_seconds
        )
        self.writer = BatchWriter(
            store,
            on_drop=lambda n: self.metrics.writer_dropped.inc(amount=n),
            # Writes kept queued because the database was unreachable (no spool_dir), or
            # spooled to disk, and read back from the spool once it was back.
            on_retry=_counter("policy_write_retries_total"),
            spool_dir=spool_dir,
            on_spool=_counter("policy_writes_spooled_total"),
            on_replay=_counter("policy_writes_replayed_total"),
        )
        # Reads on the event loop either way, never in threads: a hop to a thread cost more
        # than a local SQLite file's indexed lookups (~0.1-0.3 ms; measured: 4x lower
        # throughput), and on PostgreSQL it was the largest cost left on the loop (see
        # store.policy_store._PgBackend). PostgreSQL's reads are awaited, with the deadline;
        # a SQLite file's are run inline (WAL readers never wait for writers).
        self._async_db = store.reads_async
        self._circuit_open_until = 0.0
        self.last_db_error = ""
        # Allows being judged now, and the most this worker takes at once (api.routes.policy).
        self.inflight = 0
        self.max_inflight = 512

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.writer.start()
        try:
            n = self.labels.preload(self.store.actionable_labels(PRELOAD_LABELS))
            log.info("label cache preloaded", extra={"fields": {"fingerprints": n}})
        except Exception as exc:  # start degraded rather than not at all
            self._db_failed("error", exc)

    def stop(self) -> None:
        self.writer.stop()
        self.store.close()

    def forget_history(self, login: str) -> None:
        """Drop the cached history of ``login`` after its learned fingerprints changed."""
        self._history.discard(login)

    @property
    def degraded(self) -> bool:
        return self.clock() < self._circuit_open_until

    def _db_failed(self, reason: str, exc: BaseException | None) -> None:
        self.metrics.degraded.inc(reason)
        self.last_db_error = type(exc).__name__ if exc else reason
        self._circuit_open_until = self.clock() + CIRCUIT_OPEN_SECONDS
        log.warning("database unavailable", extra={"fields": {"reason": self.last_db_error}})

    # --- facts ------------------------------------------------------------------------------

    def parse_facts(
        self,
        req: DovecotRequest,
        stage: Stage,
        peer: ConnectionPeer | None = None,
        correlated: tuple[FingerprintRef, ...] = (),
        equivalent: tuple[Ref, ...] = (),
        ja3: str | None = None,
    ) -> ParsedFacts:
        """Facts of ``req`` (whose TCP peer is ``peer``, see ``peer_of``); ``correlated`` are
        the capture's fingerprints of that connection (they are matched and recorded);
        ``equivalent`` are other fingerprints of hellos known to give Dovecot's hash (matched
        against labels and history only: the request itself did not show them). ``ja3`` is
        ``dovecot_hash(req)`` when the caller has it already."""
        s = self.settings
        attributes = req.attributes
        if ja3 is None:
            ja3 = self.dovecot_hash(req)
        made = self._hash_refs.get(ja3) if ja3 else _NO_REFS
        refs, identity = made if made is not None else self._refs_of_hash(ja3)
        # Added to rarely and only a few: a new tuple each time costs less than lists.
        for ref in correlated:
            if ref not in refs:
                refs += (ref,)
                identity += ((ref.kind, ref.value),)
        for ref in equivalent:
            # The after-auth allow passes the first allow's refs back: they are in refs already.
            if ref not in refs:
                refs += (ref if type(ref) is FingerprintRef else FingerprintRef(*ref),)
        facts = RequestFacts.of(
            login=attributes.get(s.login_attribute, ""),
            stage=stage,
            fingerprints=refs,
            remote_ip=attributes.get(s.remote_attribute, ""),
            protocol=attributes.get("protocol", ""),
            session_id=attributes.get(s.session_attribute, ""),
            tls=bool(req.tls),
            peer=peer,
            correlated=bool(correlated),
        )
        return tuple.__new__(ParsedFacts, (facts, ja3, identity))  # see _Cached

    def _refs_of_hash(self, ja3: str) -> tuple[tuple[FingerprintRef, ...], tuple[Ref, ...]]:
        """(refs to match, refs to record under) of Dovecot's hash ``ja3``, made once per hash
        and kept in ``_hash_refs``: every request of a login and every login of a client brings
        the same one."""
        if len(self._hash_refs) >= HASH_REFS_MAX:
            self._hash_refs.clear()  # bounded; clients with a new hash each time refill it
        made = (tuple([FingerprintRef(k, ja3) for k in self._ja3_kinds]), ((DOVECOT_KIND, ja3),))
        self._hash_refs[ja3] = made
        return made

    def dovecot_hash(self, req: DovecotRequest) -> str:
        """The JA3 hash Dovecot sent, normalised; "" without one."""
        return normalise_hash(req.first(self.settings.ja3_attributes))

    def peer_of(self, req: DovecotRequest) -> ConnectionPeer | None:
        peer_ip = req.first(self.settings.peer_ip_attributes)
        if not peer_ip:
            return None
        return ConnectionPeer(peer_ip, parse_port(req.first(self.settings.peer_port_attributes)))

    async def _correlated_facts(
        self, req: DovecotRequest, stage: Stage, peer: ConnectionPeer
    ) -> ParsedFacts:
        """``parse_facts`` plus the fingerprints the capture saw on ``peer``'s connection: a
        lookup may wait for the capture or a database, so it is awaited, with a deadline; the
        callers skip it (and the await) for requests that name no peer (most 2.4 setups)."""
        correlated: tuple[FingerprintRef, ...] = ()
        dovecot_hash = self.dovecot_hash(req)
        try:
            correlated = await asyncio.wait_for(
                self.lookup.fingerprints_for_async(peer, dovecot_hash), LOOKUP_TIMEOUT_SECONDS
            )
        except Exception as exc:  # correlation is a bonus; the hash still decides
            log.warning("connection lookup failed", extra={"fields": {"error": type(exc).__name__}})
        parsed = self.parse_facts(req, stage, peer, correlated, ja3=dovecot_hash)
        by_profile = getattr(correlated, "dovecot_hashes", None)
        if by_profile and parsed.ja3_hash and stage is Stage.BEFORE_AUTH:
            self.profiles.observe(parsed.ja3_hash, by_profile)
        return parsed

    async def _query(self, reads: Reads[T]) -> T | None:
        """``reads`` asked of the store: awaited on the event loop with the deadline where
        the store says so (``store.reads_async``: PostgreSQL), else run inline. None when it
        fails or times out (counted towards the circuit breaker)."""
        try:
            if not self._async_db:
                return self.store.run(reads)
            # asyncio.timeout, not wait_for: no task to create per read.
            async with asyncio.timeout(self.settings.db_timeout_seconds):
                return await self.store.run_async(reads)
        except TimeoutError as exc:
            self._db_failed("timeout", exc)
        except Exception as exc:
            self._db_failed("error", exc)
        return None

    def _network(self, facts: RequestFacts) -> str:
        """The remote network reputation is scoped by (memoised in the core)."""
        s = self.settings
        return network_of(facts.remote_ip, s.reputation_ipv4_prefix, s.reputation_ipv6_prefix)

    def _cached(self, parsed: ParsedFacts) -> _Cached:
        """What the caches know fresh for the facts' fingerprints and account."""
        facts = parsed.request
        labels: list[LabelFact] = []
        misses = self.labels.collect(facts.fingerprints, labels)
        rep = self._reputation.get(parsed.identity, self._network(facts))
        history = self._history.get(facts.login) if facts.login else _NO_HISTORY
        return tuple.__new__(_Cached, (labels, misses, rep, history))

    async def _gather(
        self, req: DovecotRequest, parsed: ParsedFacts, cached: _Cached, equivalents_of: str
    ) -> tuple[ParsedFacts, PolicyInputs]:
        """Complete what ``cached`` lacks from the database (with a deadline, and not at all
        while the circuit is open), with the equivalents of Dovecot's hash ``equivalents_of``
        ("": known already; see ``PolicyStore.dovecot_equivalents``: a label or a learned
        fingerprint made from a capture then matches the hash of a Dovecot on either OpenSSL
        profile) in the same call; degraded inputs from the cache, stale included, if that
        fails. ``parsed`` comes back with the equivalents' fingerprints added."""
        facts = parsed.request
        labels, misses, rep, history = cached
        rep_key = parsed.identity
        network = self._network(facts)
        if not self.degraded:
            reads = self.store.allow_facts_reads(
                misses,
                facts.login if history is None else None,
                list(rep_key) if rep is None else [],
                network,
                self.settings.reputation_window_seconds,
                self.clock(),
                self._min_reputation_accounts,
                equivalents_of,
            )
            found = await self._query(reads)
            if found is not None:
                self.labels.store(found.labels)
                for ref in misses:
                    labels.extend(found.labels.get(ref, ()))
                if found.equivalents is not None:
                    self._equivalents.put(equivalents_of, found.equivalents)
                    if found.equivalents:
                        parsed = self._with_equivalents(req, parsed, found.equivalents)
                        facts = parsed.request
                        for ref in found.equivalents:
                            labels.extend(found.labels.get(ref, ()))
                if found.reputation is not None:
                    rep = found.reputation
                    self._reputation.put(rep_key, network, rep)
                if found.history is not None:
                    history = found.history
                    self._history.put(facts.login, history)
                return parsed, PolicyInputs.of(
                    request=facts,
                    labels=tuple(labels),
                    history=history or _NO_HISTORY,
                    reputation=rep
                    or Reputation(window_seconds=self.settings.reputation_window_seconds),
                )
        else:
            self.metrics.degraded.inc("circuit_open")
        # Degraded: whatever the cache knows, stale included.
        self.labels.collect(misses, labels, allow_stale=True)
        if equivalents_of:
            stale = self._equivalents.get(equivalents_of, allow_stale=True)
            if stale:
                parsed = self._with_equivalents(req, parsed, stale)
                facts = parsed.request
                self.labels.collect(stale, labels, allow_stale=True)
        return parsed, PolicyInputs.of(
            request=facts,
            labels=tuple(labels),
            history=history or _NO_HISTORY,
            reputation=rep or Reputation(window_seconds=self.settings.reputation_window_seconds),
            degraded=True,
        )

    def _with_equivalents(
        self, req: DovecotRequest, parsed: ParsedFacts, equivalents: tuple[Ref, ...]
    ) -> ParsedFacts:
        facts = parsed.request
        return self.parse_facts(req, facts.stage, facts.peer, (), equivalents, parsed.ja3_hash)

    # --- commands ---------------------------------------------------------------------------

    async def allow(self, req: DovecotRequest) -> Verdict:
        session_id = req.attributes.get(self.settings.session_attribute, "")
        earlier = self.sessions.before_auth_inputs(session_id)
        if earlier is not None:
            # The after-auth allow: same connection, same facts. Re-judging on the facts of the
            # first allow keeps both answers consistent and costs no lookup (not even the
            # connection's: its fingerprints are in the first allow's facts).
            # Whether a capture gave those fingerprints is what the first allow knew: without
            # one they are Dovecot's hash and its equivalents, passed on as such.
            first = earlier.request
            parsed = self.parse_facts(
                req,
                Stage.AFTER_AUTH,
                self.peer_of(req),
                first.fingerprints if first.correlated else (),
                () if first.correlated else first.fingerprints,
            )
            inputs = PolicyInputs.of(
                request=parsed.request,
                labels=earlier.labels,
                history=earlier.history,
                reputation=earlier.reputation,
                degraded=earlier.degraded,
            )  # every field: _replace costs three calls more
        else:
            peer = self.peer_of(req)
            parsed = (
                self.parse_facts(req, Stage.BEFORE_AUTH)  # no connection to look up: no await
                if peer is None
                else await self._correlated_facts(req, Stage.BEFORE_AUTH, peer)
            )
            # Dovecot's hash alone: its equivalents from the cache, else asked with the rest.
            ask = ""
            if parsed.ja3_hash and not parsed.request.correlated:
                known = self._equivalents.get(parsed.ja3_hash)
                if known is None:
                    ask = parsed.ja3_hash
                elif known:
                    parsed = self.parse_facts(
                        req, Stage.BEFORE_AUTH, peer, (), known, parsed.ja3_hash
                    )
            if not parsed.request.fingerprints:  # Dovecot 2.3 without correlation
                inputs = PolicyInputs.of(request=parsed.request)
            else:
                cached = self._cached(parsed)
                if ask or cached.misses or cached.reputation is None or cached.history is None:
                    parsed, inputs = await self._gather(req, parsed, cached, ask)
                else:  # everything fresh in memory: no query, and no coroutine to make one
                    inputs = PolicyInputs.of(
                        request=parsed.request,
                        labels=tuple(cached.labels),
                        history=cached.history,
                        reputation=cached.reputation,
                    )
            self.sessions.remember(session_id, inputs)
        verdict = evaluate(inputs, self.config)
        self._record(parsed, verdict)
        return verdict

    async def report(self, req: DovecotRequest) -> None:
        peer = self.peer_of(req)
        parsed = (
            self.parse_facts(req, Stage.AFTER_AUTH)
            if peer is None
            else await self._correlated_facts(req, Stage.AFTER_AUTH, peer)
        )
        facts = parsed.request
        self.sessions.end(facts.session_id)
        now = self.clock()
        if req.policy_reject:
            outcome = "policy_reject"
        elif req.success:
            outcome = "success"
            if facts.login:
                for ref in parsed.identity:
                    self.writer.success((now, facts.login, ref))
                self._history.add_success(facts.login, parsed.identity)
        else:
            outcome = "failure"
            # A policy rejection is our own doing, not evidence against the fingerprint;
            # counting it would make a tarpit feed itself.
            if facts.login:
                network = self._network(facts)
                fail_type = req.attributes.get("fail_type", "")[:16]
                for ref in parsed.identity:
                    self.writer.failure((now, facts.login, ref, network, fail_type))
                self._reputation.discard(tuple(parsed.identity), network)
        self.metrics.reports.inc(outcome)
        if self.settings.audit_log:
            self.writer.decision(
                DecisionRecord.of(
                    ts=now,
                    command="report",
                    username=facts.login,
                    remote_ip=facts.remote_ip,
                    remote_port=facts.peer.port if facts.peer else None,
                    ja3_hash=parsed.ja3_hash,
                    status=0,
                    action=outcome,
                    rule="report",
                    reason=_REPORT_REASON[outcome],
                    labels=(),
                )
            )

    def _sample_allow(self) -> bool:
        sample = self.settings.decision_log_sample
        return sample >= 1.0 or (sample > 0.0 and random.random() < sample)

    def _record(self, parsed: ParsedFacts, verdict: Verdict) -> None:
        facts = parsed.request
        action = verdict.action
        name: str = action._value_
        self.metrics.verdicts.inc(name, verdict.rule, "true" if verdict.enforced else "false")
        reason = "; ".join(verdict.reasons)
        # The level first: with INFO off, no allow is sampled and no log record is built.
        if log.isEnabledFor(logging.INFO) and (action is not Action.ALLOW or self._sample_allow()):
            log.info(
                "verdict",
                extra={
                    "fields": {
                        "login": facts.login,
                        "remote": facts.remote_ip,
                        "session_id": facts.session_id,
                        "stage": facts.stage.value,
                        "ja3": parsed.ja3_hash,
                        "status": verdict.status,
                        "action": action.value,
                        "rule": verdict.rule,
                        "enforced": verdict.enforced,
                        "reason": reason,
                    }
                },
            )
        if self.settings.audit_log:
            self.writer.decision(
                DecisionRecord.of(
                    ts=self.clock(),
                    command=_ALLOW_COMMAND[facts.stage is Stage.AFTER_AUTH],
                    username=facts.login,
                    remote_ip=facts.remote_ip,
                    remote_port=facts.peer.port if facts.peer else None,
                    ja3_hash=parsed.ja3_hash,
                    status=verdict.status,
                    action=name if verdict.enforced else _LOG_ONLY_NAME[name],
                    rule=verdict.rule,
                    reason=reason,
                    labels=verdict.labels,
                )
            )

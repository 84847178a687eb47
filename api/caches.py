"""In-memory state of one worker: the label cache, the session tracker, short-lived counters.

All of it is per process. With several workers each keeps its own copy; the database stays the
source of truth and every cache entry expires, so workers converge within seconds.

The long-lived caches (labels, accounts' fingerprints, reputation: up to 100,000-200,000
entries each) keep their values as plain tuples of strings and numbers and build the engine's
records on a hit. Python's collector stops tracking such tuples, while every dataclass or named
tuple instance stays tracked and is walked by each full collection: measured with the dataclasses,
78,000 tracked objects after 20,000 logins and full-collection pauses of 30-120 ms in the
middle of Dovecot's requests.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from ja3svc.policy.facts import (
    RECENT_DOVECOT_HASHES,
    LabelFact,
    PolicyInputs,
    Reputation,
    UserHistory,
)
from ja3svc.vocabulary import FingerprintKey as Ref

K = TypeVar("K")
V = TypeVar("V")


class TtlMap(Generic[K, V]):
    """A bounded map whose entries are fresh for ``ttl`` seconds and then only *stale*.

    Stale entries are kept (until evicted by size) because during a database outage a stale
    answer is better than none: that is the whole point of the outage cache. Eviction is by
    the age of the last ``put``: an entry in use is looked up again once it is no longer
    fresh and put back with new data, so the entries that survive are the recently used ones
    without reordering on every hit.

    No lock: only the event loop's thread uses these caches (the admin API's handlers run on
    the loop too), and each operation here is a single dict call.
    """

    def __init__(
        self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, allow_stale: bool = False) -> V | None:
        item = self._data.get(key)
        if item is None or (not allow_stale and self._clock() - item[0] > self.ttl):
            return None
        return item[1]

    def put(self, key: K, value: V) -> None:
        data = self._data
        data[key] = (self._clock(), value)
        data.move_to_end(key)
        while len(data) > self.maxsize:
            data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


LabelRow = tuple[str, str, str, str, str, int | None, str, int]  # LabelFact's fields, in order


class LabelCache:
    """Labels by (kind, value): recently looked up ones plus the preloaded actionable ones.

    A miss that was looked up is cached as an empty tuple, so an unknown fingerprint costs one
    query per ``ttl``, not one per login.
    """

    def __init__(self, maxsize: int = 200_000, ttl: float = 5.0) -> None:
        self._lru: TtlMap[Ref, tuple[LabelRow, ...]] = TtlMap(maxsize, ttl)

    def collect(
        self, refs: Iterable[Ref], labels: list[LabelFact], allow_stale: bool = False
    ) -> list[Ref]:
        """Append the cached labels of ``refs`` to ``labels`` (in order); return the refs the
        cache does not know, which must be asked from the database."""
        misses: list[Ref] = []
        get = self._lru.get
        for ref in refs:
            found = get(ref, allow_stale)
            if found is None:
                misses.append(ref)
            elif found:
                labels.extend(LabelFact._make(row) for row in found)
        return misses

    def store(self, labels: dict[Ref, tuple[LabelFact, ...]]) -> None:
        for ref, found in labels.items():
            # Plain tuples (a LabelFact is a tuple subclass, which the collector keeps
            # tracking), and a plain key for the same reason.
            self._lru.put((ref[0], ref[1]), tuple([tuple(lb) for lb in found]))  # type: ignore[arg-type]

    def preload(self, labels: Iterable[LabelFact]) -> int:
        grouped: dict[Ref, list[LabelFact]] = {}
        for lb in labels:
            grouped.setdefault((lb.kind, lb.value), []).append(lb)
        self.store({r: tuple(v) for r, v in grouped.items()})
        return len(grouped)

    def invalidate(self, ref: Ref | None = None) -> None:
        if ref is None:
            self._lru.clear()
        else:
            self._lru.discard(ref)

    def __len__(self) -> int:
        return len(self._lru)


class HistoryCache:
    """Accounts' learned fingerprints (``UserHistory``), briefly, by login."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        self._lru: TtlMap[str, tuple[tuple[Ref, ...], int, int, int]] = TtlMap(maxsize, ttl)

    def get(self, login: str) -> UserHistory | None:
        found = self._lru.get(login)
        if found is None:
            return None
        # tuple.__new__: the class call runs a Python-level __new__ for the same tuple.
        return tuple.__new__(UserHistory, (frozenset(found[0]), found[1], found[2], found[3]))

    def put(self, login: str, history: UserHistory) -> None:
        refs = tuple([(k, v) for k, v in history.known])
        self._lru.put(
            login, (refs, history.successes, history.single_use_hashes, history.recent_hashes)
        )

    def add_success(self, login: str, refs: Iterable[Ref]) -> None:
        """A successful login of ``login`` with ``refs`` (plain tuples), if it is cached: the
        next allow of the account then needs no query to know them."""
        found = self._lru.get(login)
        if found is None:
            return
        known, successes, single, recent = found
        new = tuple([r for r in refs if r not in known])
        if new and "ja3_dovecot" in dict(new):  # no generator per report
            # A Dovecot hash new to the account is its most recent one and single-use so far.
            # (A known hash's second use is not subtracted here; the database has it exact
            # once this entry expires.)
            single = min(single + 1, RECENT_DOVECOT_HASHES)
            recent = min(recent + 1, RECENT_DOVECOT_HASHES)
        self._lru.put(login, (known + new if new else known, successes + 1, single, recent))

    def discard(self, login: str) -> None:
        """Forget the cached history of ``login`` (the console removed one of its fingerprints)."""
        self._lru.discard(login)

    def __len__(self) -> int:
        return len(self._lru)


class ReputationCache:
    """``Reputation`` of a request's fingerprints (the tuple of its identity refs) as seen from
    its remote network, briefly."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        # Plain tuples: the collector untracks those of atoms, not a named tuple's subclass.
        self._lru: TtlMap[tuple[tuple[Ref, ...], str], tuple[Any, ...]] = TtlMap(maxsize, ttl)

    def get(self, key: tuple[Ref, ...], network: str = "") -> Reputation | None:
        found = self._lru.get((key, network))
        # tuple.__new__: _make is a Python-level call and checks a length that put made right.
        return None if found is None else tuple.__new__(Reputation, found)

    def put(self, key: tuple[Ref, ...], network: str, rep: Reputation) -> None:
        self._lru.put((key, network), tuple(rep))

    def discard(self, key: tuple[Ref, ...], network: str = "") -> None:
        self._lru.discard((key, network))

    def __len__(self) -> int:
        return len(self._lru)


class SessionTracker:
    """Tells Dovecot's before-auth allow from the after-auth allow of the same login.

    Rule: an ``allow`` whose ``session_id`` already had an ``allow`` within ``window`` seconds is
    the after-auth allow. Dovecot sends allow, allow, report for a successful login and allow,
    report for a failed one; session ids are unique per login attempt, so a generous window only
    costs memory. A ``report`` ends the session. An allow without a session id is always treated
    as before-auth (the conservative choice: at worst Dovecot ignores a tarpit). With several
    workers the second allow may reach another worker, which then answers as for a first allow;
    Dovecot ignores a positive status there, so only the audit log's stage label is affected.

    The facts of the first allow are kept so the second is judged on the same facts.
    """

    def __init__(self, window: float, maxsize: int = 200_000) -> None:
        self._seen: TtlMap[str, PolicyInputs] = TtlMap(maxsize, window)

    def before_auth_inputs(self, session_id: str) -> PolicyInputs | None:
        return self._seen.get(session_id) if session_id else None

    def remember(self, session_id: str, inputs: PolicyInputs) -> None:
        if session_id:
            self._seen.put(session_id, inputs)

    def end(self, session_id: str) -> None:
        if session_id:
            self._seen.discard(session_id)

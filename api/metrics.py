"""The service's Prometheus metrics, through prometheus-client.

Label values are restricted to fixed sets given at creation; anything else is folded into
``other``, so a client sending random commands cannot grow the registry. Every allowed label
combination is created up front, so a counter that has not moved is still exported as 0 (a
rate over a series that appears only with its first event starts from nothing).

Several workers (``serve --workers N``): ``ja3svc serve`` points ``PROMETHEUS_MULTIPROC_DIR``
at a directory of its own run before the workers start; prometheus-client then keeps every
value in a memory-mapped file per process there, and a scrape of any worker adds up all of
them (counters and histograms summed, gauges as documented per gauge). Process metrics
(``process_*``) are then reported per worker, with a ``pid`` label.
"""

from __future__ import annotations

import bisect
import glob
import itertools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ja3svc._version import __version__

OTHER = "other"
# `_created` series double the output and no dashboard uses them.
prometheus_client.disable_created_metrics()
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format generate_latest writes (what every Prometheus version reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class _LabelKeys:
    """Folds label values into the allowed sets (anything else becomes ``other``).

    Every policy request increments two or three series; folding each value anew, and asking
    prometheus-client for the child, cost more than the increment itself. Children are
    memoised by the raw values, and the memo is bounded by the number of distinct raw inputs
    it accepts: beyond that, values are folded without it.
    """

    _MEMO_MAX = 4096

    def __init__(self, labels: Mapping[str, Sequence[str]]) -> None:
        self.label_names = tuple(labels)
        self.allowed = tuple(frozenset(v) | {OTHER} for v in labels.values())
        self.combinations = list(itertools.product(*(tuple(v) for v in labels.values())))

    def fold(self, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v if v in ok else OTHER for v, ok in zip(values, self.allowed, strict=True))


class _Metric:
    """One prometheus-client metric (``_client``) with its children memoised by raw label
    values. ``options`` are the client class's own keywords (``buckets``,
    ``multiprocess_mode``: how the values of several worker processes combine)."""

    _client: ClassVar[Callable[..., Any]]
    _suffix: ClassVar[str] = ""  # the exported name's, which the client class adds itself
    _memo: dict[tuple[str, ...], Any]

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Mapping[str, Sequence[str]],
        registry: CollectorRegistry | None = None,
        **options: Any,
    ) -> None:
        base = name.removesuffix(self._suffix)
        self.name = base + self._suffix
        self._metric = self._client(base, help_text, tuple(labels), registry=registry, **options)
        self._keys = _LabelKeys(labels)
        self.label_names = self._keys.label_names
        self._memo = {}
        if self.label_names:
            for combo in self._keys.combinations:
                self._memo[combo] = self._recorder(self._metric.labels(*combo))
        else:
            self._memo[()] = self._recorder(self._metric)

    def _recorder(self, child: Any) -> Any:
        """What the memo keeps for ``child``: the child itself unless a subclass needs less."""
        return child

    def _child(self, values: tuple[str, ...]) -> Any:
        child = self._memo.get(values)
        if child is None:
            child = self._recorder(self._metric.labels(*self._keys.fold(values)))
            if len(self._memo) < _LabelKeys._MEMO_MAX:
                self._memo[values] = child
        return child


# Counters and histograms are updated on every policy request (three updates per request).
# prometheus-client's public inc/observe check on each call that the child has its labels and
# walk the buckets in a Python loop: three to five calls per update. The memo keeps the
# children's value objects' own ``inc`` instead (``_value``, ``_sum``, ``_buckets``: the objects
# inc/observe end in, memory-mapped in multiprocess mode); tests/test_api_policy.py checks that
# the exposition equals prometheus-client's own for the same updates.


class Counter(_Metric):
    _client = prometheus_client.Counter
    _suffix = "_total"

    def _recorder(self, child: Any) -> Callable[[float], None]:
        return child._value.inc  # type: ignore[no-any-return]

    def inc(self, *values: str, amount: float = 1.0) -> None:
        (self._memo.get(values) or self._child(values))(amount)


class Gauge(_Metric):
    _client = prometheus_client.Gauge

    def set(self, value: float, *values: str) -> None:
        self._child(values).set(value)


class Histogram(_Metric):
    _client = prometheus_client.Histogram

    def _recorder(self, child: Any) -> Callable[[float], None]:
        add_sum = child._sum.inc
        bucket_inc = [bucket.inc for bucket in child._buckets]
        # Ascending and ending in +Inf: the first bound >= value is prometheus-client's bucket.
        bounds = list(child._upper_bounds)

        def observe(value: float) -> None:
            add_sum(value)
            bucket_inc[bisect.bisect_left(bounds, value)](1)

        return observe

    def observe(self, value: float, *values: str) -> None:
        (self._memo.get(values) or self._child(values))(value)


_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
# Numbers that go up and down; every other number a component reports is a running count.
CALLBACK_GAUGES = frozenset(
    {"uptime_seconds", "flows_active", "write_queue", "recent_connections", "ring_interfaces"}
)


class CallbackMetrics(Collector):
    """Numbers read from a callback at every scrape, each exported as ``<prefix>_<name>``.

    For components that keep their own counters (the capture worker's ``metrics()``): nothing
    is copied between scrapes. Names in ``CALLBACK_GAUGES`` are gauges, the rest counters
    (``<prefix>_<name>_total``). Cardinality stays bounded: names must be plain identifiers,
    and only the first ``max_names`` distinct names are ever exported. A failing callback
    exports nothing rather than breaking /metrics. These run in the scraping process only:
    components that report this way run with one worker (``serve --capture``).
    """

    def __init__(
        self,
        prefix: str,
        help_text: str,
        callback: Callable[[], Mapping[str, float]],
        max_names: int = 64,
    ) -> None:
        self.prefix, self.help = prefix, help_text
        self.callback = callback
        self.max_names = max_names
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        try:
            values = dict(self.callback())
        except Exception:
            return
        for name, value in sorted(values.items()):
            if not isinstance(value, int | float) or not _NAME_RE.fullmatch(name):
                continue
            with self._lock:
                if name not in self._names:
                    if len(self._names) >= self.max_names:
                        continue
                    self._names.add(name)
            full = f"{self.prefix}_{name}"
            if name in CALLBACK_GAUGES:
                yield GaugeMetricFamily(full, f"{self.help} ({name})", value=value)
            else:
                yield CounterMetricFamily(full, f"{self.help} ({name})", value=value)

    def render(self) -> list[str]:
        """Text exposition of this collector alone."""
        registry = CollectorRegistry()
        registry.register(self)
        return [x for x in generate_latest(registry).decode().splitlines() if x]


# Kept for callers that knew the old name.
CallbackGauges = CallbackMetrics


class _WorkerProcesses(Collector):
    """``process_*`` of every live worker of a multiprocess run, labelled by ``pid``.

    The workers are the processes that have a value file in the run's directory.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        pids = sorted(
            {
                int(m.group(1))
                for f in glob.glob(os.path.join(self.path, "*.db"))
                if (m := re.search(r"_(\d+)\.db$", f))
            }
        )
        families: dict[str, Metric] = {}
        for pid in pids:
            if not os.path.exists(f"/proc/{pid}"):
                continue
            for metric in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, metric.documentation, metric.type
                    )
                for s in metric.samples:
                    family.add_sample(s.name, {**s.labels, "pid": str(pid)}, s.value)
        yield from families.values()


class Registry:
    """The metrics of one service: its own registry (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._extra: list[Collector] = []
        self._multiprocess = multiprocess_dir()
        if self._multiprocess is None:
            ProcessCollector(registry=self.registry)
            prometheus_client.PlatformCollector(registry=self.registry)

    def add(self, metric: Any) -> None:
        """Extra collectors (callbacks) reported by whichever process is scraped."""
        if callable(getattr(metric, "collect", None)):
            self._extra.append(metric)

    def render(self) -> str:
        if self._multiprocess is None:
            registry = self.registry
        else:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._multiprocess)
            registry.register(_WorkerProcesses(self._multiprocess))
        for extra in self._extra:
            if extra not in getattr(registry, "_collector_to_names", {}):
                try:
                    registry.register(extra)
                except ValueError:  # registered before (single-process registry)
                    pass
        return generate_latest(registry).decode()


def mark_worker_gone(pid: int | None = None) -> None:
    """A worker is stopping: its ``live`` gauges must no longer count."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), path)


_ACTIONS = ("allow", "tarpit", "reject")
_OUTCOMES = ("success", "failure", "policy_reject")
_DEGRADED = ("error", "timeout", "circuit_open")


class PolicyMetrics:
    """The service's metrics. Rule names come from the engine's table, so they are bounded."""

    requests: Counter
    verdicts: Counter
    reports: Counter
    degraded: Counter
    writer_dropped: Counter
    correlation: Counter

    def __init__(self, rule_names: Sequence[str]) -> None:
        commands = ("allow", "report")
        self.registry = Registry()
        r = self.registry.registry
        self.build_info = Gauge(
            "ja3svc_build_info",
            "Always 1; the labels say which ja3svc and Python answer.",
            {
                "version": (__version__,),
                "python": (".".join(map(str, sys.version_info[:3])),),
            },
            r,
            multiprocess_mode="max",
        )
        self.build_info.set(1, *self.build_info._keys.combinations[0])
        codes = ("200", "400", "401", "404", "405")
        enforced = ("true", "false")
        lookups = ("memory_hits", "database_hits", "mismatches", "misses", "database_errors")
        # attribute: (metric name, labels, help); every counter of this service's registry.
        counters: dict[str, tuple[str, Mapping[str, Sequence[str]], str]] = {
            "requests": ("ja3svc_policy_requests_total", {"command": commands, "code": codes},
                "Policy requests by command and HTTP status."),
            "verdicts": ("ja3svc_policy_verdicts_total",
                {"action": _ACTIONS, "rule": tuple(rule_names), "enforced": enforced},
                "Verdicts by action, rule and whether they were enforced (log-only mode)."),
            "reports": ("ja3svc_policy_reports_total", {"outcome": _OUTCOMES},
                "Reports by outcome."),
            "degraded": ("ja3svc_policy_degraded_total", {"reason": _DEGRADED},
                "Verdicts made without the database (cache only)."),
            "writer_dropped": ("ja3svc_policy_writes_dropped_total", {},
                "Report/audit writes dropped because the queue was full or the database failed."),
            "correlation": ("ja3svc_correlation_lookups_total", {"result": lookups},
                "Connection lookups for a policy request, by where the hello was found "
                "(mismatches: the peer's hello gives no profile's hash of the one Dovecot sent)."),
        }  # fmt: skip
        for attr, (name, labels, help_text) in counters.items():
            setattr(self, attr, self.counter(name, help_text, labels))
        self.latency = Histogram(
            "ja3svc_policy_request_seconds",
            "Time to answer a policy request.",
            {"command": commands},
            r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
        )
        # Every worker holds its own cache of the same labels: the largest is the one to see.
        self.cache_size = Gauge(
            "ja3svc_label_cache_entries",
            "Entries in the label cache.",
            {},
            r,
            multiprocess_mode="livemax",
        )

    def counter(self, name: str, help_text: str, labels: Mapping[str, Sequence[str]]) -> Counter:
        """Another counter in this service's registry (e.g. the Dovecot profile detector's)."""
        return Counter(name, help_text, labels, self.registry.registry)


def series_names(text: str) -> Iterable[str]:
    """The sample names of an exposition (for checks: which series a scrape holds)."""
    for line in text.splitlines():
        if line and not line.startswith("#"):
            yield re.split(r"[{ ]", line, maxsplit=1)[0]

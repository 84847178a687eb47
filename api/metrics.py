"""A tiny Prometheus text-format registry (no dependency, bounded label cardinality).

Label values are restricted to fixed sets given at creation; anything else is folded into
``other``, so a client sending random commands cannot grow the registry.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

OTHER = "other"


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class _LabelKeys:
    """Folds label values into the allowed sets (anything else becomes ``other``).

    Every policy request increments two or three series; folding each value anew cost more than
    the increment itself. Folded keys are memoised, and the memo is bounded by the number of
    distinct raw inputs it accepts: beyond that, values are folded without it.
    """

    _MEMO_MAX = 4096

    def __init__(self, labels: dict[str, Sequence[str]]) -> None:
        self.label_names = tuple(labels)
        self.allowed = tuple(frozenset(v) | {OTHER} for v in labels.values())
        self._memo: dict[tuple[str, ...], tuple[str, ...]] = {}

    def key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        key = self._memo.get(values)
        if key is None:
            key = tuple(v if v in ok else OTHER for v, ok in zip(values, self.allowed, strict=True))
            if len(self._memo) < self._MEMO_MAX:
                self._memo[values] = key
        return key


class Counter:
    def __init__(self, name: str, help_text: str, labels: dict[str, Sequence[str]]) -> None:
        self.name, self.help = name, help_text
        self._keys = _LabelKeys(labels)
        self.label_names = self._keys.label_names
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        key = self._keys.key(values)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for key, val in sorted(self._values.items()):
            out.append(f"{self.name}{_labels(self.label_names, key)} {_fmt(val)}")
        return out


class Gauge(Counter):
    def set(self, value: float, *values: str) -> None:
        key = self._keys.key(values)
        with self._lock:
            self._values[key] = value

    def render(self) -> list[str]:
        out = super().render()
        out[1] = f"# TYPE {self.name} gauge"
        return out


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        labels: dict[str, Sequence[str]],
    ) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._keys = _LabelKeys(labels)
        self.label_names = self._keys.label_names
        # per label key: bucket counts (non-cumulative, last is +Inf), sum, count
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *values: str) -> None:
        key = self._keys.key(values)
        idx = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 3)
            series[idx] += 1
            series[-2] += value
            series[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, series in sorted(self._series.items()):
            running = 0.0
            for i, bound in enumerate((*self.buckets, float("inf"))):
                running += series[i]
                names = (*self.label_names, "le")
                vals = (*key, _fmt(bound))
                out.append(f"{self.name}_bucket{_labels(names, vals)} {_fmt(running)}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {series[-2]!r}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {_fmt(series[-1])}")
        return out


class Renderable(Protocol):
    def render(self) -> list[str]: ...


_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")


class CallbackGauges:
    """Numbers read from a callback at every scrape, each exported as ``<prefix>_<name>``.

    For components that keep their own counters (the capture worker's ``metrics()``, the
    correlation's hit counts): nothing is copied between scrapes. Cardinality stays bounded:
    names must be plain identifiers, and only the first ``max_names`` distinct names are ever
    exported. A failing callback renders nothing rather than breaking /metrics.
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

    def render(self) -> list[str]:
        try:
            values = dict(self.callback())
        except Exception:
            return []
        out: list[str] = []
        for name, value in sorted(values.items()):
            if not isinstance(value, int | float) or not _NAME_RE.fullmatch(name):
                continue
            with self._lock:
                if name not in self._names:
                    if len(self._names) >= self.max_names:
                        continue
                    self._names.add(name)
            full = f"{self.prefix}_{name}"
            out.append(f"# HELP {full} {self.help} ({name})")
            out.append(f"# TYPE {full} gauge")
            out.append(f"{full} {_fmt(value)}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: list[Renderable] = []

    def add(self, metric: Renderable) -> None:
        self._metrics.append(metric)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class PolicyMetrics:
    """The service's metrics. Rule names come from the engine's table, so they are bounded."""

    def __init__(self, rule_names: Sequence[str]) -> None:
        commands = ("allow", "report")
        self.registry = Registry()
        self.requests = Counter(
            "ja3svc_policy_requests_total",
            "Policy requests by command and HTTP status.",
            {"command": commands, "code": ("200", "400", "401", "404", "405")},
        )
        self.verdicts = Counter(
            "ja3svc_policy_verdicts_total",
            "Verdicts by action, rule and whether they were enforced (log-only mode).",
            {
                "action": ("allow", "tarpit", "reject"),
                "rule": tuple(rule_names),
                "enforced": ("true", "false"),
            },
        )
        self.reports = Counter(
            "ja3svc_policy_reports_total",
            "Reports by outcome.",
            {"outcome": ("success", "failure", "policy_reject")},
        )
        self.latency = Histogram(
            "ja3svc_policy_request_seconds",
            "Time to answer a policy request.",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
            {"command": commands},
        )
        self.degraded = Counter(
            "ja3svc_policy_degraded_total",
            "Verdicts made without the database (cache only).",
            {"reason": ("error", "timeout", "circuit_open")},
        )
        self.writer_dropped = Counter(
            "ja3svc_policy_writes_dropped_total",
            "Report/audit writes dropped because the queue was full or the database failed.",
            {},
        )
        self.cache_size = Gauge("ja3svc_label_cache_entries", "Entries in the label cache.", {})
        for m in (
            self.requests,
            self.verdicts,
            self.reports,
            self.latency,
            self.degraded,
            self.writer_dropped,
            self.cache_size,
        ):
            self.registry.add(m)

"""Which OpenSSL the Dovecot asking us links, told from connections the capture also saw.

A Dovecot 2.4 hashes a hello with the extensions its OpenSSL knows (ja3svc.dovecot). When a
request carries Dovecot's hash and the correlation found that connection's hello, the profiles
under which the hello gives that hash are the candidates; hellos that use an extension the
profiles disagree on (27, 19, 20: every OpenSSL 3.5 client) leave exactly one. The answer is
shown by /readyz, /api/v1/stats and a metric, logged once when it is first known or changes,
and a hash no profile explains (a newer OpenSSL than this ja3svc knows) is warned about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ja3svc.api.metrics import Counter, PolicyMetrics

from ja3svc.dovecot import OPENSSL_PROFILES, PROFILE_DESCRIPTIONS, profiles_matching

log = logging.getLogger("ja3svc.policy")

# Outcomes of one observed connection: a single profile, several (the hello does not tell them
# apart), or none.
AMBIGUOUS = "ambiguous"
NONE = "none"
OUTCOMES = (*OPENSSL_PROFILES, AMBIGUOUS, NONE)
# A warning about unexplained hashes at most this often (one log line, not one per login).
WARN_INTERVAL_SECONDS = 600.0


class ProfileDetector:
    def __init__(self, counter: Counter, clock: Callable[[], float]) -> None:
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._counter = counter
        self._clock = clock
        self._announced = ""
        self._warned_at: float | None = None

    def observe(self, dovecot_hash: str, by_profile: Mapping[str, str]) -> str:
        """Count one connection whose Dovecot hash and hello (``{profile: hash}``) are known;
        return the outcome."""
        matching = profiles_matching(dovecot_hash, dict(by_profile))
        outcome = matching[0] if len(matching) == 1 else (AMBIGUOUS if matching else NONE)
        self.counts[outcome] += 1
        self._counter.inc(outcome)
        if outcome == NONE:
            now = self._clock()
            if self._warned_at is None or now - self._warned_at >= WARN_INTERVAL_SECONDS:
                self._warned_at = now
                log.warning(
                    "Dovecot's JA3 matches no known OpenSSL profile",
                    extra={
                        "fields": {
                            "ja3": dovecot_hash,
                            "profiles": ", ".join(OPENSSL_PROFILES),
                            "hint": "Dovecot may link an OpenSSL newer than this ja3svc knows; "
                            "labels on its hashes still match, the capture's do not",
                            "unexplained": self.counts[NONE],
                        }
                    },
                )
        detected = self.detected
        if detected and detected != self._announced:
            self._announced = detected
            log.info(
                "Dovecot OpenSSL profile detected",
                extra={
                    "fields": {
                        "profile": detected,
                        "description": PROFILE_DESCRIPTIONS[detected],
                        "connections": self.counts[detected],
                    }
                },
            )
        return outcome

    @property
    def detected(self) -> str:
        """The profile that explains the most connections ("" before any connection that tells
        the profiles apart)."""
        best = max(OPENSSL_PROFILES, key=lambda p: self.counts[p])
        return best if self.counts[best] else ""

    def summary(self) -> dict[str, Any]:
        detected = self.detected
        out: dict[str, Any] = {
            "profile": detected or None,
            "description": PROFILE_DESCRIPTIONS.get(detected),
            "connections": dict(self.counts),
        }
        if self.counts[NONE]:
            out["warning"] = (
                f"{self.counts[NONE]} connection(s) with a Dovecot hash no known OpenSSL "
                "profile explains"
            )
        return out


def profile_counter(metrics: PolicyMetrics) -> Counter:
    return metrics.counter(
        "ja3svc_dovecot_profile_connections_total",
        "Connections seen both by the capture and in a Dovecot hash, by the OpenSSL profile "
        "that explains the hash (ambiguous: the hello does not tell; none: no known profile).",
        {"outcome": OUTCOMES},
    )

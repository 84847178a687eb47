"""The verdict engine: pure, table-driven and explainable.

Rules of this file:
- ``RULES`` below is the whole policy. Each rule looks at :class:`PolicyInputs` and either
  returns a :class:`Hit` (action, why, which labels) or ``None``; the first hit wins.
- A verdict always names the rule that produced it and carries every reason collected on the way,
  so the audit log can answer "why was alice tarpitted at 10:02?".
- No IO and no clock: the caller gathers facts (labels, the account's history, reputation counts)
  and passes them in; the same inputs always give the same verdict.
- Stage handling is applied after the table: Dovecot honours a positive status only on the
  before-auth allow, so a tarpit on the after-auth allow becomes 0. Log-only mode is applied last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ja3svc.policy.facts import Action, LabelFact, PolicyInputs, Reputation, Stage


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The knobs of the rules (built from ``PolicySettings`` by the service)."""

    unknown_action: Action = Action.ALLOW
    no_fingerprint_action: Action = Action.ALLOW
    new_fingerprint_action: Action = Action.ALLOW
    user_min_successes: int = 3
    randomising_min_hashes: int = 3  # 0 disables rule_randomising_client
    tarpit_seconds: int = 5
    max_tarpit_seconds: int = 60
    deny_min_confidence: int = 80
    # login -> (action, tarpit seconds or None): administrator's per-account overrides.
    user_actions: Mapping[str, tuple[Action, int | None]] = field(default_factory=dict)
    reputation_tarpit_accounts: int = 5  # 0 disables
    reputation_reject_accounts: int = 20  # 0 disables
    # Failures judged everywhere (not only on their own network) need this many networks, and
    # more failed existing accounts than this many times the fingerprint's successful accounts.
    reputation_min_networks: int = 3
    reputation_success_ratio: float = 1.0
    log_only: bool = False
    reject_message: str = "Login refused by policy."
    fail_open: bool = True


def parse_action(text: str) -> tuple[Action, int | None]:
    """``"allow"``, ``"reject"``, ``"tarpit"`` or ``"tarpit:N"`` (as in ``user_actions``)."""
    name, _, seconds = text.strip().lower().partition(":")
    action = Action(name)  # ValueError names the bad value
    if seconds and action is not Action.TARPIT:
        raise ValueError(f"only tarpit takes seconds: {text!r}")
    return action, (int(seconds) if seconds else None)


class Hit(NamedTuple):
    """What a rule found. The rules that end most verdicts (an established or an unknown
    fingerprint) build theirs with ``tuple.__new__``, all four fields given: calling a named
    tuple's class runs its Python-level ``__new__`` for the same tuple (~1,500 instructions
    under callgrind)."""

    action: Action
    reason: str
    labels: tuple[LabelFact, ...] = ()
    tarpit_seconds: int | None = None


class Verdict(NamedTuple):
    """The answer to Dovecot plus its explanation.

    ``status``/``msg`` is exactly what goes on the wire. ``action`` is what the rules decided;
    in log-only mode ``status`` is 0 and ``enforced`` is False while ``action`` keeps the
    decision that would have been applied.
    """

    status: int
    msg: str
    action: Action
    rule: str
    reasons: tuple[str, ...]
    labels: tuple[LabelFact, ...] = ()
    enforced: bool = True

    def response(self) -> dict[str, object]:
        if self.status < 0:
            return {"status": self.status, "msg": self.msg}
        return {"status": self.status}


Rule = Callable[[PolicyInputs, PolicyConfig], Hit | None]


def _fingerprint_labels(inp: PolicyInputs) -> tuple[LabelFact, ...]:
    if not inp.labels:
        return ()
    refs = inp.request.fingerprints
    return tuple([lb for lb in inp.labels if (lb.kind, lb.value) in refs])


def _with_action(inp: PolicyInputs, action: str) -> tuple[LabelFact, ...]:
    # Most logins carry no label at all; four label rules ask this for every verdict.
    if not inp.labels:
        return ()
    return tuple([lb for lb in inp.labels if lb.action == action])


def _describe(labels: tuple[LabelFact, ...]) -> str:
    return ", ".join(
        f"{lb.kind}:{lb.value[:16]} ({lb.client_name or lb.category or lb.source or 'label'})"
        for lb in labels
    )


def rule_user_override(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    found = cfg.user_actions.get(inp.request.login)
    if found is None:
        return None
    action, seconds = found
    return Hit(action, f"per-account rule for {inp.request.login!r}", (), seconds)


def rule_fail_closed(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    # Only when the database could not be asked AND the cache had nothing: with fail_open the
    # remaining rules run on whatever the cache knew.
    if inp.degraded and not cfg.fail_open and not inp.labels:
        return Hit(Action.REJECT, "fingerprint database unavailable and fail_open is off")
    return None


def rule_label_deny(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    if not inp.labels:
        return None
    strong = tuple(
        [lb for lb in _with_action(inp, "deny") if lb.confidence >= cfg.deny_min_confidence]
    )
    if strong:
        return Hit(Action.REJECT, f"deny label on {_describe(strong)}", strong)
    return None


def rule_label_allow(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    # An explicit allow is an allow-list entry: it overrides tarpit labels, reputation and the
    # rules for unknown fingerprints, but not a confident deny (checked first).
    if not inp.labels:
        return None
    allow = _with_action(inp, "allow")
    if allow:
        return Hit(Action.ALLOW, f"allow label on {_describe(allow)}", allow)
    return None


def rule_label_tarpit(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    if not inp.labels:
        return None
    weak_deny = tuple(
        [lb for lb in _with_action(inp, "deny") if lb.confidence < cfg.deny_min_confidence]
    )
    tarpit = _with_action(inp, "tarpit") + weak_deny
    if not tarpit:
        return None
    seconds = max((lb.tarpit_seconds or cfg.tarpit_seconds) for lb in tarpit)
    why = "tarpit label" if not weak_deny else "tarpit or low-confidence deny label"
    return Hit(Action.TARPIT, f"{why} on {_describe(tarpit)}", tarpit, seconds)


def rule_established_fingerprint(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    # The account's own history outweighs what others did with the same fingerprint: anyone can
    # copy a popular client's hello and fail logins with it, and global reputation must not let
    # them lock out the accounts that have used that client all along. Labels (the
    # administrator's word) are still checked first.
    hist = inp.history
    if hist.successes < cfg.user_min_successes or not hist.known:
        return None
    for f in inp.request.fingerprints:
        if f in hist.known:
            rep = inp.reputation
            why = (
                f"fingerprint {f.kind}:{f.value[:16]} is established for this account "
                f"({hist.successes} successful logins)"
            )
            if rep.distinct_failed_accounts:
                why += (
                    f"; its failures on {rep.distinct_failed_accounts} other accounts in "
                    f"{rep.window_seconds}s do not count against it"
                )
            return tuple.__new__(Hit, (Action.ALLOW, why, _fingerprint_labels(inp), None))
    return None


def reputation_scope(rep: Reputation, cfg: PolicyConfig, threshold: int) -> str | None:
    """Why ``rep`` reaches ``threshold`` failed accounts in a scope the request falls in, or
    None. Two scopes (README, "Reputation model"):

    - the request's own network: the accounts that failed with the fingerprint from there, of
      any failure type (a sprayer's network is held up, unknown login names included);
    - everywhere, only when the failures cannot be one network's doing or made-up names:
      accounts that exist (``fail_type`` not ``account``), from at least
      ``reputation_min_networks`` networks, and more than ``reputation_success_ratio`` times
      the accounts that logged in successfully with the fingerprint in the same window (a
      popular client's many real users outweigh what an attacker can fail with its hello).
    """
    if not threshold:
        return None
    window = rep.window_seconds
    n = rep.network_failed_accounts
    if rep.network and n >= threshold:
        return f"fingerprint failed logins of {n} accounts from {rep.network} in {window}s"
    n = rep.counted_failed_accounts
    if (
        n >= threshold
        and rep.failed_networks >= cfg.reputation_min_networks
        and n > cfg.reputation_success_ratio * rep.succeeded_accounts
    ):
        return (
            f"fingerprint failed logins of {n} existing accounts from {rep.failed_networks} "
            f"networks in {window}s, against {rep.succeeded_accounts} accounts that logged in "
            "with it"
        )
    return None


# Both reputation rules first check what most verdicts show: no account failed in either scope,
# so with a positive threshold ``reputation_scope`` is None without being asked (every rule of the
# table runs for most logins, and a call costs more than the test).


def rule_reputation_reject(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    rep = inp.reputation
    if not (rep.network_failed_accounts or rep.counted_failed_accounts) and (
        cfg.reputation_reject_accounts > 0
    ):
        return None
    why = reputation_scope(rep, cfg, cfg.reputation_reject_accounts)
    if why is None:
        return None
    return Hit(Action.REJECT, f"{why} (reject at {cfg.reputation_reject_accounts})")


def rule_reputation_tarpit(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    rep = inp.reputation
    if not (rep.network_failed_accounts or rep.counted_failed_accounts) and (
        cfg.reputation_tarpit_accounts > 0
    ):
        return None
    why = reputation_scope(rep, cfg, cfg.reputation_tarpit_accounts)
    if why is None:
        return None
    return Hit(Action.TARPIT, f"{why} (tarpit at {cfg.reputation_tarpit_accounts})")


def rule_randomising_client(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    """Dovecot's hash alone, new to an account whose client brings a new hash to every login.

    GnuTLS 3.8 permutes its extensions and GREASE stacks send a random cipher, and Dovecot's
    hash keeps both, so such an account's logins each look like "a new fingerprint". The
    account's own record shows it: of its most recently first-seen Dovecot hashes, at least
    ``randomising_min_hashes`` and at least half were used for one successful login only. Then
    a new hash is what this account always brings, and the two new-fingerprint rules do not
    apply. Bounded: only without a capture (with one, the stable JA4/JA3N decide), only for a
    hash no label speaks about (labels, per-account rules and reputation come first), and only
    for accounts whose own successful logins showed the pattern.
    """
    hist = inp.history
    single, recent = hist.single_use_hashes, hist.recent_hashes
    need = cfg.randomising_min_hashes
    if not need or inp.request.correlated or single < need or single * 2 < recent:
        return None
    fps = inp.request.fingerprints
    if not fps or _fingerprint_labels(inp):
        return None
    known = hist.known
    for f in fps:
        if f in known:
            return None  # not new: the usual rules allow it anyway
    return Hit(
        Action.ALLOW,
        f"randomising client: {single} of the account's {recent} most recent Dovecot hashes "
        "came with one login each, so a new hash is expected; new-fingerprint rules not applied "
        "(a capture would give its stable JA4/JA3N)",
    )


def rule_new_fingerprint_for_user(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    fps = inp.request.fingerprints
    hist = inp.history
    if not fps or hist.successes < cfg.user_min_successes or not hist.known:
        return None
    for f in fps:
        if f in hist.known:
            return None
    return Hit(
        cfg.new_fingerprint_action,
        f"account has {len(hist.known)} known fingerprints from {hist.successes} successful "
        "logins; this one is new to it",
    )


_UNKNOWN = "fingerprint has no label and is new to this account"


def rule_unknown_fingerprint(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    fps = inp.request.fingerprints
    if not fps or _fingerprint_labels(inp):
        return None
    known = inp.history.known
    if known:
        for f in fps:
            if f in known:
                return None  # the account itself has logged in with it before
    return tuple.__new__(Hit, (cfg.unknown_action, _UNKNOWN, (), None))


def rule_no_fingerprint(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    if inp.request.fingerprints:
        return None
    why = "request carries no fingerprint (Dovecot 2.3, plaintext or proxy-terminated TLS)"
    return Hit(cfg.no_fingerprint_action, why)


def rule_default(inp: PolicyInputs, cfg: PolicyConfig) -> Hit | None:
    labels = _fingerprint_labels(inp)
    why = f"known fingerprint: {_describe(labels)}" if labels else "no rule matched"
    return Hit(Action.ALLOW, why, labels)


# The policy, in order. First hit wins.
RULES: tuple[tuple[str, Rule], ...] = (
    ("user_override", rule_user_override),
    ("fail_closed", rule_fail_closed),
    ("label_deny", rule_label_deny),
    ("label_allow", rule_label_allow),
    ("label_tarpit", rule_label_tarpit),
    ("established_fingerprint", rule_established_fingerprint),
    ("reputation_reject", rule_reputation_reject),
    ("reputation_tarpit", rule_reputation_tarpit),
    ("randomising_client", rule_randomising_client),
    ("new_fingerprint_for_user", rule_new_fingerprint_for_user),
    ("unknown_fingerprint", rule_unknown_fingerprint),
    ("no_fingerprint", rule_no_fingerprint),
    ("default", rule_default),
)


_NO_MATCH = Hit(Action.ALLOW, "no rule matched")


def evaluate(inp: PolicyInputs, cfg: PolicyConfig) -> Verdict:
    """Apply ``RULES`` to ``inp`` and turn the first hit into Dovecot's answer."""
    reasons: list[str] = []
    if inp.degraded:
        reasons.append("database unavailable: labels from cache, no history or reputation")
    name, hit = "default", _NO_MATCH  # unreachable while rule_default ends the table
    for rule_name, rule in RULES:
        found = rule(inp, cfg)
        if found is not None:
            name, hit = rule_name, found
            break
    reasons.append(f"{name}: {hit.reason}")

    action = hit.action
    if action is Action.REJECT:
        status, msg = -1, cfg.reject_message
    elif action is Action.TARPIT:
        seconds = hit.tarpit_seconds or cfg.tarpit_seconds
        status, msg = max(1, min(seconds, cfg.max_tarpit_seconds)), ""
        if inp.request.stage is Stage.AFTER_AUTH:
            # Dovecot ignores a positive status here; answering 0 keeps the wire honest.
            reasons.append("tarpit applies to the before-auth allow only; after-auth answers 0")
            status = 0
    else:
        status, msg = 0, ""

    enforced = True
    if cfg.log_only and status != 0:
        reasons.append(f"log-only mode: would answer {status}, answered 0")
        status, msg, enforced = 0, "", False
    # tuple.__new__ straight away: the class call would go through the named tuple's Python-level
    # __new__ for the same tuple (one Verdict per allow).
    return tuple.__new__(Verdict, (status, msg, action, name, tuple(reasons), hit.labels, enforced))

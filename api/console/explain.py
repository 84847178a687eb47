"""Plain-language explanations of audit-log rows: which rule decided and on what."""

from __future__ import annotations

from typing import Any

from ja3svc.policy import RULES

# One line per rule of ja3svc.policy.engine.RULES (a test checks none is missing), plus the
# rows written for Dovecot's reports.
RULE_TEXT: dict[str, str] = {
    "user_override": "policy.user_actions names this account: its action applies first.",
    "fail_closed": "The database was unreachable, no cached label answered, and fail_open is "
    "off: refused.",
    "label_deny": "A deny label at or above deny_min_confidence matched a fingerprint of the "
    "connection.",
    "label_allow": "An allow label matched: allow-listed, no rule below was asked.",
    "label_tarpit": "A tarpit label (or a deny label below the confidence bar) matched.",
    "reputation_reject": "This fingerprint failed logins of many distinct accounts recently "
    "(reputation_reject_accounts).",
    "reputation_tarpit": "This fingerprint failed logins of several distinct accounts recently "
    "(reputation_tarpit_accounts).",
    "randomising_client": "Dovecot's hash is new, but this account's client brings a new hash "
    "to nearly every login (GREASE or permuted extensions): not treated as a new client.",
    "new_fingerprint_for_user": "An established account logged in with a fingerprint it never "
    "used before (new_fingerprint_action).",
    "unknown_fingerprint": "Nobody labelled this fingerprint and the account never used it "
    "(unknown_action).",
    "no_fingerprint": "The request carried no fingerprint and no captured hello matched its "
    "connection (no_fingerprint_action).",
    "default": "A known fingerprint with nothing against it: allowed.",
    "report": "Dovecot reported the login's outcome (learning and reputation).",
}
assert {name for name, _ in RULES} <= set(RULE_TEXT), "a rule has no explanation"


def verdict_class(action: str) -> str:
    """CSS class of a verdict or report outcome."""
    base = action.removeprefix("log:")
    return {
        "allow": "ok", "success": "ok", "tarpit": "warn", "reject": "bad", "failure": "bad",
        "policy_reject": "bad",
    }.get(base, "plain")  # fmt: skip


def explain(d: dict[str, Any], connection: list[tuple[str, str]]) -> dict[str, Any]:
    """A decision row with what the pages show: the rule's explanation, the labels that
    produced it, and the fingerprints to link to (Dovecot's hash, else the connection's)."""
    refs: list[tuple[str, str]] = []
    if d.get("ja3_hash"):
        refs.append(("ja3_dovecot", d["ja3_hash"]))
    for ref in connection:
        if ref not in refs:
            refs.append(ref)
    return {
        **d,
        "explanation": RULE_TEXT.get(d.get("rule") or "", ""),
        "css": verdict_class(d.get("action") or ""),
        "log_only": (d.get("action") or "").startswith("log:"),
        "refs": refs,
    }

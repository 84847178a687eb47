"""Plain-language explanations of verdicts: what each rule of ``RULES`` means, for the audit
log's readers (the console, ``ja3svc decisions --explain``)."""

from __future__ import annotations

from ja3svc.policy.engine import RULES

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
    "(reputation_reject_accounts), from this network, or from several networks on existing "
    "accounts outnumbering its successful ones.",
    "established_fingerprint": "The account has logged in successfully with this fingerprint "
    "before (user_min_successes): its own history outweighs failures others had with it.",
    "reputation_tarpit": "This fingerprint failed logins of several distinct accounts recently "
    "(reputation_tarpit_accounts), from this network, or from several networks on existing "
    "accounts outnumbering its successful ones.",
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


def explain_rule(rule: str | None) -> str:
    """One sentence on what ``rule`` (a verdict's rule name) means; "" for an unknown name."""
    return RULE_TEXT.get(rule or "", "")

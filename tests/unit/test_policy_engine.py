"""The pure verdict engine: one test per rule of ``RULES`` plus stage and log-only handling."""

from __future__ import annotations

import dataclasses

import pytest

from ja3svc.policy import (
    RULES,
    Action,
    FingerprintRef,
    LabelFact,
    PolicyConfig,
    PolicyInputs,
    Reputation,
    RequestFacts,
    Stage,
    UserHistory,
    evaluate,
    parse_action,
)

H = "8a9d5d0f12f7d43ee3af1c51d2998d99"
OTHER = "b7e9d913d85c071f5b806d59601e9b96"
FPS = (FingerprintRef("ja3_dovecot", H), FingerprintRef("ja3", H))


def req(login: str = "alice", fps: tuple[FingerprintRef, ...] = FPS, **kw: object) -> RequestFacts:
    return RequestFacts(login=login, fingerprints=fps, session_id="s1", **kw)  # type: ignore[arg-type]


def label(action: str, kind: str = "ja3", value: str = H, **kw: object) -> LabelFact:
    return LabelFact(kind=kind, value=value, action=action, source="manual", **kw)  # type: ignore[arg-type]


CFG = PolicyConfig()


def test_rule_names_are_unique_and_default_is_last():
    names = [n for n, _ in RULES]
    assert len(names) == len(set(names))
    assert names[-1] == "default"


def test_deny_label_rejects_with_configured_message():
    cfg = dataclasses.replace(CFG, reject_message="Go away")
    v = evaluate(PolicyInputs(req(), labels=(label("deny", client_name="Hydra"),)), cfg)
    assert (v.status, v.msg, v.rule, v.action) == (-1, "Go away", "label_deny", Action.REJECT)
    assert v.labels[0].client_name == "Hydra"
    assert v.response() == {"status": -1, "msg": "Go away"}
    assert any("Hydra" in r for r in v.reasons)


def test_label_on_dovecot_variant_kind_matches_too():
    v = evaluate(PolicyInputs(req(), labels=(label("deny", kind="ja3_dovecot"),)), CFG)
    assert v.rule == "label_deny"


def test_low_confidence_deny_only_tarpits():
    v = evaluate(PolicyInputs(req(), labels=(label("deny", confidence=30),)), CFG)
    assert v.action is Action.TARPIT and v.status == CFG.tarpit_seconds
    assert v.response() == {"status": CFG.tarpit_seconds}


def test_confident_deny_beats_allow_and_allow_beats_tarpit():
    both = (label("allow"), label("deny", kind="ja3_dovecot"))
    assert evaluate(PolicyInputs(req(), labels=both), CFG).rule == "label_deny"
    mixed = (label("allow"), label("tarpit", kind="ja3_dovecot"))
    assert evaluate(PolicyInputs(req(), labels=mixed), CFG).rule == "label_allow"


def test_allow_label_overrides_bad_reputation():
    inp = PolicyInputs(req(), labels=(label("allow"),), reputation=Reputation(999, 999, 60))
    assert evaluate(inp, CFG).action is Action.ALLOW


def test_tarpit_label_uses_its_seconds_capped():
    v = evaluate(PolicyInputs(req(), labels=(label("tarpit", tarpit_seconds=7),)), CFG)
    assert (v.rule, v.status) == ("label_tarpit", 7)
    v = evaluate(PolicyInputs(req(), labels=(label("tarpit", tarpit_seconds=9999),)), CFG)
    assert v.status == CFG.max_tarpit_seconds


def test_tarpit_only_on_before_auth_allow():
    inp = PolicyInputs(req(stage=Stage.AFTER_AUTH), labels=(label("tarpit"),))
    v = evaluate(inp, CFG)
    assert v.action is Action.TARPIT and v.status == 0
    assert any("after-auth" in r for r in v.reasons)


def test_reject_applies_after_auth_too():
    inp = PolicyInputs(req(stage=Stage.AFTER_AUTH), labels=(label("deny"),))
    assert evaluate(inp, CFG).status == -1


@pytest.mark.parametrize(
    ("accounts", "rule", "status"),
    [
        (4, "unknown_fingerprint", 0),
        (5, "reputation_tarpit", 5),
        (19, "reputation_tarpit", 5),
        (20, "reputation_reject", -1),
    ],
)
def test_reputation_thresholds(accounts, rule, status):
    v = evaluate(PolicyInputs(req(), reputation=Reputation(accounts, accounts * 3, 3600)), CFG)
    assert (v.rule, v.status) == (rule, status)


def test_reputation_zero_threshold_disables():
    cfg = dataclasses.replace(CFG, reputation_tarpit_accounts=0, reputation_reject_accounts=0)
    v = evaluate(PolicyInputs(req(), reputation=Reputation(10_000, 10_000, 60)), cfg)
    assert v.action is Action.ALLOW


def test_new_fingerprint_for_established_account():
    cfg = dataclasses.replace(CFG, new_fingerprint_action=Action.REJECT)
    hist = UserHistory(frozenset({FingerprintRef("ja3_dovecot", OTHER)}), successes=10)
    v = evaluate(PolicyInputs(req(), history=hist), cfg)
    assert (v.rule, v.status) == ("new_fingerprint_for_user", -1)
    # Known to the account: no complaint, and not "unknown" either.
    hist_ok = UserHistory(frozenset({FingerprintRef("ja3_dovecot", H)}), successes=10)
    v = evaluate(
        PolicyInputs(req(), history=hist_ok), dataclasses.replace(cfg, unknown_action=Action.REJECT)
    )
    assert (v.rule, v.status) == ("established_fingerprint", 0)


@pytest.mark.parametrize("failed_accounts", [5, 20, 1000])
def test_established_fingerprint_outweighs_reputation(failed_accounts):
    rep = Reputation(failed_accounts, failed_accounts * 2, 3600)
    own = UserHistory(frozenset({FingerprintRef("ja3_dovecot", H)}), successes=5)
    v = evaluate(PolicyInputs(req(), history=own, reputation=rep), CFG)
    assert (v.rule, v.status, v.enforced) == ("established_fingerprint", 0, True)
    # The verdict says why, with the facts: the account's logins and the others' failures.
    assert "5 successful logins" in v.reasons[-1]
    assert f"{failed_accounts} other accounts in 3600s" in v.reasons[-1]
    # Too few successes to be established: reputation decides.
    young = UserHistory(frozenset({FingerprintRef("ja3_dovecot", H)}), successes=1)
    v = evaluate(PolicyInputs(req(), history=young, reputation=rep), CFG)
    assert v.rule.startswith("reputation_") and v.status != 0
    # An administrator's deny label still wins over the account's history.
    v = evaluate(PolicyInputs(req(), labels=(label("deny"),), history=own, reputation=rep), CFG)
    assert (v.rule, v.status) == ("label_deny", -1)


def test_new_fingerprint_needs_established_account():
    cfg = dataclasses.replace(CFG, new_fingerprint_action=Action.REJECT, user_min_successes=5)
    hist = UserHistory(frozenset({FingerprintRef("ja3_dovecot", OTHER)}), successes=4)
    assert evaluate(PolicyInputs(req(), history=hist), cfg).rule == "unknown_fingerprint"


@pytest.mark.parametrize("action", list(Action))
def test_unknown_fingerprint_action(action):
    cfg = dataclasses.replace(CFG, unknown_action=action, tarpit_seconds=3)
    v = evaluate(PolicyInputs(req()), cfg)
    assert v.rule == "unknown_fingerprint" and v.action is action
    assert v.status == {Action.ALLOW: 0, Action.TARPIT: 3, Action.REJECT: -1}[action]


def test_label_none_makes_fingerprint_known():
    cfg = dataclasses.replace(CFG, unknown_action=Action.REJECT)
    v = evaluate(PolicyInputs(req(), labels=(label("none", client_name="Thunderbird"),)), cfg)
    assert (v.rule, v.status) == ("default", 0)
    assert "Thunderbird" in v.reasons[-1]


def test_no_fingerprint_action():
    cfg = dataclasses.replace(CFG, no_fingerprint_action=Action.REJECT, unknown_action=Action.ALLOW)
    v = evaluate(PolicyInputs(req(fps=())), cfg)
    assert (v.rule, v.status) == ("no_fingerprint", -1)


def test_user_override_comes_first():
    cfg = dataclasses.replace(CFG, user_actions={"bob": parse_action("tarpit:2")})
    v = evaluate(PolicyInputs(req("bob"), labels=(label("allow"),)), cfg)
    assert (v.rule, v.status) == ("user_override", 2)
    assert evaluate(PolicyInputs(req("alice")), cfg).rule != "user_override"


def test_parse_action():
    assert parse_action("reject") == (Action.REJECT, None)
    assert parse_action(" Tarpit:4 ") == (Action.TARPIT, 4)
    for bad in ("block", "allow:3", "tarpit:x"):
        with pytest.raises(ValueError):
            parse_action(bad)


def test_log_only_answers_zero_but_keeps_decision():
    cfg = dataclasses.replace(CFG, log_only=True)
    v = evaluate(PolicyInputs(req(), labels=(label("deny"),)), cfg)
    assert v.status == 0 and v.msg == "" and not v.enforced
    assert v.action is Action.REJECT and v.rule == "label_deny"
    assert any("log-only" in r for r in v.reasons)


def test_degraded_fail_closed_rejects_only_without_cached_labels():
    cfg = dataclasses.replace(CFG, fail_open=False)
    v = evaluate(PolicyInputs(req(), degraded=True), cfg)
    assert (v.rule, v.status) == ("fail_closed", -1)
    v = evaluate(PolicyInputs(req(), labels=(label("allow"),), degraded=True), cfg)
    assert v.rule == "label_allow"
    v = evaluate(PolicyInputs(req(), degraded=True), CFG)
    assert v.status == 0 and "database unavailable" in v.reasons[0]


def test_same_inputs_same_verdict():
    inp = PolicyInputs(req(), labels=(label("tarpit"),), reputation=Reputation(3, 3, 60))
    assert evaluate(inp, CFG) == evaluate(inp, CFG)

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
    network_of,
    parse_action,
)
from tests.support.records import assert_keyword_constructor

H = "8a9d5d0f12f7d43ee3af1c51d2998d99"
OTHER = "b7e9d913d85c071f5b806d59601e9b96"
FPS = (FingerprintRef("ja3_dovecot", H), FingerprintRef("ja3", H))


def req(login: str = "alice", fps: tuple[FingerprintRef, ...] = FPS, **kw: object) -> RequestFacts:
    return RequestFacts(login=login, fingerprints=fps, session_id="s1", **kw)  # type: ignore[arg-type]


def label(action: str, kind: str = "ja3", value: str = H, **kw: object) -> LabelFact:
    return LabelFact(kind=kind, value=value, action=action, source="manual", **kw)  # type: ignore[arg-type]


CFG = PolicyConfig()


@pytest.mark.parametrize("cls", [RequestFacts, PolicyInputs])
def test_keyword_constructor_builds_what_the_class_builds(cls: type) -> None:
    assert_keyword_constructor(cls)


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
    inp = PolicyInputs(req(), labels=(label("allow"),), reputation=on_network(999, 60))
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


NET = "203.0.113.0/24"


def on_network(accounts: int, window: int = 3600) -> Reputation:
    """``accounts`` failed with the fingerprint from the request's own network, nowhere else."""
    return Reputation(accounts, accounts * 3, window, NET, accounts, accounts, 1, 0)


@pytest.mark.parametrize(
    ("accounts", "rule", "status"),
    [
        (4, "unknown_fingerprint", 0),
        (5, "reputation_tarpit", 5),
        (19, "reputation_tarpit", 5),
        (20, "reputation_reject", -1),
    ],
)
def test_reputation_thresholds_on_the_failing_network(accounts, rule, status):
    v = evaluate(PolicyInputs(req(), reputation=on_network(accounts)), CFG)
    assert (v.rule, v.status) == (rule, status)
    if status:
        assert f"from {NET} in 3600s" in v.reasons[-1]


def test_reputation_zero_threshold_disables():
    cfg = dataclasses.replace(CFG, reputation_tarpit_accounts=0, reputation_reject_accounts=0)
    v = evaluate(PolicyInputs(req(), reputation=on_network(10_000, 60)), cfg)
    assert v.action is Action.ALLOW


def test_failures_from_one_network_do_not_count_on_another():
    # 1,000 accounts failed from one network: a login from another network is not held up.
    rep = Reputation(1000, 1000, 3600, "198.51.100.0/24", 0, 1000, 1, 0)
    v = evaluate(PolicyInputs(req(), reputation=rep), CFG)
    assert (v.rule, v.status) == ("unknown_fingerprint", 0)
    # Nor from two networks (reputation_min_networks is 3) ...
    v = evaluate(PolicyInputs(req(), reputation=rep._replace(failed_networks=2)), CFG)
    assert v.status == 0
    # ... but from three, with nobody logging in successfully with it: everywhere.
    v = evaluate(PolicyInputs(req(), reputation=rep._replace(failed_networks=3)), CFG)
    assert (v.rule, v.status) == ("reputation_reject", -1)
    assert "1000 existing accounts from 3 networks" in v.reasons[-1]
    assert "against 0 accounts that logged in with it" in v.reasons[-1]


@pytest.mark.parametrize(
    ("counted", "succeeded", "rule"),
    [
        (20, 19, "reputation_reject"),
        (20, 20, "unknown_fingerprint"),  # not more failed than successful accounts
        (60, 50, "reputation_reject"),
        (40, 50, "unknown_fingerprint"),
        (6, 5, "reputation_tarpit"),
    ],
)
def test_failures_everywhere_are_weighed_against_successful_accounts(counted, succeeded, rule):
    rep = Reputation(counted, counted, 3600, "198.51.100.0/24", 0, counted, 5, succeeded)
    assert evaluate(PolicyInputs(req(), reputation=rep), CFG).rule == rule
    # A stricter ratio: twice as many failed accounts as successful ones are needed.
    strict = dataclasses.replace(CFG, reputation_success_ratio=2.0)
    if counted <= 2 * succeeded:
        assert evaluate(PolicyInputs(req(), reputation=rep), strict).rule == "unknown_fingerprint"


def test_unknown_accounts_count_on_their_network_only():
    # 500 failures on names the password database does not know (fail_type "account"), from 5
    # networks: they are not counted everywhere (counted_failed_accounts is 0) ...
    rep = Reputation(500, 500, 3600, "198.51.100.0/24", 0, 0, 0, 0)
    assert evaluate(PolicyInputs(req(), reputation=rep), CFG).status == 0
    # ... but the network they came from is held up by them.
    rep = rep._replace(network_failed_accounts=100)
    assert evaluate(PolicyInputs(req(), reputation=rep), CFG).rule == "reputation_reject"


def test_no_network_known_leaves_the_scope_everywhere_only():
    rep = Reputation(50, 50, 3600, "", 50, 0, 0, 0)
    assert evaluate(PolicyInputs(req(), reputation=rep), CFG).status == 0


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:56ff:1::9", "2001:db8:1234:5600::/56"),
        ("fe80::1%eth0", "fe80::/56"),
        ("", ""),
        ("not-an-address", ""),
        ("203.0.113.256", ""),
    ],
)
def test_network_of(address, network):
    assert network_of(address) == network


def test_network_of_other_prefixes():
    assert network_of("203.0.113.77", 16, 48) == "203.0.0.0/16"
    assert network_of("2001:db8:1234:56ff::1", 16, 48) == "2001:db8:1234::/48"


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
    rep = Reputation(failed_accounts, failed_accounts * 2, 3600, NET, failed_accounts)
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
    inp = PolicyInputs(req(), labels=(label("tarpit"),), reputation=on_network(3, 60))
    assert evaluate(inp, CFG) == evaluate(inp, CFG)

"""Decisions: action order, shadow mode, 3-D Secure, explanations and the built-in defaults."""

from __future__ import annotations

import itertools

import pytest

from bastionpay.risk.rules import (
    ACTION_ORDER,
    DEFAULT_LISTS,
    DEFAULT_RULES,
    Action,
    BlockAllowLists,
    InMemoryListStore,
    Mode,
    RuleSet,
    default_rule_set,
    evaluate_rules,
    explain,
    make_rule,
)

LISTS = InMemoryListStore()
# One rule per action, each matching when its own feature flag is set.
FLAGS = {
    Action.REQUEST_3DS: "is_new_card_for_customer",
    Action.ALLOW: "is_new_device",
    Action.BLOCK: "is_night_time",
    Action.REVIEW: "card_country_mismatch_ip",
}
RULES = {
    action: make_rule(f"{action.value} if :{flag}:", rule_id=f"rule_{action.value}")
    for action, flag in FLAGS.items()
}
RULE_SET = RuleSet("acct_1", 1, tuple(RULES.values()))


def expected_action(matching: set[Action], three_ds_completed: bool) -> Action:
    """The documented order, written independently of the engine."""
    if Action.REQUEST_3DS in matching and not three_ds_completed:
        return Action.REQUEST_3DS
    for action in (Action.ALLOW, Action.BLOCK, Action.REVIEW):
        if action in matching:
            return action
    return Action.ALLOW


COMBINATIONS = [
    set(combo) for size in range(5) for combo in itertools.combinations(ACTION_ORDER, size)
]


@pytest.mark.parametrize("three_ds_completed", [False, True])
@pytest.mark.parametrize("matching", COMBINATIONS, ids=lambda m: "+".join(sorted(m)) or "none")
def test_action_order_across_all_combinations(
    matching: set[Action], three_ds_completed: bool
) -> None:
    features = {flag: action in matching for action, flag in FLAGS.items()}
    decision = RULE_SET.evaluate(features, LISTS, three_ds_completed=three_ds_completed)
    action = expected_action(matching, three_ds_completed)
    assert decision.action is action
    assert {m.action for m in decision.matches} == matching
    acting = {m.rule_id for m in decision.rules}
    if action in matching and not (action is Action.REQUEST_3DS and three_ds_completed):
        assert acting == {f"rule_{action.value}"}
        assert not decision.by_default
    else:
        assert acting == set()
        assert decision.by_default
    assert decision.ruleset_version == 1


def test_order_table_matches_radar() -> None:
    assert ACTION_ORDER == (Action.REQUEST_3DS, Action.ALLOW, Action.BLOCK, Action.REVIEW)


def test_several_rules_of_the_winning_action_are_all_reported() -> None:
    rules = (
        make_rule("block if :amount: > 10", rule_id="rule_b1"),
        make_rule("review if :amount: > 1", rule_id="rule_r1"),
        make_rule("block if :amount: > 5", rule_id="rule_b2"),
    )
    decision = evaluate_rules(rules, {"amount": 20}, LISTS)
    assert decision.action is Action.BLOCK
    assert [m.rule_id for m in decision.rules] == ["rule_b1", "rule_b2"]
    assert decision.rule is not None
    assert decision.rule.rule_id == "rule_b1"
    assert [m.rule_id for m in decision.matches] == ["rule_b1", "rule_r1", "rule_b2"]


def test_disabled_rules_are_not_evaluated() -> None:
    rule = make_rule("block if :email: like '%'", enabled=False)
    # A feature that would raise if read proves the rule is skipped.
    decision = evaluate_rules((rule,), {"email": 42}, LISTS)
    assert decision.action is Action.ALLOW
    assert decision.by_default
    assert decision.matches == ()


def test_shadow_rules_never_act_but_are_reported() -> None:
    shadow_block = make_rule("block if :risk_score: > 50", rule_id="rule_s", mode=Mode.SHADOW)
    live_review = make_rule("review if :risk_score: > 40", rule_id="rule_l")
    decision = evaluate_rules((shadow_block, live_review), {"risk_score": 60}, LISTS)
    assert decision.action is Action.REVIEW
    assert [m.rule_id for m in decision.rules] == ["rule_l"]
    assert [m.rule_id for m in decision.shadow_matches] == ["rule_s"]
    assert decision.shadow_matches[0].mode is Mode.SHADOW
    assert all(m.mode is Mode.LIVE for m in decision.matches)
    assert decision.shadow_action is Action.BLOCK
    assert decision.shadow_differs
    lines = explain(decision)
    assert any("Shadow rule rule_s" in line and "do not act" in line for line in lines)
    assert any("would have been blocked" in line for line in lines)


def test_shadow_only_match_leaves_the_payment_allowed() -> None:
    shadow = make_rule("block if :amount: > 1", mode=Mode.SHADOW)
    decision = evaluate_rules((shadow,), {"amount": 5}, LISTS)
    assert decision.action is Action.ALLOW
    assert decision.by_default
    assert decision.shadow_action is Action.BLOCK
    assert len(decision.shadow_matches) == 1


def test_shadow_allow_does_not_rescue_a_blocked_payment() -> None:
    rules = (
        make_rule("block if :amount: > 1"),
        make_rule("allow if :amount: > 1", mode=Mode.SHADOW),
    )
    decision = evaluate_rules(rules, {"amount": 5}, LISTS)
    assert decision.action is Action.BLOCK
    assert decision.shadow_action is Action.ALLOW


def test_three_ds_flow() -> None:
    rules = (
        make_rule("request_3ds if :amount_in_usd: > 100", rule_id="rule_3ds"),
        make_rule("block if not :is_3ds_authenticated: and :amount_in_usd: > 100"),
    )
    first = evaluate_rules(rules, {"amount_in_usd": 500, "is_3ds_authenticated": False}, LISTS)
    assert first.action is Action.REQUEST_3DS
    assert any("3-D Secure comes first" in line for line in explain(first))
    failed = evaluate_rules(
        rules, {"amount_in_usd": 500, "is_3ds_authenticated": False}, LISTS, three_ds_completed=True
    )
    assert failed.action is Action.BLOCK
    assert any("3-D Secure was already done" in line for line in explain(failed))
    passed = evaluate_rules(
        rules, {"amount_in_usd": 500, "is_3ds_authenticated": True}, LISTS, three_ds_completed=True
    )
    assert passed.action is Action.ALLOW
    assert passed.three_ds_completed


def test_decision_records_inputs_and_serialises() -> None:
    rules = (make_rule("block if :risk_score: > 75.5 and :email: like '%@x.test'"),)
    decision = evaluate_rules(rules, {"risk_score": 80, "email": "a@x.test", "amount": 5}, LISTS)
    record = decision.to_dict()
    assert record["action"] == "block"
    assert record["inputs"] == {"email": "a@x.test", "risk_score": "80"}
    assert record["rules"][0]["predicate"] == rules[0].source
    assert record["by_default"] is False


def test_explain_in_plain_words() -> None:
    rules = (
        make_rule("block if :risk_score: >= 75", rule_id="rule_hi"),
        make_rule("review if :amount_in_usd: > 1000 and :card_country: != :ip_country:"),
    )
    decision = evaluate_rules(
        rules,
        {"risk_score": 90, "amount_in_usd": 2000, "card_country": "US", "ip_country": "FR"},
        LISTS,
    )
    lines = explain(decision)
    assert lines[0] == "Blocked by rule rule_hi (block if risk score is at least 75)."
    assert "block takes precedence over review" in lines[1]
    assert "card country is not ip country" in lines[1]
    assert lines[-1] == (
        "Values read: amount in usd = 2000, card country = 'US', ip country = 'FR', "
        "risk score = 90."
    )
    quiet = evaluate_rules(rules, {"risk_score": 1}, LISTS)
    assert explain(quiet)[0] == "Allowed: no live rule matched."
    assert any(
        "ip country missing" in line or "amount in usd missing" in line for line in explain(quiet)
    )


def test_explain_escapes_hostile_values() -> None:
    rule = make_rule("block if :device_id: != 'x'")
    decision = evaluate_rules((rule,), {"device_id": "evil\n\u202efake line"}, LISTS)
    text = "\n".join(explain(decision))
    assert "\u202e" not in text
    assert "evil\\u000a\\u202efake line" in text


def test_defaults_are_data_and_compile() -> None:
    store = InMemoryListStore()
    ruleset = default_rule_set("acct_1", store, at=1_700_000_000)
    assert len(ruleset.rules) == len(DEFAULT_RULES)
    assert {lst.name for lst in store.all_lists()} == {lst.name for lst in DEFAULT_LISTS}
    by_id = {rule.id: rule for rule in ruleset.rules}
    highest = by_id["rule_default_block_highest_risk"]
    assert highest.enabled
    assert highest.source == "block if :risk_level: = 'highest'"
    assert not by_id["rule_default_review_elevated_risk"].enabled
    assert ruleset.referenced_lists() == {lst.name for lst in DEFAULT_LISTS}

    assert ruleset.evaluate({"risk_level": "highest"}, store).action is Action.BLOCK
    assert ruleset.evaluate({"risk_level": "elevated"}, store).by_default
    helpers = BlockAllowLists(store)
    helpers.block("ip_address", "203.0.113.9")
    blocked = ruleset.evaluate({"ip_address": "203.0.113.9", "customer": "cus_9"}, store)
    assert blocked.action is Action.BLOCK
    assert blocked.rule is not None
    assert blocked.rule.rule_id == "rule_default_block_listed_ip_address"
    helpers.allow("customer", "cus_9")  # an allow-listed customer wins over the block list
    allowed = ruleset.evaluate({"ip_address": "203.0.113.9", "customer": "cus_9"}, store)
    assert allowed.action is Action.ALLOW
    assert allowed.rule is not None
    assert allowed.rule.rule_id == "rule_default_allow_listed_customer"

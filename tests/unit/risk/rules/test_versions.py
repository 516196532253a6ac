"""Rule set versions, history for audit, and JSON storage."""

from __future__ import annotations

import json

import pytest

from bastionpay.kernel.clock import FrozenClock
from bastionpay.risk.rules import (
    InMemoryListStore,
    Mode,
    RuleSet,
    RuleSetError,
    RuleSetHistory,
    RuleSyntaxError,
    ValueKind,
    make_rule,
    ruleset_from_json,
    ruleset_to_json,
)
from bastionpay.risk.rules.serialization import rule_from_dict, rule_to_dict


def test_every_change_is_a_new_version_and_old_ones_stay_readable() -> None:
    clock = FrozenClock(1_700_000_000)
    history = RuleSetHistory("acct_1", clock=clock, by="usr_admin")
    rule = make_rule("block if :risk_score: > 75", rule_id="rule_a")
    clock.advance(10)
    v2 = history.change(lambda rs, now: rs.with_rule(rule, at=now, by="usr_1"))
    assert (v2.version, v2.created_at, v2.changed_by, v2.change) == (
        2,
        1_700_000_010,
        "usr_1",
        "added rule_a",
    )
    v3 = history.change(
        lambda rs, now: rs.with_updated_rule("rule_a", source="block if :risk_score: > 80", at=now)
    )
    edited = v3.get("rule_a")
    assert edited is not None
    assert edited.version == 2
    assert edited.source == "block if :risk_score: > 80"
    v4 = history.change(lambda rs, now: rs.with_updated_rule("rule_a", mode=Mode.SHADOW, at=now))
    shadowed = v4.get("rule_a")
    assert shadowed is not None
    assert (shadowed.mode, shadowed.version, shadowed.source) == (Mode.SHADOW, 3, edited.source)
    v5 = history.change(lambda rs, now: rs.with_updated_rule("rule_a", enabled=False, at=now))
    v6 = history.change(lambda rs, now: rs.without_rule("rule_a", at=now))
    assert v6.rules == ()
    assert [v.version for v in history.versions()] == [1, 2, 3, 4, 5, 6]
    assert history.version(2).get("rule_a") == rule  # the old version is unchanged
    old = history.version(3).get("rule_a")
    assert old is not None
    assert old.source == "block if :risk_score: > 80"
    assert v5.get("rule_a") is not None
    assert history.current is v6
    with pytest.raises(RuleSetError):
        history.version(7)


def test_stale_commits_are_refused() -> None:
    history = RuleSetHistory("acct_1", clock=FrozenClock(0))
    base = history.current
    history.commit(base.with_rule(make_rule("block if :amount: > 1", rule_id="rule_1")))
    concurrent = base.with_rule(make_rule("block if :amount: > 2", rule_id="rule_2"))
    with pytest.raises(RuleSetError) as caught:
        history.commit(concurrent)
    assert caught.value.code == "rule_set_stale"
    with pytest.raises(RuleSetError):
        history.commit(RuleSet("acct_other", 3))


def test_invalid_changes() -> None:
    ruleset = RuleSet("acct_1").with_rule(make_rule("block if :amount: > 1", rule_id="rule_1"))
    with pytest.raises(RuleSetError, match="already exists"):
        ruleset.with_rule(make_rule("block if :amount: > 2", rule_id="rule_1"))
    with pytest.raises(RuleSetError, match="no such rule"):
        ruleset.without_rule("rule_x")
    with pytest.raises(RuleSetError, match="no change"):
        ruleset.with_updated_rule("rule_1", source="block if :amount: > 1")
    with pytest.raises(RuleSyntaxError):
        ruleset.with_updated_rule("rule_1", source="block if :amount: > 'x'")
    with pytest.raises(RuleSetError, match="at most 2 rules"):
        RuleSet(
            "acct_1",
            rules=tuple(make_rule(f"block if :amount: > {i}") for i in range(3)),
            max_rules=2,
        )


def test_json_round_trip() -> None:
    store = InMemoryListStore()
    store.create_list("vip", ValueKind.CUSTOMER_ID)
    ruleset = RuleSet(
        "acct_1",
        7,
        (
            make_rule("allow if :customer: in @vip", rule_id="rule_a", lists=store),
            make_rule(
                "review if :email: like '%@x.test'",
                rule_id="rule_b",
                mode=Mode.SHADOW,
                enabled=False,
                version=4,
                description="watch x.test",
            ),
        ),
        created_at=1_700_000_000,
        changed_by="usr_1",
        change="updated rule_b to version 4",
    )
    text = ruleset_to_json(ruleset)
    loaded = ruleset_from_json(text, lists=store)
    assert ruleset_to_json(loaded) == text
    assert [(r.id, r.mode, r.enabled, r.version) for r in loaded.rules] == [
        ("rule_a", Mode.LIVE, True, 1),
        ("rule_b", Mode.SHADOW, False, 4),
    ]
    assert loaded.rules[1].predicate.matches({"email": "a@x.test"}, store)
    assert rule_from_dict(rule_to_dict(ruleset.rules[1])).source == ruleset.rules[1].source


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=2),
        lambda d: d.update(extra=1),
        lambda d: d.update(version="7"),
        lambda d: d.update(version=True),
        lambda d: d["rules"][0].update(mode="yolo"),
        lambda d: d["rules"][0].update(version=0),
        lambda d: d["rules"][0].update(enabled="yes"),
        lambda d: d["rules"][0].update(compiled="lambda: 1"),
        lambda d: d["rules"].append(d["rules"][0]),  # duplicate id
        lambda d: d.update(rules="block if true"),
    ],
)
def test_tampered_or_malformed_storage_is_refused(mutate: object) -> None:
    ruleset = RuleSet("acct_1", 2, (make_rule("block if :amount: > 1", rule_id="rule_a"),))
    data = json.loads(ruleset_to_json(ruleset))
    assert callable(mutate)
    mutate(data)
    with pytest.raises(RuleSetError):
        ruleset_from_json(json.dumps(data))


def test_stored_rule_text_is_recompiled_strictly() -> None:
    ruleset = RuleSet("acct_1", 2, (make_rule("block if :amount: > 1", rule_id="rule_a"),))
    data = json.loads(ruleset_to_json(ruleset))
    data["rules"][0]["source"] = "block if __import__('os').system('id')"
    with pytest.raises(RuleSyntaxError):
        ruleset_from_json(json.dumps(data))


def test_not_json_and_too_large() -> None:
    with pytest.raises(RuleSetError):
        ruleset_from_json("{not json")
    with pytest.raises(RuleSetError):
        ruleset_from_json("[" * 100_000)
    with pytest.raises(RuleSetError):
        ruleset_from_json(" " * (4 * 1024 * 1024 + 1))


def test_description_only_edit_is_a_new_rule_version() -> None:
    ruleset = RuleSet("acct_1").with_rule(make_rule("block if :amount: > 1", rule_id="rule_1"))
    edited = ruleset.with_updated_rule("rule_1", description="why we block", by="usr_2")
    rule = edited.get("rule_1")
    assert rule is not None
    assert (rule.description, rule.version, edited.version, edited.changed_by) == (
        "why we block",
        2,
        3,
        "usr_2",
    )

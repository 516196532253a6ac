"""The language: every example from the brief parses, every operator works, precedence holds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bastionpay.risk.rules import (
    Action,
    InMemoryListStore,
    RuleSyntaxError,
    compile_rule,
    make_rule,
)
from bastionpay.risk.rules.predicate import AllOf, AnyOf, CompareValue, InSet, Negation

EXAMPLES = [
    ("block if :risk_score: > 75", Action.BLOCK),
    ("review if :amount_in_usd: > 1000 and :card_country: != :ip_country:", Action.REVIEW),
    ("request_3ds if :is_new_card_for_customer:", Action.REQUEST_3DS),
    ("allow if :customer: in @trusted_customers", Action.ALLOW),
    (
        "block if :card_fingerprint: in @blocked_cards or :email_domain: in "
        "('mailinator.com', 'tempmail.dev')",
        Action.BLOCK,
    ),
    (
        "review if not :is_3ds_authenticated: and (:card_funding: = 'prepaid' or "
        ":amount_in_usd: >= 500)",
        Action.REVIEW,
    ),
    ("block if :declines_per_card_fingerprint_hourly: >= 5", Action.BLOCK),
    ("review if :email: like '%@example.org'", Action.REVIEW),
    ("block if :card_bin: in @risky_bins", Action.BLOCK),
]


@pytest.mark.parametrize(("source", "action"), EXAMPLES)
def test_examples_compile(source: str, action: Action, store: InMemoryListStore) -> None:
    rule = make_rule(source, lists=store)
    assert rule.action is action
    assert rule.source == source
    assert rule.predicate.attributes


def test_example_semantics(store: InMemoryListStore) -> None:
    store.add("trusted_customers", "cus_1")
    store.add("blocked_cards", "fp_bad")
    store.add("risky_bins", "400000")

    def hit(source: str, features: dict[str, object]) -> bool:
        return make_rule(source, lists=store).predicate.matches(features, store)

    assert hit(EXAMPLES[0][0], {"risk_score": 76})
    assert not hit(EXAMPLES[0][0], {"risk_score": 75})
    assert hit(EXAMPLES[1][0], {"amount_in_usd": 1001, "card_country": "US", "ip_country": "FR"})
    assert not hit(
        EXAMPLES[1][0], {"amount_in_usd": 1001, "card_country": "US", "ip_country": "US"}
    )
    assert hit(EXAMPLES[2][0], {"is_new_card_for_customer": True})
    assert not hit(EXAMPLES[2][0], {"is_new_card_for_customer": False})
    assert hit(EXAMPLES[3][0], {"customer": "cus_1"})
    assert not hit(EXAMPLES[3][0], {"customer": "cus_2"})
    assert hit(EXAMPLES[4][0], {"card_fingerprint": "fp_bad", "email_domain": "ok.com"})
    assert hit(EXAMPLES[4][0], {"card_fingerprint": "fp_ok", "email_domain": "Mailinator.COM"})
    assert not hit(EXAMPLES[4][0], {"card_fingerprint": "fp_ok", "email_domain": "ok.com"})
    three_ds = {"is_3ds_authenticated": False, "card_funding": "credit", "amount_in_usd": 500}
    assert hit(EXAMPLES[5][0], three_ds)
    assert not hit(EXAMPLES[5][0], {**three_ds, "is_3ds_authenticated": True})
    assert not hit(EXAMPLES[5][0], {**three_ds, "amount_in_usd": 499})
    assert hit(EXAMPLES[5][0], {**three_ds, "amount_in_usd": 1, "card_funding": "prepaid"})
    assert hit(EXAMPLES[6][0], {"declines_per_card_fingerprint_hourly": 5})
    assert not hit(EXAMPLES[6][0], {"declines_per_card_fingerprint_hourly": 4})
    assert hit(EXAMPLES[7][0], {"email": "Someone@Example.org"})
    assert not hit(EXAMPLES[7][0], {"email": "someone@example.org.evil.com"})
    assert hit(EXAMPLES[8][0], {"card_bin": "400000"})
    assert hit(EXAMPLES[8][0], {"card_bin": "40000012"})  # 8-digit BIN under a 6-digit entry
    assert not hit(EXAMPLES[8][0], {"card_bin": "400001"})


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("=", 10, True),
        ("=", 11, False),
        ("!=", 11, True),
        ("!=", 10, False),
        ("<", 9, True),
        ("<", 10, False),
        ("<=", 10, True),
        ("<=", 11, False),
        (">", 11, True),
        (">", 10, False),
        (">=", 10, True),
        (">=", 9, False),
    ],
)
def test_every_comparison_operator(op: str, value: int, expected: bool) -> None:
    rule = compile_rule(f"block if :amount_in_usd: {op} 10")
    assert rule.predicate.matches({"amount_in_usd": value}, store_none()) is expected


def store_none() -> InMemoryListStore:
    return InMemoryListStore()


def test_keywords_are_case_insensitive() -> None:
    rule = compile_rule("BLOCK IF :risk_score: > 1 AND NOT :is_night_time: OR :amount: IN (1, 2)")
    assert rule.action == "block"
    assert isinstance(rule.predicate.root, AnyOf)


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    rule = compile_rule("block if not :is_night_time: and :amount: > 1 or :amount: < 0")
    root = rule.predicate.root
    assert isinstance(root, AnyOf)
    first = root.operands[0]
    assert isinstance(first, AllOf)
    assert isinstance(first.operands[0], Negation)
    lists = InMemoryListStore()
    # (not night and amount > 1) or amount < 0
    assert rule.predicate.matches({"is_night_time": False, "amount": 5}, lists)
    assert not rule.predicate.matches({"is_night_time": True, "amount": 5}, lists)
    assert rule.predicate.matches({"is_night_time": True, "amount": -1}, lists)


def test_parentheses_override_precedence() -> None:
    lists = InMemoryListStore()
    flat = compile_rule("block if :amount: > 10 or :amount: < 0 and :is_night_time:")
    grouped = compile_rule("block if (:amount: > 10 or :amount: < 0) and :is_night_time:")
    features = {"amount": 50, "is_night_time": False}
    assert flat.predicate.matches(features, lists)
    assert not grouped.predicate.matches(features, lists)


def test_and_or_chains_are_flat() -> None:
    rule = compile_rule("block if " + " or ".join(f":amount: = {i}" for i in range(50)))
    root = rule.predicate.root
    assert isinstance(root, AnyOf)
    assert len(root.operands) == 50


def test_numbers_are_exact_decimals() -> None:
    rule = compile_rule("review if :amount_in_usd: > 0.1")
    root = rule.predicate.root
    assert isinstance(root, CompareValue)
    assert root.value == Decimal("0.1")
    lists = InMemoryListStore()
    # 0.1 as a float is 0.1000000000000000055…; read through its repr it is exactly 0.1.
    assert not rule.predicate.matches({"amount_in_usd": 0.1}, lists)
    assert rule.predicate.matches({"amount_in_usd": Decimal("0.10000001")}, lists)
    assert compile_rule("block if :amount_in_usd: = 1000.00").predicate.matches(
        {"amount_in_usd": 1000}, lists
    )


def test_negative_numbers() -> None:
    rule = compile_rule("block if :amount_to_merchant_mean: < -0.5")
    assert rule.predicate.matches({"amount_to_merchant_mean": Decimal("-1")}, InMemoryListStore())


def test_booleans_true_false() -> None:
    lists = InMemoryListStore()
    assert compile_rule("block if :is_night_time: = true").predicate.matches(
        {"is_night_time": True}, lists
    )
    assert compile_rule("block if :is_night_time: != TRUE").predicate.matches(
        {"is_night_time": False}, lists
    )
    assert compile_rule("block if :is_night_time: = false").predicate.matches(
        {"is_night_time": False}, lists
    )


def test_string_escapes() -> None:
    rule = compile_rule(r"block if :device_id: = 'it\'s a \\ backslash'")
    assert rule.predicate.matches({"device_id": "it's a \\ backslash"}, InMemoryListStore())


def test_in_and_not_in_literal_lists() -> None:
    lists = InMemoryListStore()
    rule = compile_rule("block if :card_country: in ('us', 'Gb')")
    root = rule.predicate.root
    assert isinstance(root, InSet)
    assert root.values == frozenset({"US", "GB"})
    assert rule.predicate.matches({"card_country": "gb"}, lists)
    negated = compile_rule("block if :card_country: not in ('US', 'GB')")
    assert negated.predicate.matches({"card_country": "FR"}, lists)
    assert not negated.predicate.matches({"card_country": "US"}, lists)
    numbers = compile_rule("block if :hour_of_day_local: in (1, 2, 3)")
    assert numbers.predicate.matches({"hour_of_day_local": 2}, lists)


def test_not_in_named_list(store: InMemoryListStore) -> None:
    store.add("bad_countries", "RU")
    rule = make_rule("review if :ip_country: not in @bad_countries", lists=store)
    assert rule.predicate.matches({"ip_country": "FR"}, store)
    assert not rule.predicate.matches({"ip_country": "ru"}, store)


def test_not_like() -> None:
    rule = compile_rule("review if :email: not like '%@bastionpay.test'")
    lists = InMemoryListStore()
    assert rule.predicate.matches({"email": "a@evil.test"}, lists)
    assert not rule.predicate.matches({"email": "a@BastionPay.test"}, lists)


def test_attribute_to_attribute_comparison() -> None:
    rule = compile_rule("review if :card_country: = :billing_country:")
    lists = InMemoryListStore()
    assert rule.predicate.matches({"card_country": "US", "billing_country": "us"}, lists)
    numbers = compile_rule(
        "block if :attempts_per_ip_daily: > :attempts_per_card_fingerprint_daily:"
    )
    assert numbers.predicate.matches(
        {"attempts_per_ip_daily": 5, "attempts_per_card_fingerprint_daily": 2}, lists
    )


def test_whitespace_and_newlines_are_free() -> None:
    rule = compile_rule("block\n  if\t:risk_score: >= 75\r\n   and :amount: > 0")
    assert rule.predicate.matches({"risk_score": 80, "amount": 1}, InMemoryListStore())


@pytest.mark.parametrize(
    ("source", "fragment", "column"),
    [
        ("", "expected an action", 1),
        ("deny if :amount: > 1", "unexpected word 'deny'", 1),
        ("block :amount: > 1", "expected 'if'", 7),
        ("block if", "expected a condition", 9),
        ("block if :amount: >", "expected a value", 20),
        ("block if (:amount: > 1", "')' to close the '(' opened at column 10", 23),
        ("block if :amount: > 1)", "expected 'and', 'or' or the end", 22),
        ("block if :amount: > 1 :amount: < 2", "expected 'and', 'or'", 23),
        ("block if :amount: == 1", "'=', not '=='", 19),
        ("block if :amount: <> 1", "'!='", 19),
        ('block if :email: = "x"', "single quotes", 20),
        ("block if ! :is_night_time:", "'not'", 10),
        ("block if :amount: in ()", "expected a value", 23),
        ("block if :amount: in (1,)", "expected a value", 25),
        ("block if :amount: in 1", "a list after 'in'", 22),
        ("block if :email: like 5", "a quoted pattern", 23),
        ("block if :amount: not > 1", "expected 'and', 'or'", 19),
        ("block if 5 < :amount:", "starts with an :attribute:", 10),
        ("block if :amount: > 1.", "decimal point", 22),
        ("block if :amount: > 1.5.2", "malformed number", 24),
        ("block if :amount: > 10usd", "malformed number", 23),
        ("block if :Amount: > 1", "lower-case attribute name", 11),
        ("block if :amount > 1", "closed by ':'", 17),
        ("block if :amount: in @", "lower-case list name", 23),
        ("block if is_missing :amount:", "'(' after is_missing", 21),
        ("block if :email: = 'a\\nb'", "unknown escape", 22),
    ],
)
def test_syntax_errors_carry_positions(source: str, fragment: str, column: int) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    error = caught.value
    assert fragment in error.reason
    assert error.column == column
    assert error.position == column - 1
    assert error.line == 1
    assert error.kind in ("syntax", "limit")
    assert f"column {column}" in error.message


def test_error_positions_on_later_lines() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule("block if :amount: > 1\n  and :nope: > 2")
    assert (caught.value.line, caught.value.column) == (2, 7)
    assert "line 2, column 7" in caught.value.message


def test_error_renders_as_stripe_invalid_request() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule("block if :nope: > 1")
    wire = caught.value.to_wire()["error"]
    assert wire["type"] == "invalid_request_error"
    assert wire["code"] == "rule_invalid"
    assert wire["param"] == "predicate"
    assert wire["position"] == 9
    assert wire["kind"] == "unknown_attribute"
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("block if :amount: in (1, 2)", "amount is one of (1, 2)"),
        (
            "block if :amount: not in (" + ", ".join(str(i) for i in range(12)) + ")",
            "amount is not one of (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, …)",
        ),
        ("block if is_missing(:ip_country:)", "ip country is missing"),
        (
            "block if (:amount: > 1 or :amount: < 0) and not :is_night_time:",
            "(amount is greater than 1 or amount is less than 0) and not (is night time)",
        ),
        ("block if :email: like '50\\%_'", "email matches the pattern '50\\\\%_'"),
        ("block if :card_country: = :ip_country:", "card country is ip country"),
    ],
)
def test_conditions_in_plain_words(source: str, words: str) -> None:
    assert compile_rule(source).predicate.describe() == words


def test_like_on_countries_folds_to_upper_case() -> None:
    rule = compile_rule("block if :card_country: like 'u_'")
    assert rule.predicate.matches({"card_country": "US"}, InMemoryListStore())


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("block if is_missing(:amount: > 1)", "')' to close is_missing("),
        ("block if is_missing(5)", "an attribute inside is_missing"),
        ("block if :amount: in (1 2)", "',' or ')' in the list"),
        ("block if :amount: in @Bad", "lower-case list name"),
        ("block if :amount: in @bad-list", "unexpected character U+002D"),
    ],
)
def test_more_syntax_errors(source: str, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    assert fragment in caught.value.reason

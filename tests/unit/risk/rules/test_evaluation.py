"""Evaluation: missing values (three-valued logic), feature coercion, lists at run time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bastionpay.risk.rules import (
    FeatureValueError,
    FeatureView,
    InMemoryListStore,
    UnknownListError,
    ValueKind,
    compile_rule,
    make_rule,
)

LISTS = InMemoryListStore()


def truth(source: str, features: dict[str, object]) -> bool | None:
    return compile_rule(source).predicate.evaluate(features, LISTS)


@pytest.mark.parametrize(
    "source",
    [
        "block if :amount: > 1",
        "block if :amount: != 1",
        "block if :card_country: != :ip_country:",
        "block if :card_country: in ('US')",
        "block if :card_country: not in ('US')",
        "block if :email: like '%'",
        "block if :email: not like 'x%'",
        "block if :is_night_time:",
        "block if not :is_night_time:",
        "block if not (:amount: > 1)",
    ],
)
def test_a_test_on_a_missing_value_is_unknown_and_never_matches(source: str) -> None:
    assert truth(source, {}) is None
    assert truth(source, {"amount": None, "email": None, "card_country": None}) is None
    assert not compile_rule(source).predicate.matches({}, LISTS)


def test_attribute_comparison_with_one_side_missing() -> None:
    assert truth("block if :card_country: != :ip_country:", {"card_country": "US"}) is None


def test_kleene_and_or() -> None:
    # false and unknown = false; true or unknown = true; otherwise unknown stays unknown.
    assert truth("block if :amount: > 1 and :risk_score: > 1", {"amount": 0}) is False
    assert truth("block if :amount: > 1 and :risk_score: > 1", {"amount": 5}) is None
    assert truth("block if :amount: > 1 or :risk_score: > 1", {"amount": 5}) is True
    assert truth("block if :amount: > 1 or :risk_score: > 1", {"amount": 0}) is None
    assert truth("block if not (:amount: > 1 or :risk_score: > 1)", {"amount": 0}) is None


def test_is_missing() -> None:
    assert truth("block if is_missing(:ip_country:)", {}) is True
    assert truth("block if is_missing(:ip_country:)", {"ip_country": "US"}) is False
    assert truth("block if not is_missing(:ip_country:)", {}) is False
    rule = "review if is_missing(:ip_country:) or :ip_country: != :card_country:"
    assert truth(rule, {"card_country": "US"}) is True
    assert truth(rule, {"card_country": "US", "ip_country": "US"}) is False


def test_nan_is_missing() -> None:
    assert truth("block if :risk_score: > 1", {"risk_score": float("nan")}) is None
    assert truth("block if :risk_score: > 1", {"risk_score": Decimal("NaN")}) is None


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("amount", "100"),
        ("amount", True),
        ("amount", float("inf")),
        ("amount", Decimal("-Infinity")),
        ("is_night_time", 1),
        ("email", 5),
        ("card_country", "USA"),
        ("ip_address", "not-an-ip"),
    ],
)
def test_a_feature_of_the_wrong_type_raises(attribute: str, value: object) -> None:
    kind = {"is_night_time": "", "email": "like '%'", "ip_address": "= '1.2.3.4'"}
    tail = kind.get(attribute, "= 'US'" if attribute == "card_country" else "> 1")
    rule = compile_rule(f"block if :{attribute}: {tail}".rstrip())
    with pytest.raises(FeatureValueError) as caught:
        rule.predicate.evaluate({attribute: value}, LISTS)
    assert caught.value.attribute == attribute
    assert caught.value.code == "rule_feature_invalid"


def test_features_are_normalised_like_literals() -> None:
    assert truth("block if :email: = 'Bob@Example.org'", {"email": "bob@EXAMPLE.org"}) is True
    assert truth("block if :email_domain: = 'example.org'", {"email_domain": "Example.ORG."})
    assert truth("block if :ip_address: = '2001:db8::1'", {"ip_address": "2001:0db8:0::1"})
    assert truth("block if :device_id: = 'Abc'", {"device_id": "abc"}) is False  # strings exact


def test_number_inputs() -> None:
    assert truth("block if :amount: = 5", {"amount": 5}) is True
    assert truth("block if :amount: = 5", {"amount": Decimal("5.000")}) is True
    assert truth("block if :amount: = 5.5", {"amount": 5.5}) is True
    assert truth("block if :amount: in (1, 2.50)", {"amount": Decimal("2.5")}) is True


def test_unknown_features_are_ignored() -> None:
    assert truth("block if :amount: > 1", {"amount": 2, "something_else": object()}) is True


def test_deleted_list_raises_at_evaluation(store: InMemoryListStore) -> None:
    rule = make_rule("allow if :customer: in @trusted_customers", lists=store)
    store.delete_list("trusted_customers")
    with pytest.raises(UnknownListError) as caught:
        rule.predicate.evaluate({"customer": "cus_1"}, store)
    assert caught.value.list_name == "trusted_customers"
    # A missing value never reaches the list.
    assert rule.predicate.evaluate({}, store) is None


def test_list_changes_apply_without_recompiling(store: InMemoryListStore) -> None:
    rule = make_rule("block if :card_fingerprint: in @blocked_cards", lists=store)
    assert not rule.predicate.matches({"card_fingerprint": "fp_1"}, store)
    store.add("blocked_cards", "fp_1")
    assert rule.predicate.matches({"card_fingerprint": "fp_1"}, store)
    store.remove("blocked_cards", "fp_1")
    assert not rule.predicate.matches({"card_fingerprint": "fp_1"}, store)


def test_short_circuit_reads_only_what_it_needs() -> None:
    rule = compile_rule("block if :amount: > 100 and :email: like '%x'")
    view = FeatureView({"amount": 1, "email": 12345})  # a bad email is never read
    assert rule.predicate.evaluate(view, LISTS) is False
    assert view.values_read() == {"amount": Decimal(1)}


def test_kind_of_country_lists(store: InMemoryListStore) -> None:
    store.add("bad_countries", "ru")
    assert store.list_kind("bad_countries") is ValueKind.COUNTRY
    rule = make_rule("block if :ip_country: in @bad_countries", lists=store)
    assert rule.predicate.matches({"ip_country": "RU"}, store)

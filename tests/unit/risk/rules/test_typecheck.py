"""Type errors, unknown attributes and unknown lists are caught when a rule is saved, with the
position of the offending token."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bastionpay.risk import feature_schema
from bastionpay.risk.rules import (
    DEFAULT_REGISTRY,
    AttributeRegistry,
    AttributeSpec,
    InMemoryListStore,
    RuleSyntaxError,
    ValueKind,
    compile_rule,
    make_rule,
    registry_from_features,
)


def error_of(source: str, lists: InMemoryListStore | None = None) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        if lists is None:
            compile_rule(source)
        else:
            make_rule(source, lists=lists)
    return caught.value


@pytest.mark.parametrize(
    ("source", "fragment", "column"),
    [
        ("block if :amount_in_usd: > 'abc'", "is a number, but 'abc' is a string", 28),
        (
            "block if :card_country: > 5",
            "'>' compares numbers, but :card_country: is a country",
            25,
        ),
        ("block if :card_country: = 5", "is a country, but 5 is a number", 27),
        ("block if :email: < 'a'", "'<' compares numbers", 18),
        ("block if :is_night_time: = 1", "is a boolean, but 1 is a number", 28),
        ("block if :amount: = true", "is a number, but true is a boolean", 21),
        ("block if :amount:", ":amount: is a number, not a boolean", 10),
        ("block if :email: and :amount: > 1", ":email: is an email, not a boolean", 10),
        ("block if :card_country: = :amount_in_usd:", ":amount_in_usd: is a number", 27),
        ("block if :email: = :email_domain:", ":email_domain: is an email domain", 20),
        ("block if :card_country: = 'USA'", "two-letter ISO 3166-1 code", 27),
        ("block if :card_bin: = '4242'", "6 or 8 digits", 23),
        ("block if :ip_address: = '300.1.1.1'", "not an IPv4 or IPv6 address", 25),
        ("block if :card_funding: = 'prepay'", "not a value of :card_funding:", 27),
        ("block if :risk_level: in ('highest', 'hihgest')", "not a value of :risk_level:", 38),
        ("block if :amount: in (1, 'two')", "'two' is a string", 26),
        ("block if :is_night_time: in (true)", "'in' needs a number or text attribute", 26),
        ("block if :amount: like '1%'", "'like' matches text, but :amount: is a number", 19),
        ("block if :email: like 'abc\\\\'", "lone backslash", 23),
    ],
)
def test_type_errors(source: str, fragment: str, column: int) -> None:
    error = error_of(source)
    assert fragment in error.reason
    assert error.column == column
    assert error.kind == "type" or fragment == "lone backslash"


def test_unknown_attribute_with_suggestion() -> None:
    error = error_of("review if :amount_in_usd: > 1 and :ip_contry: != 'US'")
    assert error.kind == "unknown_attribute"
    assert error.reason == "unknown attribute :ip_contry:; did you mean :ip_country:?"
    assert error.column == 35


def test_unknown_attribute_without_suggestion() -> None:
    error = error_of("block if :zzz_qqq: > 1")
    assert error.reason == "unknown attribute :zzz_qqq:"


def test_unknown_attribute_inside_is_missing() -> None:
    assert error_of("block if is_missing(:nope:)").kind == "unknown_attribute"


def test_unknown_list(store: InMemoryListStore) -> None:
    error = error_of("allow if :customer: in @trusted_customer", store)
    assert error.kind == "unknown_list"
    assert error.column == 24


def test_lists_need_a_catalog() -> None:
    assert error_of("allow if :customer: in @trusted_customers").kind == "unknown_list"


def test_list_kind_must_match_attribute(store: InMemoryListStore) -> None:
    error = error_of("block if :email: in @blocked_cards", store)
    assert error.kind == "type"
    assert "@blocked_cards holds card fingerprint values, but :email: is an email" in error.reason


def test_list_kinds_accepted(store: InMemoryListStore) -> None:
    for source in (
        "block if :ip_country: in @bad_countries",
        "block if :card_country: in @bad_countries",
        "block if :email: in @bad_emails",
        "block if :ip_address: in @bad_ips",
    ):
        assert make_rule(source, lists=store).predicate.lists


def test_custom_registry() -> None:
    registry = AttributeRegistry(
        [
            AttributeSpec("score", ValueKind.NUMBER),
            AttributeSpec("tier", ValueKind.STRING, allowed=frozenset({"gold", "silver"})),
        ]
    )
    rule = compile_rule("block if :score: > 1 and :tier: = 'gold'", registry=registry)
    assert rule.predicate.attributes == {"score", "tier"}
    with pytest.raises(RuleSyntaxError):
        compile_rule("block if :risk_score: > 1", registry=registry)
    with pytest.raises(ValueError, match="declared twice"):
        registry.extended([AttributeSpec("score", ValueKind.NUMBER)])
    with pytest.raises(ValueError, match="invalid attribute name"):
        AttributeSpec("Bad-Name", ValueKind.NUMBER)


def test_default_registry_covers_the_feature_schema() -> None:
    names = {f.name for f in (*feature_schema.FEATURES, *feature_schema.OUTPUTS)}
    assert names <= set(DEFAULT_REGISTRY)
    assert DEFAULT_REGISTRY["card_fingerprint"].kind is ValueKind.CARD_FINGERPRINT
    assert DEFAULT_REGISTRY["customer"].kind is ValueKind.CUSTOMER_ID
    assert DEFAULT_REGISTRY["card_country"].kind is ValueKind.COUNTRY
    assert DEFAULT_REGISTRY["card_bin"].kind is ValueKind.CARD_BIN
    assert DEFAULT_REGISTRY["is_3ds_authenticated"].kind is ValueKind.BOOLEAN
    rebuilt = registry_from_features(feature_schema.FEATURES)
    assert rebuilt["amount_in_usd"].kind is ValueKind.NUMBER


def test_schema_declared_bin_keeps_its_precise_kind() -> None:
    @dataclass(frozen=True)
    class Feature:
        name: str
        type: str
        description: str = ""

    registry = registry_from_features([Feature("card_bin", "string"), Feature("email", "string")])
    assert registry["card_bin"].kind is ValueKind.CARD_BIN
    assert registry["email"].kind is ValueKind.EMAIL

"""Property-based fuzzing (hypothesis): the compiler raises nothing but RuleSyntaxError and always
finishes quickly; compiled rules evaluate without error and agree with a reference evaluator."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastionpay.risk.rules import (
    InMemoryListStore,
    Limits,
    RuleSyntaxError,
    ValueKind,
    compile_rule,
)

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(milliseconds=500),  # "terminates quickly", per example
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)

STORE = InMemoryListStore()
STORE.create_list("trusted_customers", ValueKind.CUSTOMER_ID)
STORE.add("trusted_customers", "cus_1")

FRAGMENTS = [
    "block", "allow", "review", "request_3ds", "if", "and", "or", "not", "in", "like",
    "true", "false", "is_missing", "(", ")", ",", "=", "!=", "<", "<=", ">", ">=", "==", "!",
    ":amount:", ":email:", ":card_country:", ":is_night_time:", ":customer:", ":risk_score:",
    ":nope:", "@trusted_customers", "@nope", "'x%'", "'US'", "'a\\'b'", "'", "\\", ":", "@",
    "5", "-3", "0.25", "1e9", "99999999999999999", "'%a%a%a%b'", "\x00", "\u202e", "：", "\n",
]  # fmt: skip

FEATURES = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.integers(-10, 10),
        "risk_score": st.decimals(0, 100, places=2, allow_nan=False),
        "email": st.sampled_from(["a@x.com", "X%a@B.com", ""]),
        "card_country": st.sampled_from(["US", "fr"]),
        "is_night_time": st.booleans(),
        "customer": st.sampled_from(["cus_1", "cus_2"]),
    },
)


def compile_or_syntax_error(source: str) -> None:
    started = time.process_time()  # CPU, not wall: the machine is shared
    try:
        compile_rule(source, lists=STORE)
    except RuleSyntaxError as error:
        assert 0 <= error.position <= len(source)
        assert error.line >= 1
        assert error.column >= 1
    assert time.process_time() - started < 1


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(source: str) -> None:
    compile_or_syntax_error(source)


@FUZZ
@given(st.text(max_size=200).map(lambda tail: "block if " + tail))
def test_arbitrary_conditions(source: str) -> None:
    compile_or_syntax_error(source)


@FUZZ
@given(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40),
    st.sampled_from([" ", "", "  "]),
    FEATURES,
)
def test_token_soup(parts: list[str], separator: str, features: dict[str, object]) -> None:
    source = separator.join(parts)
    compile_or_syntax_error(source)
    try:
        rule = compile_rule(source, lists=STORE)
    except RuleSyntaxError:
        return
    assert rule.predicate.evaluate(features, STORE) in (True, False, None)


SEEDS = [
    "block if :risk_score: > 75",
    "review if :amount: > 1000 and :card_country: != 'US'",
    "request_3ds if :is_night_time:",
    "allow if :customer: in @trusted_customers",
    "block if :email: like '%@x.com' or :card_country: in ('US', 'fr')",
    "review if not :is_night_time: and (:amount: = 5 or is_missing(:risk_score:))",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid rule with a few random edits: near-misses reach deeper into the parser."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        else:
            text = text[:at] + text[at : at + 12] + text[at:]
    return text


@FUZZ
@given(mutated(), FEATURES)
def test_mutated_valid_rules(source: str, features: dict[str, object]) -> None:
    compile_or_syntax_error(source)
    try:
        rule = compile_rule(source, lists=STORE)
    except RuleSyntaxError:
        return
    assert rule.predicate.evaluate(features, STORE) in (True, False, None)


# Structured generation: valid rules with a reference meaning, to check the evaluator.


@dataclass(frozen=True)
class Gen:
    text: str
    # reference value over features: True, False or None (unknown)
    kind: str
    args: tuple[object, ...]


NUMBER_ATTRS = ["amount", "risk_score"]
OPS = ["=", "!=", "<", "<=", ">", ">="]


def leaf() -> st.SearchStrategy[Gen]:
    compare = st.builds(
        lambda attr, op, n: Gen(f":{attr}: {op} {n}", "cmp", (attr, op, Decimal(n))),
        st.sampled_from(NUMBER_ATTRS),
        st.sampled_from(OPS),
        st.integers(-5, 50),
    )
    boolean = st.just(Gen(":is_night_time:", "bool", ("is_night_time",)))
    missing = st.builds(
        lambda attr: Gen(f"is_missing(:{attr}:)", "missing", (attr,)),
        st.sampled_from([*NUMBER_ATTRS, "is_night_time"]),
    )
    member = st.builds(
        lambda neg: Gen(
            f":customer: {'not ' if neg else ''}in @trusted_customers", "member", (neg,)
        ),
        st.booleans(),
    )
    return st.one_of(compare, boolean, missing, member)


def extend(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    negated = children.map(lambda g: Gen(f"not ({g.text})", "not", (g,)))
    both = st.tuples(children, children, st.sampled_from(["and", "or"])).map(
        lambda t: Gen(f"({t[0].text}) {t[2]} ({t[1].text})", t[2], (t[0], t[1]))
    )
    return st.one_of(negated, both)


CONDITIONS = st.recursive(leaf(), extend, max_leaves=8)


def reference(gen: Gen, features: dict[str, object]) -> bool | None:
    if gen.kind == "cmp":
        attr, op, n = gen.args
        assert isinstance(attr, str) and isinstance(n, Decimal)
        raw = features.get(attr)
        if raw is None:
            return None
        value = Decimal(str(raw))
        return {
            "=": value == n,
            "!=": value != n,
            "<": value < n,
            "<=": value <= n,
            ">": value > n,
            ">=": value >= n,
        }[str(op)]
    if gen.kind == "bool":
        flag = features.get("is_night_time")
        return flag if isinstance(flag, bool) else None
    if gen.kind == "missing":
        return features.get(str(gen.args[0])) is None
    if gen.kind == "member":
        customer = features.get("customer")
        if customer is None:
            return None
        return (customer == "cus_1") != gen.args[0]
    if gen.kind == "not":
        (inner,) = gen.args
        assert isinstance(inner, Gen)
        truth = reference(inner, features)
        return None if truth is None else not truth
    left, right = (reference(g, features) for g in gen.args if isinstance(g, Gen))
    if gen.kind == "and":
        if left is False or right is False:
            return False
        return None if None in (left, right) else True
    if left is True or right is True:
        return True
    return None if None in (left, right) else False


@settings(max_examples=300, deadline=timedelta(milliseconds=500), database=None)
@given(CONDITIONS, FEATURES)
def test_evaluation_matches_reference_three_valued_logic(
    condition: Gen, features: dict[str, object]
) -> None:
    # `not` wrappers add nesting without adding leaves: lift the depth limit for this property.
    rule = compile_rule(f"block if {condition.text}", lists=STORE, limits=Limits(max_depth=500))
    assert rule.predicate.evaluate(features, STORE) == reference(condition, features)

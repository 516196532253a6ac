"""The LIKE matcher: correct against a reference, and linear on adversarial patterns."""

from __future__ import annotations

import time
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastionpay.risk.rules import InMemoryListStore, compile_rule
from bastionpay.risk.rules.like import compile_like
from bastionpay.risk.rules.values import InvalidValue


def reference_like(pattern: str, text: str) -> bool:
    """Textbook dynamic programming over (pattern token, text position): obviously correct,
    quadratic, fine for short strings."""
    tokens: list[tuple[str, str]] = []  # ("lit", ch) | ("one", "") | ("any", "")
    index = 0
    while index < len(pattern):
        ch = pattern[index]
        if ch == "\\":
            tokens.append(("lit", pattern[index + 1]))
            index += 2
            continue
        tokens.append(("any", "") if ch == "%" else ("one", "") if ch == "_" else ("lit", ch))
        index += 1

    @cache
    def match(t: int, s: int) -> bool:
        if t == len(tokens):
            return s == len(text)
        kind, ch = tokens[t]
        if kind == "any":
            return match(t + 1, s) or (s < len(text) and match(t, s + 1))
        if s == len(text):
            return False
        return (kind == "one" or text[s] == ch) and match(t + 1, s + 1)

    return match(0, 0)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("%@example.org", "a@example.org", True),
        ("%@example.org", "a@example.org.evil", False),
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        ("a%c", "ac", True),
        ("a%c", "abbbc", True),
        ("%", "", True),
        ("", "", True),
        ("", "x", False),
        ("_", "", False),
        ("%b%", "abc", True),
        ("%b_d%", "abxdabcd", True),
        ("%b_d%", "abxe", False),
        ("50\\%", "50%", True),
        ("50\\%", "500", False),
        ("a\\_b", "a_b", True),
        ("a\\_b", "axb", False),
        ("a\\\\b", "a\\b", True),
        ("%aa%aa", "aaa", False),
        ("%aa%aa", "aaaa", True),
        ("ab%ba", "aba", False),
    ],
)
def test_like_cases(pattern: str, text: str, expected: bool) -> None:
    assert compile_like(pattern).matches(text) is expected
    assert reference_like(pattern, text) is expected


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.text(alphabet="ab%_\\", max_size=10).filter(
        lambda p: not (len(p) - len(p.rstrip("\\"))) % 2
    ),
    st.text(alphabet="ab%_\\", max_size=14),
)
def test_like_agrees_with_reference(pattern: str, text: str) -> None:
    assert compile_like(pattern).matches(text) is reference_like(pattern, text)


def test_trailing_backslash_is_rejected() -> None:
    with pytest.raises(InvalidValue):
        compile_like("abc\\")


@pytest.mark.parametrize(
    "pattern",
    [
        "%a" * 200 + "b",  # the classic exponential case for a backtracking regex
        "%a" * 200 + "%b%",  # … with the failing segment in the middle, so it is searched for
        "%a_" * 150 + "c%",  # segments with single-character wildcards (Shift-And)
        "%" + "a_" * 300 + "c%",  # one long wildcard segment scanned over the whole text
        "a%" * 300,
        "_" * 500 + "%",
    ],
)
@pytest.mark.parametrize("text", ["a" * 100_000, "a" * 100_000 + "b", "ab" * 50_000])
def test_adversarial_patterns_stay_fast(pattern: str, text: str) -> None:
    compiled = compile_like(pattern)
    started = time.process_time()  # CPU, not wall: the machine is shared
    result = compiled.matches(text)
    assert time.process_time() - started < 4
    if "c" in pattern:  # no text holds a "c"
        assert result is False


def test_adversarial_pattern_through_the_language() -> None:
    pattern = "%a" * 250 + "b"  # 501 characters: within the string-literal limit
    rule = compile_rule(f"review if :email: like '{pattern}'")
    started = time.process_time()  # CPU, not wall: the machine is shared
    assert not rule.predicate.matches({"email": "a" * 50_000}, InMemoryListStore())
    assert time.process_time() - started < 4


def test_like_pattern_is_case_folded_for_emails() -> None:
    rule = compile_rule("review if :email: like '%@EXAMPLE.org'")
    assert rule.predicate.matches({"email": "x@example.ORG"}, InMemoryListStore())

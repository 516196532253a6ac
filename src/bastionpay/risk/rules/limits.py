"""Bounds on everything a merchant can write (TigerBeetle style: put a limit on everything).

Rules are untrusted input that runs on every payment, so each dimension that drives parse or
evaluation cost has a ceiling, checked before the cost is paid: text length first, then tokens,
then nesting and literal sizes. With these bounds a rule compiles in well under a millisecond and
evaluates in time linear in its size plus the length of the compared strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Limits:
    max_length: int = 2_000  # characters of rule text (Stripe caps predicates at 5,000)
    max_tokens: int = 800  # enough for a 256-item list literal plus its condition
    max_depth: int = 20  # nesting of parentheses and `not`
    max_list_items: int = 256  # items in one ('a', 'b', …) literal; larger sets belong in @lists
    max_string_length: int = 512  # characters in one string literal
    max_integer_digits: int = 15  # 10^15 is beyond any amount or counter a rule compares
    max_fraction_digits: int = 8  # exact decimals; a rate or ratio never needs more
    max_name_length: int = 64  # attribute and list names
    max_rules_per_set: int = 500
    # `in @list` tests in one rule: each may cost a query per payment (security review M3).
    max_list_refs: int = 8


DEFAULT_LIMITS: Final = Limits()

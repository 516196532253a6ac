"""Errors of the rules language.

A rule is merchant-written text, so every problem with it is found when the rule is saved
(`RuleSyntaxError`, with the exact position), never while a payment waits. What can still go wrong
at payment time is an integration fault, not a rule fault: a feature of the wrong type, or a named
list deleted under a live rule. Those raise `RuleEvaluationError`, and the payment path applies its
fail-open/fail-closed policy to them (SECURITY-REQUIREMENTS P3).
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from bastionpay.kernel.errors import BastionPayError, InvalidRequestError

ErrorKind = Literal["syntax", "type", "unknown_attribute", "unknown_list", "limit"]

_EXCERPT_LIMIT = 40


def excerpt(text: str) -> str:
    """Quote a piece of merchant text for an error message, safe to log.

    Non-printable and non-ASCII characters are shown as `\\u` and four hex digits, so an error
    message can carry neither a forged log line nor a bidirectional-override trick (ASVS 16.4.1,
    CVE-2021-42574), and the excerpt is cut to a bounded length.
    """
    shown = text[:_EXCERPT_LIMIT]
    out = []
    for ch in shown:
        if " " <= ch <= "~" and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(f"\\u{ord(ch):04x}")
    suffix = "…" if len(text) > _EXCERPT_LIMIT else ""
    return "'" + "".join(out) + suffix + "'"


def describe_char(ch: str) -> str:
    """`U+FF1A FULLWIDTH COLON`: names the character without printing it."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


class RuleSyntaxError(InvalidRequestError):
    """The only error compiling a rule raises: what is wrong, and where (0-based `position`).

    `kind` tells a syntax error from a type error, an unknown attribute or list, or an exceeded
    limit; `line` and `column` are 1-based for people. Renders as a Stripe `invalid_request_error`
    with `code: rule_invalid` and `param: predicate`.
    """

    def __init__(
        self, message: str, *, position: int, source: str = "", kind: ErrorKind = "syntax"
    ) -> None:
        position = max(0, min(position, len(source)))
        line = source.count("\n", 0, position) + 1
        column = position - (source.rfind("\n", 0, position) + 1) + 1
        where = f"column {column}" if line == 1 else f"line {line}, column {column}"
        super().__init__(
            f"{message} (at {where})",
            code="rule_invalid",
            param="predicate",
            extra={"position": position, "line": line, "column": column, "kind": kind},
        )
        self.reason = message
        self.position = position
        self.line = line
        self.column = column
        self.kind: ErrorKind = kind


class RuleEvaluationError(BastionPayError):
    """A compiled rule could not be evaluated: the inputs, not the rule, are at fault."""

    def __init__(self, message: str, *, code: str = "rule_evaluation_failed") -> None:
        super().__init__(message, code=code)


class FeatureValueError(RuleEvaluationError):
    """A feature had a value of the wrong type or shape for its declared attribute type."""

    def __init__(self, attribute: str, reason: str) -> None:
        super().__init__(f"feature {attribute!r}: {reason}", code="rule_feature_invalid")
        self.attribute = attribute


class UnknownListError(RuleEvaluationError):
    """A live rule references a list the store no longer has (delete lists only when unused)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such list: @{name}", code="rule_list_missing")
        self.list_name = name


class RuleSetError(InvalidRequestError):
    """A change to a rule set that cannot be made (duplicate id, unknown rule, too many rules,
    a stale version, malformed stored data)."""

    def __init__(self, message: str, *, code: str = "rule_set_invalid") -> None:
        super().__init__(message, code=code)


class ListError(InvalidRequestError):
    """A list operation that cannot be done: bad name, duplicate, unknown list, bad value, full."""

    def __init__(self, message: str, *, code: str = "rule_list_invalid") -> None:
        super().__init__(message, code=code, param="value")

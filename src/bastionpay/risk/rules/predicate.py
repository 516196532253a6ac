"""The compiled predicate: a small tree of typed nodes, each evaluating itself.

Evaluation uses three-valued (Kleene) logic, as SQL does with NULL: a test on a missing attribute
is *unknown* (None); `not unknown` is unknown; `false and unknown` is false, `true or unknown` is
true; everything else involving unknown is unknown. A rule acts only when its condition is *true*,
so a missing value never makes a rule match by accident, not even under `not` — which matters most
for `allow` rules. `is_missing(:x:)` is never unknown, and lets a merchant say what a missing value
should mean.

Every node is built by the compiler from a checked syntax tree, so the values it compares are
already normalised to the attribute's kind; evaluation does no parsing and builds no regex.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

from bastionpay.risk.rules.errors import FeatureValueError, UnknownListError
from bastionpay.risk.rules.like import LikePattern
from bastionpay.risk.rules.values import (
    InvalidValue,
    Value,
    ValueKind,
    coerce_feature,
    escape_text,
    lookup_keys,
    render_value,
)

Truth = bool | None  # None: unknown (a value was missing)


class ListLookup(Protocol):
    def contains(self, name: str, keys: tuple[str, ...]) -> bool | None:
        """Whether any of `keys` is in list `name`; None when no such list exists."""
        ...


class FeatureView:
    """Features of one payment, coerced to their attribute kinds on first use and cached, so a
    value read by twenty rules is converted once and a bad value fails on the rule that reads it."""

    __slots__ = ("_cache", "_raw")

    def __init__(self, raw: Mapping[str, object]) -> None:
        self._raw = raw
        self._cache: dict[str, Value | None] = {}

    def get(self, name: str, kind: ValueKind) -> Value | None:
        if name in self._cache:
            return self._cache[name]
        try:
            value = coerce_feature(kind, self._raw.get(name))
        except InvalidValue as exc:
            raise FeatureValueError(name, str(exc)) from None
        self._cache[name] = value
        return value

    def values_read(self) -> dict[str, Value | None]:
        """The attributes evaluation actually read, with their values (the decision's inputs)."""
        return dict(self._cache)


@dataclass(frozen=True, slots=True)
class Context:
    features: FeatureView
    lists: ListLookup


def _words(name: str) -> str:
    return name.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Attr:
    name: str
    kind: ValueKind

    def read(self, ctx: Context) -> Value | None:
        return ctx.features.get(self.name, self.kind)


def _apply(op: str, left: Value, right: Value) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    # The compiler admits ordering operators on numbers only, and numbers are always Decimal.
    if not isinstance(left, Decimal) or not isinstance(right, Decimal):
        return False
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


_OPERATOR_WORDS: Final[Mapping[str, str]] = {
    "=": "is",
    "!=": "is not",
    "<": "is less than",
    "<=": "is at most",
    ">": "is greater than",
    ">=": "is at least",
}


@dataclass(frozen=True, slots=True)
class CompareValue:
    attr: Attr
    op: str
    value: Value

    def evaluate(self, ctx: Context) -> Truth:
        left = self.attr.read(ctx)
        if left is None:
            return None
        return _apply(self.op, left, self.value)

    def describe(self) -> str:
        return f"{_words(self.attr.name)} {_OPERATOR_WORDS[self.op]} {render_value(self.value)}"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class CompareAttrs:
    left: Attr
    op: str
    right: Attr

    def evaluate(self, ctx: Context) -> Truth:
        left = self.left.read(ctx)
        right = self.right.read(ctx)
        if left is None or right is None:
            return None
        return _apply(self.op, left, right)

    def describe(self) -> str:
        return f"{_words(self.left.name)} {_OPERATOR_WORDS[self.op]} {_words(self.right.name)}"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.left.name, self.right.name})


@dataclass(frozen=True, slots=True)
class InSet:
    attr: Attr
    values: frozenset[Value]
    shown: tuple[Value, ...]  # the items as written, for explanations
    negated: bool

    def evaluate(self, ctx: Context) -> Truth:
        value = self.attr.read(ctx)
        if value is None:
            return None
        if isinstance(value, str):
            found = any(key in self.values for key in lookup_keys(self.attr.kind, value))
        else:
            found = value in self.values
        return found != self.negated

    def describe(self) -> str:
        items = ", ".join(render_value(v) for v in self.shown[:10])
        more = ", …" if len(self.shown) > 10 else ""
        verb = "is not one of" if self.negated else "is one of"
        return f"{_words(self.attr.name)} {verb} ({items}{more})"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class InList:
    attr: Attr
    list_name: str
    negated: bool

    def evaluate(self, ctx: Context) -> Truth:
        value = self.attr.read(ctx)
        if value is None:
            return None
        keys = lookup_keys(self.attr.kind, value) if isinstance(value, str) else (str(value),)
        found = ctx.lists.contains(self.list_name, keys)
        if found is None:
            raise UnknownListError(self.list_name)
        return found != self.negated

    def describe(self) -> str:
        verb = "is not in" if self.negated else "is in"
        return f"{_words(self.attr.name)} {verb} the list @{self.list_name}"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class Matches:
    attr: Attr
    pattern: LikePattern
    negated: bool

    def evaluate(self, ctx: Context) -> Truth:
        value = self.attr.read(ctx)
        if not isinstance(value, str):
            return None
        return self.pattern.matches(value) != self.negated

    def describe(self) -> str:
        verb = "does not match" if self.negated else "matches"
        return f"{_words(self.attr.name)} {verb} the pattern '{escape_text(self.pattern.source)}'"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class IsTrue:
    attr: Attr

    def evaluate(self, ctx: Context) -> Truth:
        value = self.attr.read(ctx)
        return value if isinstance(value, bool) else None

    def describe(self) -> str:
        return _words(self.attr.name)

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class Missing:
    attr: Attr

    def evaluate(self, ctx: Context) -> Truth:
        return self.attr.read(ctx) is None

    def describe(self) -> str:
        return f"{_words(self.attr.name)} is missing"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attr.name})


@dataclass(frozen=True, slots=True)
class Negation:
    operand: Node

    def evaluate(self, ctx: Context) -> Truth:
        value = self.operand.evaluate(ctx)
        return None if value is None else not value

    def describe(self) -> str:
        return f"not ({self.operand.describe()})"

    def attributes(self) -> frozenset[str]:
        return self.operand.attributes()


@dataclass(frozen=True, slots=True)
class AllOf:
    operands: tuple[Node, ...]

    def evaluate(self, ctx: Context) -> Truth:
        result: Truth = True
        for node in self.operands:
            value = node.evaluate(ctx)
            if value is False:
                return False  # false and anything is false: stop reading inputs
            if value is None:
                result = None
        return result

    def describe(self) -> str:
        return " and ".join(_grouped(node) for node in self.operands)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(node.attributes() for node in self.operands))


@dataclass(frozen=True, slots=True)
class AnyOf:
    operands: tuple[Node, ...]

    def evaluate(self, ctx: Context) -> Truth:
        result: Truth = False
        for node in self.operands:
            value = node.evaluate(ctx)
            if value is True:
                return True
            if value is None:
                result = None
        return result

    def describe(self) -> str:
        return " or ".join(_grouped(node) for node in self.operands)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(node.attributes() for node in self.operands))


Node = (
    CompareValue
    | CompareAttrs
    | InSet
    | InList
    | Matches
    | IsTrue
    | Missing
    | Negation
    | AllOf
    | AnyOf
)


def _grouped(node: Node) -> str:
    text = node.describe()
    return f"({text})" if isinstance(node, AllOf | AnyOf) else text


@dataclass(frozen=True, slots=True)
class CompiledPredicate:
    """A checked, normalised condition, ready to evaluate on any number of payments."""

    root: Node
    attributes: frozenset[str]
    lists: frozenset[str]

    def evaluate(self, features: FeatureView | Mapping[str, object], lists: ListLookup) -> Truth:
        view = features if isinstance(features, FeatureView) else FeatureView(features)
        return self.root.evaluate(Context(view, lists))

    def matches(self, features: FeatureView | Mapping[str, object], lists: ListLookup) -> bool:
        """True only when the condition is true; unknown counts as no match."""
        return self.evaluate(features, lists) is True

    def describe(self) -> str:
        return self.root.describe()

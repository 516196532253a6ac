"""The compiler: parse, type-check against the registry and list catalog, lower to a predicate.

Every error a rule can have is raised here, with the position of the offending token, so a rule
that compiles cannot fail on a payment for reasons of its own. Type rules:

- a bare attribute used as a condition must be a boolean;
- `< <= > >=` compare numbers only; `=` and `!=` compare values of the same kind (a number with a
  number, a country with a country or a two-letter string, …); comparing two attributes needs the
  same kind on both sides;
- `in (…)` items must each be valid values of the attribute's kind (all literal items are
  normalised: `'us'` becomes `'US'`); `in @list` needs a list of exactly the attribute's kind;
- `like` applies to text kinds only, and the pattern is case-folded like the attribute's values;
- literals of attributes with a closed vocabulary (`:card_funding:`) must be in the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

from bastionpay.risk.rules.attributes import DEFAULT_REGISTRY, AttributeRegistry, AttributeSpec
from bastionpay.risk.rules.errors import ErrorKind, RuleSyntaxError
from bastionpay.risk.rules.like import compile_like
from bastionpay.risk.rules.limits import DEFAULT_LIMITS, Limits
from bastionpay.risk.rules.parser import parse
from bastionpay.risk.rules.predicate import (
    AllOf,
    AnyOf,
    Attr,
    CompareAttrs,
    CompareValue,
    CompiledPredicate,
    InList,
    InSet,
    IsTrue,
    Matches,
    Missing,
    Negation,
    Node,
)
from bastionpay.risk.rules.syntax import (
    And,
    AttrRef,
    BareAttr,
    Comparison,
    Expr,
    InLiteral,
    InNamedList,
    IsMissing,
    Like,
    Literal,
    Not,
    Or,
)
from bastionpay.risk.rules.values import (
    TEXT_KINDS,
    InvalidValue,
    Value,
    ValueKind,
    fold_case,
    normalize_text,
    render_value,
)


class ListCatalog(Protocol):
    def list_kind(self, name: str) -> ValueKind | None:
        """The kind of list `name`, or None when there is no such list."""
        ...


class _NoLists:
    def list_kind(self, name: str) -> ValueKind | None:
        return None


NO_LISTS: Final[ListCatalog] = _NoLists()

_ORDERING: Final = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class CompiledRule:
    action: str
    predicate: CompiledPredicate


def _kind_name(kind: ValueKind) -> str:
    return {ValueKind.NUMBER: "a number", ValueKind.BOOLEAN: "a boolean"}.get(
        kind, f"{'an' if kind.value[0] in 'aeiou' else 'a'} {kind.value.replace('_', ' ')}"
    )


def _literal_kind_name(value: Value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Decimal):
        return "a number"
    return "a string"


class _Compiler:
    def __init__(
        self,
        source: str,
        registry: AttributeRegistry,
        lists: ListCatalog,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.source = source
        self.registry = registry
        self.lists = lists
        self.limits = limits
        self.list_names: set[str] = set()
        self.list_refs = 0

    def error(self, message: str, position: int, kind: ErrorKind = "type") -> RuleSyntaxError:
        return RuleSyntaxError(message, position=position, source=self.source, kind=kind)

    def attr(self, ref: AttrRef) -> AttributeSpec:
        spec = self.registry.get(ref.name)
        if spec is None:
            hint = self.registry.suggest(ref.name)
            message = f"unknown attribute :{ref.name}:"
            if hint:
                message += f"; did you mean :{hint}:?"
            raise self.error(message, ref.position, "unknown_attribute")
        return spec

    def value(self, spec: AttributeSpec, literal: Literal) -> Value:
        """A literal checked and normalised as a value of `spec`'s kind."""
        value = literal.value
        expected = spec.kind
        if expected is ValueKind.NUMBER:
            if not isinstance(value, Decimal):
                raise self.mismatch(spec, literal)
            return value
        if expected is ValueKind.BOOLEAN:
            if not isinstance(value, bool):
                raise self.mismatch(spec, literal)
            return value
        if not isinstance(value, str):
            raise self.mismatch(spec, literal)
        try:
            text = normalize_text(expected, value)
        except InvalidValue as exc:
            raise self.error(f"invalid value for :{spec.name}:: {exc}", literal.position) from None
        if spec.allowed is not None and text not in spec.allowed:
            choices = ", ".join(sorted(spec.allowed))
            raise self.error(
                f"{render_value(value)} is not a value of :{spec.name}: (one of: {choices})",
                literal.position,
            )
        return text

    def mismatch(self, spec: AttributeSpec, literal: Literal) -> RuleSyntaxError:
        return self.error(
            f"type mismatch: :{spec.name}: is {_kind_name(spec.kind)}, "
            f"but {render_value(literal.value)} is {_literal_kind_name(literal.value)}",
            literal.position,
        )

    def lower(self, expr: Expr) -> Node:
        if isinstance(expr, Or):
            return AnyOf(tuple(self.lower(e) for e in expr.operands))
        if isinstance(expr, And):
            return AllOf(tuple(self.lower(e) for e in expr.operands))
        if isinstance(expr, Not):
            return Negation(self.lower(expr.operand))
        if isinstance(expr, IsMissing):
            spec = self.attr(expr.attr)
            return Missing(Attr(spec.name, spec.kind))
        if isinstance(expr, BareAttr):
            return self.bare(expr)
        if isinstance(expr, Comparison):
            return self.comparison(expr)
        if isinstance(expr, InLiteral):
            return self.in_literal(expr)
        if isinstance(expr, InNamedList):
            return self.in_list(expr)
        return self.like(expr)

    def bare(self, expr: BareAttr) -> Node:
        spec = self.attr(expr.attr)
        if spec.kind is not ValueKind.BOOLEAN:
            raise self.error(
                f":{spec.name}: is {_kind_name(spec.kind)}, not a boolean: compare it "
                f"(e.g. :{spec.name}: = …) to make a condition",
                expr.attr.position,
            )
        return IsTrue(Attr(spec.name, spec.kind))

    def comparison(self, expr: Comparison) -> Node:
        spec = self.attr(expr.left)
        if expr.operator in _ORDERING and spec.kind is not ValueKind.NUMBER:
            raise self.error(
                f"{expr.operator!r} compares numbers, but :{spec.name}: is {_kind_name(spec.kind)}",
                expr.position,
            )
        if isinstance(expr.right, AttrRef):
            other = self.attr(expr.right)
            if other.kind is not spec.kind:
                raise self.error(
                    f"type mismatch: :{spec.name}: is {_kind_name(spec.kind)} but "
                    f":{other.name}: is {_kind_name(other.kind)}",
                    expr.right.position,
                )
            return CompareAttrs(
                Attr(spec.name, spec.kind), expr.operator, Attr(other.name, other.kind)
            )
        return CompareValue(Attr(spec.name, spec.kind), expr.operator, self.value(spec, expr.right))

    def in_literal(self, expr: InLiteral) -> Node:
        spec = self.attr(expr.attr)
        if spec.kind is ValueKind.BOOLEAN:
            raise self.error(
                f"'in' needs a number or text attribute; :{spec.name}: is a boolean",
                expr.position,
            )
        values = tuple(self.value(spec, item) for item in expr.items)
        return InSet(Attr(spec.name, spec.kind), frozenset(values), values, expr.negated)

    def in_list(self, expr: InNamedList) -> Node:
        self.list_refs += 1
        if self.list_refs > self.limits.max_list_refs:
            raise self.error(
                f"a rule may test at most {self.limits.max_list_refs} lists",
                expr.list_position,
                "limit",
            )
        spec = self.attr(expr.attr)
        kind = self.lists.list_kind(expr.list_name)
        if kind is None:
            raise self.error(f"unknown list @{expr.list_name}", expr.list_position, "unknown_list")
        if kind is not spec.kind:
            raise self.error(
                f"type mismatch: @{expr.list_name} holds {kind.value.replace('_', ' ')} values, "
                f"but :{spec.name}: is {_kind_name(spec.kind)}",
                expr.list_position,
            )
        self.list_names.add(expr.list_name)
        return InList(Attr(spec.name, spec.kind), expr.list_name, expr.negated)

    def like(self, expr: Like) -> Node:
        spec = self.attr(expr.attr)
        if spec.kind not in TEXT_KINDS:
            raise self.error(
                f"'like' matches text, but :{spec.name}: is {_kind_name(spec.kind)}",
                expr.position,
            )
        raw = expr.pattern.value
        if not isinstance(raw, str):  # the parser only builds string patterns
            raise self.error("'like' needs a quoted pattern", expr.pattern.position, "syntax")
        try:
            pattern = compile_like(fold_case(spec.kind, raw))
        except InvalidValue as exc:
            raise self.error(str(exc), expr.pattern.position, "syntax") from None
        return Matches(Attr(spec.name, spec.kind), pattern, expr.negated)


def compile_rule(
    source: str,
    *,
    registry: AttributeRegistry = DEFAULT_REGISTRY,
    lists: ListCatalog = NO_LISTS,
    limits: Limits = DEFAULT_LIMITS,
) -> CompiledRule:
    """Parse and check one rule (`block if …`). Raises only RuleSyntaxError."""
    syntax = parse(source, limits)
    compiler = _Compiler(source, registry, lists, limits)
    root = compiler.lower(syntax.condition)
    predicate = CompiledPredicate(root, root.attributes(), frozenset(compiler.list_names))
    return CompiledRule(syntax.action, predicate)

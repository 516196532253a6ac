"""The syntax tree the parser builds: untyped, with source positions for error messages.

The compiler (`compiler.py`) checks it against the attribute registry and the list catalog and
lowers it to the predicate tree that is evaluated; nothing here is ever evaluated directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class AttrRef:
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Literal:
    value: Decimal | bool | str
    position: int


@dataclass(frozen=True, slots=True)
class Comparison:
    left: AttrRef
    operator: str  # = != < <= > >=
    right: AttrRef | Literal
    position: int  # of the operator


@dataclass(frozen=True, slots=True)
class InLiteral:
    attr: AttrRef
    items: tuple[Literal, ...]
    negated: bool
    position: int  # of `in`


@dataclass(frozen=True, slots=True)
class InNamedList:
    attr: AttrRef
    list_name: str
    list_position: int
    negated: bool
    position: int


@dataclass(frozen=True, slots=True)
class Like:
    attr: AttrRef
    pattern: Literal
    negated: bool
    position: int


@dataclass(frozen=True, slots=True)
class BareAttr:
    """An attribute used as a condition on its own: it must be a boolean."""

    attr: AttrRef


@dataclass(frozen=True, slots=True)
class IsMissing:
    attr: AttrRef
    position: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    position: int


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Comparison | InLiteral | InNamedList | Like | BareAttr | IsMissing | Not | And | Or


@dataclass(frozen=True, slots=True)
class RuleSyntax:
    action: str
    condition: Expr

"""Recursive-descent parser: tokens → syntax tree. Grammar (EBNF, keywords case-insensitive):

    rule       = action "if" condition END ;
    action     = "allow" | "block" | "review" | "request_3ds" ;
    condition  = conjunct { "or" conjunct } ;
    conjunct   = negation { "and" negation } ;
    negation   = "not" negation | primary ;
    primary    = "(" condition ")"
               | "is_missing" "(" ATTRIBUTE ")"
               | ATTRIBUTE [ test ] ;
    test       = OPERATOR ( ATTRIBUTE | literal )
               | [ "not" ] "in" ( LIST | "(" literal { "," literal } ")" )
               | [ "not" ] "like" STRING ;
    literal    = NUMBER | STRING | "true" | "false" ;

`not` binds tighter than `and`, which binds tighter than `or`. Nesting of parentheses and `not` is
counted and capped (`Limits.max_depth`) before Python's own recursion limit could be reached, and
chains of `and`/`or` are collected into one n-ary node rather than a deep binary tree.
"""

from __future__ import annotations

from bastionpay.risk.rules.errors import ErrorKind, RuleSyntaxError, excerpt
from bastionpay.risk.rules.lexer import Token, TokenKind, tokenize
from bastionpay.risk.rules.limits import Limits
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
    RuleSyntax,
)

ACTIONS = ("allow", "block", "review", "request_3ds")


def _describe(token: Token) -> str:
    if token.kind is TokenKind.END:
        return "the end of the rule"
    if token.kind is TokenKind.ATTRIBUTE:
        return f"attribute :{token.text}:"
    if token.kind is TokenKind.LIST:
        return f"list @{token.text}"
    if token.kind is TokenKind.STRING:
        return f"string {excerpt(token.text)}"
    if token.kind is TokenKind.NUMBER:
        return f"number {token.text}"
    return f"{token.text!r}"


class _Parser:
    def __init__(self, source: str, tokens: list[Token], limits: Limits) -> None:
        self.source = source
        self.tokens = tokens
        self.limits = limits
        self.index = 0

    # -- token helpers ------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not TokenKind.END:
            self.index += 1
        return token

    def at_word(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind is TokenKind.WORD and token.text == word

    def error(self, message: str, position: int, kind: ErrorKind = "syntax") -> RuleSyntaxError:
        return RuleSyntaxError(message, position=position, source=self.source, kind=kind)

    def expected(self, what: str) -> RuleSyntaxError:
        token = self.peek()
        return self.error(f"expected {what}, found {_describe(token)}", token.position)

    def check_depth(self, depth: int, position: int) -> None:
        if depth > self.limits.max_depth:
            raise self.error(
                f"conditions nest at most {self.limits.max_depth} levels deep "
                "(parentheses and 'not')",
                position,
                "limit",
            )

    # -- grammar ------------------------------------------------------------------------------
    def rule(self) -> RuleSyntax:
        token = self.peek()
        if token.kind is not TokenKind.WORD or token.text not in ACTIONS:
            raise self.expected("an action (allow, block, review or request_3ds)")
        action = self.advance().text
        if not self.at_word("if"):
            raise self.expected(f"'if' after {action!r}")
        self.advance()
        condition = self.condition(0)
        if self.peek().kind is not TokenKind.END:
            raise self.expected("'and', 'or' or the end of the rule")
        return RuleSyntax(action, condition)

    def condition(self, depth: int) -> Expr:
        operands = [self.conjunct(depth)]
        while self.at_word("or"):
            self.advance()
            operands.append(self.conjunct(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunct(self, depth: int) -> Expr:
        operands = [self.negation(depth)]
        while self.at_word("and"):
            self.advance()
            operands.append(self.negation(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self, depth: int) -> Expr:
        if self.at_word("not"):
            position = self.advance().position
            self.check_depth(depth + 1, position)
            return Not(self.negation(depth + 1), position)
        return self.primary(depth)

    def primary(self, depth: int) -> Expr:
        token = self.peek()
        if token.kind is TokenKind.LPAREN:
            self.advance()
            self.check_depth(depth + 1, token.position)
            inner = self.condition(depth + 1)
            if self.peek().kind is not TokenKind.RPAREN:
                opened = token.position - (self.source.rfind("\n", 0, token.position) + 1) + 1
                raise self.expected(f"')' to close the '(' opened at column {opened}")
            self.advance()
            return inner
        if self.at_word("is_missing"):
            self.advance()
            if self.peek().kind is not TokenKind.LPAREN:
                raise self.expected("'(' after is_missing")
            self.advance()
            attr = self.attribute("an attribute inside is_missing( )")
            if self.peek().kind is not TokenKind.RPAREN:
                raise self.expected("')' to close is_missing(")
            self.advance()
            return IsMissing(attr, token.position)
        if token.kind is TokenKind.ATTRIBUTE:
            return self.test(self.attribute("an attribute"))
        if token.kind in (TokenKind.NUMBER, TokenKind.STRING) or (
            token.kind is TokenKind.WORD and token.text in ("true", "false")
        ):
            raise self.error(
                "a condition starts with an :attribute: (write :attribute: > 10, not 10 < "
                ":attribute:)",
                token.position,
            )
        raise self.expected("a condition")

    def attribute(self, what: str) -> AttrRef:
        token = self.peek()
        if token.kind is not TokenKind.ATTRIBUTE:
            raise self.expected(what)
        self.advance()
        return AttrRef(token.text, token.position)

    def test(self, attr: AttrRef) -> Expr:
        token = self.peek()
        if token.kind is TokenKind.OPERATOR:
            self.advance()
            right: AttrRef | Literal
            if self.peek().kind is TokenKind.ATTRIBUTE:
                right = self.attribute("an attribute")
            else:
                right = self.literal()
            return Comparison(attr, token.text, right, token.position)
        negated = False
        if self.at_word("not") and (self.at_word("in", 1) or self.at_word("like", 1)):
            negated = True
            self.advance()
            token = self.peek()
        if self.at_word("in"):
            self.advance()
            return self.membership(attr, negated, token.position)
        if self.at_word("like"):
            self.advance()
            pattern = self.peek()
            if pattern.kind is not TokenKind.STRING:
                raise self.expected("a quoted pattern after 'like'")
            self.advance()
            return Like(attr, Literal(pattern.text, pattern.position), negated, token.position)
        return BareAttr(attr)

    def membership(self, attr: AttrRef, negated: bool, position: int) -> Expr:
        token = self.peek()
        if token.kind is TokenKind.LIST:
            self.advance()
            return InNamedList(attr, token.text, token.position, negated, position)
        if token.kind is not TokenKind.LPAREN:
            raise self.expected("a list after 'in': @name or ('a', 'b')")
        self.advance()
        items = [self.literal()]
        while self.peek().kind is TokenKind.COMMA:
            self.advance()
            if len(items) >= self.limits.max_list_items:
                raise self.error(
                    f"a list literal has at most {self.limits.max_list_items} items; "
                    "use a named @list for more",
                    self.peek().position,
                    "limit",
                )
            items.append(self.literal())
        if self.peek().kind is not TokenKind.RPAREN:
            raise self.expected("',' or ')' in the list")
        self.advance()
        return InLiteral(attr, tuple(items), negated, position)

    def literal(self) -> Literal:
        token = self.peek()
        if token.kind is TokenKind.NUMBER and token.number is not None:
            self.advance()
            return Literal(token.number, token.position)
        if token.kind is TokenKind.STRING:
            self.advance()
            return Literal(token.text, token.position)
        if token.kind is TokenKind.WORD and token.text in ("true", "false"):
            self.advance()
            return Literal(token.text == "true", token.position)
        raise self.expected("a value (a number, a 'string', true or false)")


def parse(source: str, limits: Limits) -> RuleSyntax:
    """The syntax tree of one rule, or RuleSyntaxError."""
    return _Parser(source, tokenize(source, limits), limits).rule()

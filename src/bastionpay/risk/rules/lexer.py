"""The tokenizer: rule text → tokens, by hand, one character class at a time.

Outside string literals only printable ASCII and ordinary whitespace are accepted, so look-alike
characters (a full-width colon, a Cyrillic `а`), invisible ones (NUL, zero-width space) and
bidirectional overrides that make a rule read differently from how it parses (Trojan Source,
CVE-2021-42574) are rejected with their code point named. Inside strings, control and format
characters are rejected for the same reason. Numbers are checked digit by digit against the limits
before any conversion, so `1e999999` or a 100,000-digit literal costs nothing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Final

from bastionpay.risk.rules.errors import ErrorKind, RuleSyntaxError, describe_char, excerpt
from bastionpay.risk.rules.limits import Limits


class TokenKind(Enum):
    WORD = "word"  # a keyword, lower-cased
    ATTRIBUTE = "attribute"  # :name:
    LIST = "list"  # @name
    STRING = "string"
    NUMBER = "number"
    OPERATOR = "operator"  # = != < <= > >=
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # keyword / name / operator / the string's decoded value
    position: int
    number: Decimal | None = None


KEYWORDS: Final = frozenset(
    {
        "if",
        "and",
        "or",
        "not",
        "in",
        "like",
        "true",
        "false",
        "allow",
        "block",
        "review",
        "request_3ds",
        "is_missing",
    }
)

_WHITESPACE: Final = frozenset(" \t\r\n")
_WORD_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_WORD_CHARS: Final = _WORD_START | frozenset("0123456789")
_NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_NAME_CHARS: Final = _NAME_START | frozenset("0123456789_")
_DIGITS: Final = frozenset("0123456789")
# Escapes a string literal understands. `\%` and `\_` are kept as written so that `like` can read
# them as a literal percent sign or underscore.
_STRING_ESCAPES: Final = {"'": "'", "\\": "\\", "%": "\\%", "_": "\\_"}


class _Lexer:
    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.pos = 0
        self.tokens: list[Token] = []

    def error(self, message: str, position: int, kind: ErrorKind = "syntax") -> RuleSyntaxError:
        return RuleSyntaxError(message, position=position, source=self.source, kind=kind)

    def run(self) -> list[Token]:
        src = self.source
        while True:
            while self.pos < len(src) and src[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos >= len(src):
                self.tokens.append(Token(TokenKind.END, "", self.pos))
                return self.tokens
            if len(self.tokens) >= self.limits.max_tokens:
                raise self.error(
                    f"a rule has at most {self.limits.max_tokens} tokens", self.pos, "limit"
                )
            self.tokens.append(self.next_token())

    def next_token(self) -> Token:
        src = self.source
        start = self.pos
        ch = src[start]
        if ch in _WORD_START:
            return self.word()
        if ch in _DIGITS or (ch == "-" and start + 1 < len(src) and src[start + 1] in _DIGITS):
            return self.number()
        if ch == ":":
            return self.named(TokenKind.ATTRIBUTE, closing=":")
        if ch == "@":
            return self.named(TokenKind.LIST, closing=None)
        if ch == "'":
            return self.string()
        if ch in "(),":
            self.pos += 1
            kind = {"(": TokenKind.LPAREN, ")": TokenKind.RPAREN, ",": TokenKind.COMMA}[ch]
            return Token(kind, ch, start)
        return self.operator()

    def word(self) -> Token:
        src = self.source
        start = self.pos
        end = start
        while end < len(src) and src[end] in _WORD_CHARS:
            end += 1
        if end < len(src) and not src[end].isascii():
            # `blоck` with a Cyrillic о: name the look-alike instead of complaining about `bl`.
            raise self.error(
                f"unexpected character {describe_char(src[end])}: words are plain ASCII", end
            )
        self.pos = end
        # Only ASCII reaches here, so lower() cannot fold a look-alike (the Kelvin sign K → k).
        text = src[start:end].lower()
        if end - start > self.limits.max_name_length:
            raise self.error("word too long", start, "limit")
        if text not in KEYWORDS:
            raise self.error(
                f"unexpected word {excerpt(src[start:end])}; attributes are written "
                f":name: and lists @name",
                start,
            )
        return Token(TokenKind.WORD, text, start)

    def number(self) -> Token:
        src = self.source
        start = self.pos
        index = start + 1 if src[start] == "-" else start
        int_start = index
        while index < len(src) and src[index] in _DIGITS:
            index += 1
        integer_digits = index - int_start
        fraction_digits = 0
        if index < len(src) and src[index] == ".":
            frac_start = index + 1
            index = frac_start
            while index < len(src) and src[index] in _DIGITS:
                index += 1
            fraction_digits = index - frac_start
            if fraction_digits == 0:
                raise self.error("a decimal point must be followed by digits", frac_start - 1)
        if index < len(src) and (src[index] in _WORD_CHARS or src[index] == "."):
            raise self.error(
                "malformed number: write plain decimals such as 1000 or 0.25 "
                "(no exponents, units or separators)",
                index,
            )
        if integer_digits > self.limits.max_integer_digits:
            raise self.error(
                f"number too large: at most {self.limits.max_integer_digits} digits before "
                "the decimal point",
                start,
                "limit",
            )
        if fraction_digits > self.limits.max_fraction_digits:
            raise self.error(
                f"number too precise: at most {self.limits.max_fraction_digits} decimal places",
                start,
                "limit",
            )
        self.pos = index
        text = src[start:index]
        return Token(TokenKind.NUMBER, text, start, Decimal(text))

    def named(self, kind: TokenKind, closing: str | None) -> Token:
        src = self.source
        start = self.pos
        what = "attribute" if kind is TokenKind.ATTRIBUTE else "list"
        index = start + 1
        if index >= len(src) or src[index] not in _NAME_START:
            shown = "end of rule" if index >= len(src) else describe_char(src[index])
            raise self.error(
                f"expected a lower-case {what} name after {src[start]!r}, found {shown}",
                index,
            )
        while index < len(src) and src[index] in _NAME_CHARS:
            index += 1
        name = src[start + 1 : index]
        if len(name) > self.limits.max_name_length:
            raise self.error(f"{what} name too long", start + 1, "limit")
        if closing is not None:
            if index >= len(src) or src[index] != closing:
                found = "end of rule" if index >= len(src) else describe_char(src[index])
                raise self.error(
                    f"{what} names are lower-case letters, digits and underscores, closed by "
                    f"{closing!r}; found {found}",
                    index,
                )
            index += 1
        elif index < len(src) and src[index] in _WORD_CHARS:
            raise self.error(f"{what} names are lower-case letters, digits and underscores", index)
        self.pos = index
        return Token(kind, name, start)

    def string(self) -> Token:
        src = self.source
        start = self.pos
        index = start + 1
        out: list[str] = []
        while True:
            if index >= len(src) or src[index] == "\n":
                raise self.error("unterminated string: a closing ' is missing", start)
            ch = src[index]
            if ch == "'":
                break
            if ch == "\\":
                if index + 1 >= len(src):
                    raise self.error("unterminated string: a closing ' is missing", start)
                escaped = src[index + 1]
                if escaped not in _STRING_ESCAPES:
                    raise self.error(
                        "unknown escape in string: only \\' \\\\ \\% and \\_ are allowed", index
                    )
                out.append(_STRING_ESCAPES[escaped])
                index += 2
                continue
            if unicodedata.category(ch)[0] == "C":
                raise self.error(f"character {describe_char(ch)} is not allowed in a string", index)
            out.append(ch)
            index += 1
            if len(out) > self.limits.max_string_length:
                raise self.error(
                    f"string too long: at most {self.limits.max_string_length} characters",
                    start,
                    "limit",
                )
        self.pos = index + 1
        return Token(TokenKind.STRING, "".join(out), start)

    def operator(self) -> Token:
        src = self.source
        start = self.pos
        two = src[start : start + 2]
        if two in ("!=", "<=", ">="):
            self.pos += 2
            return Token(TokenKind.OPERATOR, two, start)
        if two == "==":
            raise self.error("equality is written '=', not '=='", start)
        if two == "<>":
            raise self.error("inequality is written '!='", start)
        ch = src[start]
        if ch in "=<>":
            self.pos += 1
            return Token(TokenKind.OPERATOR, ch, start)
        if ch == '"':
            raise self.error("strings are written in single quotes: 'text'", start)
        if ch == "!":
            raise self.error("negation is written 'not' (or '!=' for inequality)", start)
        raise self.error(f"unexpected character {describe_char(ch)}", start)


def tokenize(source: str, limits: Limits) -> list[Token]:
    """Tokens of `source` ending with an END token, or RuleSyntaxError."""
    if not isinstance(source, str):  # the API passes form data through; be strict at the edge
        raise RuleSyntaxError("a rule is text", position=0, kind="syntax")
    if len(source) > limits.max_length:
        raise RuleSyntaxError(
            f"a rule is at most {limits.max_length} characters long (this one has {len(source)})",
            position=limits.max_length,
            source=source,
            kind="limit",
        )
    return _Lexer(source, limits).run()

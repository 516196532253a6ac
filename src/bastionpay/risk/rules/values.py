"""Value kinds: what an attribute, a literal or a list entry can be, and how each is normalised.

One normaliser per kind is applied to feature values, to literals in rules and to list entries, so
`:email: = 'Bob@Example.org'` and a feature `bob@example.org` compare equal, and a list entry added
as `  Us` cannot silently never match. Numbers are `Decimal`, never float: money and thresholds
compare exactly (ARCHITECTURE: no floats near money).
"""

from __future__ import annotations

import ipaddress
import math
import unicodedata
from decimal import Decimal
from enum import StrEnum
from typing import Final


class ValueKind(StrEnum):
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"  # compared exactly, case-sensitive
    COUNTRY = "country"  # ISO 3166-1 alpha-2, upper case
    EMAIL = "email"  # lower case
    EMAIL_DOMAIN = "email_domain"  # lower case, no trailing dot
    IP_ADDRESS = "ip_address"  # canonical text form of an IPv4 or IPv6 address
    CARD_FINGERPRINT = "card_fingerprint"  # the vault's keyed fingerprint, exact
    CARD_BIN = "card_bin"  # 6 or 8 digits
    CUSTOMER_ID = "customer_id"  # exact


TEXT_KINDS: Final = frozenset(ValueKind) - {ValueKind.NUMBER, ValueKind.BOOLEAN}
# Named lists hold text: numbers and booleans have no use as list entries.
LIST_KINDS: Final = TEXT_KINDS

Value = Decimal | bool | str

MAX_TEXT_VALUE: Final = 512  # characters in a list entry (emails are ≤ 254, RFC 5321)


class InvalidValue(ValueError):
    """A value does not fit its kind; callers turn this into a positioned or named error."""


def normalize_text(kind: ValueKind, text: str) -> str:
    """The canonical form of `text` as a value of a text `kind`, or InvalidValue."""
    if kind is ValueKind.COUNTRY:
        if len(text) != 2 or not text.isascii() or not text.isalpha():
            raise InvalidValue(f"a country is a two-letter ISO 3166-1 code, not {len(text)} chars")
        return text.upper()
    if kind is ValueKind.EMAIL:
        return text.lower()
    if kind is ValueKind.EMAIL_DOMAIN:
        return text.lower().removesuffix(".")
    if kind is ValueKind.CARD_BIN:
        if len(text) not in (6, 8) or not text.isascii() or not text.isdigit():
            raise InvalidValue("a card BIN is 6 or 8 digits")
        return text
    if kind is ValueKind.IP_ADDRESS:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise InvalidValue("not an IPv4 or IPv6 address") from None
    return text


def fold_case(kind: ValueKind, text: str) -> str:
    """Case-fold a `like` pattern the way `normalize_text` folds values of `kind`."""
    if kind in (ValueKind.EMAIL, ValueKind.EMAIL_DOMAIN):
        return text.lower()
    if kind is ValueKind.COUNTRY:
        return text.upper()
    return text


def lookup_keys(kind: ValueKind, value: str) -> tuple[str, ...]:
    """The list entries that would make `value` a member.

    An 8-digit BIN is also a member of a list that holds its 6-digit prefix: issuers publish
    ranges at either length, and a merchant blocking `424242` means every card under it.
    """
    if kind is ValueKind.CARD_BIN and len(value) == 8:
        return (value, value[:6])
    return (value,)


def coerce_feature(kind: ValueKind, raw: object) -> Value | None:
    """A feature value as the evaluator sees it; None means missing.

    Floats (a model's score) are read through their shortest repr, so 0.1 is Decimal('0.1') and
    not the binary approximation; NaN is read as missing, since no comparison with it means
    anything. Any other mismatch is an integration bug and raises InvalidValue.
    """
    if raw is None:
        return None
    if kind is ValueKind.NUMBER:
        if isinstance(raw, bool):
            raise InvalidValue("expected a number, got a boolean")
        if isinstance(raw, int):
            return Decimal(raw)
        if isinstance(raw, Decimal):
            if raw.is_nan():
                return None
            if raw.is_infinite():
                raise InvalidValue("expected a finite number")
            return raw
        if isinstance(raw, float):
            if math.isnan(raw):
                return None
            if math.isinf(raw):
                raise InvalidValue("expected a finite number")
            return Decimal(repr(raw))
        raise InvalidValue(f"expected a number, got {type(raw).__name__}")
    if kind is ValueKind.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        raise InvalidValue(f"expected a boolean, got {type(raw).__name__}")
    if not isinstance(raw, str):
        raise InvalidValue(f"expected a string, got {type(raw).__name__}")
    return normalize_text(kind, raw)


def render_value(value: Value | None) -> str:
    """A value as it would be written in a rule: 75, 'US', true; `missing` for None."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return "'" + escape_text(value) + "'"


def escape_text(text: str) -> str:
    """Backslash-escape quotes and backslashes, and show control and format characters (line
    breaks, NUL, bidirectional overrides) as `\\u` and four hex digits, so a rendered value is
    one safe line."""
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif unicodedata.category(ch).startswith("C"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def to_json_value(value: Value | None) -> str | bool | None:
    """JSON-safe form for decision records: Decimals as strings, so no precision is lost."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value

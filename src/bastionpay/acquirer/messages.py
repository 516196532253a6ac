"""Encoding and decoding ISO 8583 messages in our dialect (`spec`), with field validation.

pyiso8583 checks lengths but not content (an `n` field may hold letters), so every field is checked
here on the way out and on the way in; a message that fails is a `MessageError`. Its text names the
field, never the value: values include card numbers and CVCs (L3, C1). pyiso8583's own errors carry
the whole message in attributes, so they are replaced (`from None`), never wrapped or logged.

Also here: DE 48 subelements, DE 90 original data elements, the time fields, and the derivation of
RRNs from the caller's idempotency references.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import iso8583

from bastionpay.acquirer.spec import (
    OPTIONAL_FIELDS,
    PRIVATE_TAGS,
    REQUIRED_FIELDS,
    SPEC,
    TAG_CRYPTOGRAM,
    TAG_CVC,
    TAG_ECI,
    TAG_REFUND_REFERENCE,
)

Message = dict[str, str]


class MessageError(Exception):
    """A message that cannot be encoded or decoded, or breaks our dialect. Never holds values."""

    def __init__(self, problem: str, *, field: str | None = None) -> None:
        super().__init__(f"{problem} (field {field})" if field else problem)
        self.problem = problem
        self.field = field


# --- Field formats --------------------------------------------------------------------------------
_NUMERIC_LENGTH: Final[dict[str, int]] = {
    "3": 6, "4": 12, "7": 10, "11": 6, "12": 6, "13": 4, "14": 4, "22": 3, "49": 3, "70": 3,
    "90": 42,
}  # fmt: skip
_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "2": re.compile(r"[0-9]{12,19}"),
    "37": re.compile(r"[0-9A-Z]{12}"),
    "38": re.compile(r"[0-9A-Z]{6}"),
    "39": re.compile(r"[0-9A-Z]{2}"),
    "41": re.compile(r"[ -~]{8}"),
    "42": re.compile(r"[ -~]{15}"),
    "44": re.compile(r"[MNP]"),
}
_SUBELEMENT_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    TAG_ECI: re.compile(r"[0-9]{2}"),
    TAG_CRYPTOGRAM: re.compile(r"[A-Za-z0-9+/=]{1,40}"),
    TAG_REFUND_REFERENCE: re.compile(r"[0-9A-Z]{12}"),
    TAG_CVC: re.compile(r"[0-9]{3,4}"),
}


def _check_field(key: str, value: str) -> None:
    if not isinstance(value, str):
        raise MessageError("field value is not text", field=key)
    length = _NUMERIC_LENGTH.get(key)
    if length is not None:
        if len(value) != length or not value.isascii() or not value.isdigit():
            raise MessageError(f"expected {length} digits", field=key)
        return
    pattern = _PATTERNS.get(key)
    if pattern is not None and not pattern.fullmatch(value):
        raise MessageError("invalid format", field=key)
    if key == "48":
        decode_private_data(value)


def validate(message: Mapping[str, str]) -> None:
    """Raise MessageError unless `message` is a well-formed message of a type we speak."""
    mti = message.get("t")
    if mti not in REQUIRED_FIELDS:
        raise MessageError("unsupported message type", field="t")
    fields = {key for key in message if key != "t"}
    required = REQUIRED_FIELDS[mti]
    missing = required - fields
    if missing:
        raise MessageError("missing field", field=min(missing, key=int))
    extra = fields - required - OPTIONAL_FIELDS[mti]
    if extra:
        raise MessageError("field not allowed in this message", field=min(extra, key=int))
    for key in sorted(fields, key=int):
        _check_field(key, message[key])
    if "48" in fields:
        stray = set(decode_private_data(message["48"])) - PRIVATE_TAGS.get(mti, frozenset())
        if stray:
            raise MessageError("subelement not allowed in this message", field=f"48.{min(stray)}")


def encode_message(message: Mapping[str, str]) -> bytes:
    """The wire form of `message` (without the frame header). Validates first."""
    validate(message)
    try:
        raw, _ = iso8583.encode(dict(message), SPEC)
    except iso8583.EncodeError as exc:
        raise MessageError("cannot encode", field=exc.field) from None
    return bytes(raw)


def decode_raw(data: bytes) -> Message:
    """The fields of `data` as pyiso8583 reads them, bitmaps removed, content unchecked."""
    try:
        decoded, _ = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        raise MessageError("cannot decode", field=exc.field) from None
    except (TypeError, ValueError, UnicodeError):
        raise MessageError("cannot decode") from None
    return {key: value for key, value in decoded.items() if key not in {"h", "p", "1"}}


def decode_message(data: bytes) -> Message:
    """The fields of `data`, checked against our dialect."""
    message = decode_raw(data)
    validate(message)
    return message


# --- DE 48: private subelements -------------------------------------------------------------------


def encode_private_data(items: Mapping[str, str]) -> str:
    """`{"92": "123", "42": "05"}` → `"420205" "9203123"`: tag (2), length (2), value; by tag."""
    parts: list[str] = []
    for tag in sorted(items):
        value = items[tag]
        pattern = _SUBELEMENT_PATTERNS.get(tag)
        if pattern is None:
            raise MessageError("unknown subelement", field=f"48.{tag[:2]}")
        if not pattern.fullmatch(value):
            raise MessageError("invalid subelement", field=f"48.{tag}")
        parts.append(f"{tag}{len(value):02d}{value}")
    return "".join(parts)


def decode_private_data(text: str) -> dict[str, str]:
    items: dict[str, str] = {}
    position = 0
    while position < len(text):
        head = text[position : position + 4]
        if len(head) < 4 or not head.isascii() or not head.isdigit():
            raise MessageError("malformed subelement header", field="48")
        tag, length = head[:2], int(head[2:])
        value = text[position + 4 : position + 4 + length]
        if length == 0 or len(value) != length:
            raise MessageError("malformed subelement length", field=f"48.{tag}")
        pattern = _SUBELEMENT_PATTERNS.get(tag)
        if pattern is None:
            raise MessageError("unknown subelement", field=f"48.{tag}")
        if tag in items:
            raise MessageError("repeated subelement", field=f"48.{tag}")
        if not pattern.fullmatch(value):
            raise MessageError("invalid subelement", field=f"48.{tag}")
        items[tag] = value
        position += 4 + length
    if not items:
        raise MessageError("empty private data", field="48")
    return items


# --- DE 90: original data elements ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginalData:
    mti: str
    stan: str
    transmitted: str


_ZERO_INSTITUTIONS: Final = "0" * 22  # acquiring and forwarding institution ids (n 11 each)


def encode_original_data(mti: str, stan: str, transmitted: str) -> str:
    """DE 90: original MTI (4) + STAN (6) + transmission date and time (10) + two zero ids (22)."""
    text = f"{mti}{stan}{transmitted}{_ZERO_INSTITUTIONS}"
    _check_field("90", text)
    return text


def decode_original_data(text: str) -> OriginalData:
    _check_field("90", text)
    return OriginalData(mti=text[:4], stan=text[4:10], transmitted=text[10:20])


# --- Time fields ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeFields:
    transmitted: str  # DE 7, MMDDhhmmss
    local_time: str  # DE 12, hhmmss
    local_date: str  # DE 13, MMDD


def time_fields(unix_seconds: int) -> TimeFields:
    """DE 7, 12 and 13 for a moment (UTC: the simulated network has no local time zone)."""
    moment = dt.datetime.fromtimestamp(unix_seconds, dt.UTC)
    return TimeFields(
        transmitted=moment.strftime("%m%d%H%M%S"),
        local_time=moment.strftime("%H%M%S"),
        local_date=moment.strftime("%m%d"),
    )


# --- References -----------------------------------------------------------------------------------
REFERENCE_MAX: Final = 255  # Stripe's idempotency key limit (P1)
_BASE36: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_RRN_LENGTH: Final = 12


def derive_reference(kind: str, card_acceptor_id: str, reference: str) -> str:
    """A 12-character an reference (an RRN) that a caller's idempotency `reference` always maps
    to, so a retried request carries the same RRN and the issuer answers it as a duplicate.

    `kind` ("auth", "refund") and the card acceptor keep the spaces of different requests and
    merchants apart. 12 base-36 characters hold 62 bits of the SHA-256: collisions are negligible
    at any volume one acquirer link sees. The reference is an id, not a secret, so a plain hash
    is enough.
    """
    if not 0 < len(reference) <= REFERENCE_MAX or not reference.isprintable():
        raise ValueError(f"a reference is 1..{REFERENCE_MAX} printable characters")
    digest = hashlib.sha256(
        b"bastionpay-acquirer-reference\0"
        + kind.encode()
        + b"\0"
        + card_acceptor_id.encode()
        + b"\0"
        + reference.encode()
    ).digest()
    number = int.from_bytes(digest[:8], "big") % (36**_RRN_LENGTH)
    chars: list[str] = []
    for _ in range(_RRN_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_BASE36[digit])
    return "".join(reversed(chars))

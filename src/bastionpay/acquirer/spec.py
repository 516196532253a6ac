"""BastionPay's ISO 8583 dialect: the field spec, message types and the fields each one carries.

The spec is pyiso8583's `default_ascii` (ISO 8583:1987 field layout, every field ASCII, the bitmap
as 16 ASCII hex characters) with two fields tightened, so a message is readable in a packet capture
and a field can never grow past what we parse:

- DE 44 (Additional Response Data, LLVAR) carries one character, the CVC2 result (`M`/`N`/`P`);
- DE 48 (Additional Data – Private, LLLVAR) is capped at 256 characters: it holds our subelements
  (see `messages.encode_private_data`), never free text.

Field usage (docs/acquirer.md has the full table):

| field | use |
|---|---|
| 2 | PAN — only in the `0100`; never echoed in a response and never in follow-ups (C3) |
| 3 | processing code: `000000` purchase, `200000` refund |
| 4 | amount in minor units, n 12 |
| 7 | transmission date and time `MMDDhhmmss` UTC (matched with 11) |
| 11 | STAN, n 6, per client counter |
| 12/13 | local time `hhmmss` / date `MMDD` (UTC: the simulator has no local time zone) |
| 14 | expiry `YYMM` |
| 22 | POS entry mode, `812`: PAN entered for e-commerce, no PIN capability |
| 37 | RRN of the *authorization*, an 12, derived from the caller's idempotency reference; every
  follow-up (`0220`, `0400`, refund `0200`) repeats it |
| 38 | approval code (an 6) |
| 39 | response code |
| 41/42 | terminal id (ans 8) / card acceptor id (ans 15) |
| 44 | CVC2 result in the `0110` |
| 48 | subelements: `42` ECI, `43` 3-D Secure cryptogram, `92` CVC2 (in the `0100` only: C1),
  `71` refund reference (refund `0200`) |
| 49 | currency, ISO 4217 numeric |
| 70 | network management code (`301` echo test) |
| 90 | original data elements: MTI + STAN + transmission time of the original `0100` |
"""

from __future__ import annotations

import copy
from typing import Any, Final

from iso8583.specs import default_ascii

# --- Message type indicators ----------------------------------------------------------------------
AUTH_REQUEST: Final = "0100"
AUTH_RESPONSE: Final = "0110"
FINANCIAL_REQUEST: Final = "0200"  # refunds (processing code 20xxxx)
FINANCIAL_RESPONSE: Final = "0210"
COMPLETION_ADVICE: Final = "0220"
COMPLETION_ADVICE_REPEAT: Final = "0221"
COMPLETION_RESPONSE: Final = "0230"
REVERSAL_ADVICE: Final = "0400"
REVERSAL_ADVICE_REPEAT: Final = "0401"
REVERSAL_RESPONSE: Final = "0410"
NETWORK_REQUEST: Final = "0800"
NETWORK_RESPONSE: Final = "0810"

# Request MTI → response MTI; repeats (`xx1`) are answered like the first message.
RESPONSE_MTI: Final[dict[str, str]] = {
    AUTH_REQUEST: AUTH_RESPONSE,
    FINANCIAL_REQUEST: FINANCIAL_RESPONSE,
    COMPLETION_ADVICE: COMPLETION_RESPONSE,
    COMPLETION_ADVICE_REPEAT: COMPLETION_RESPONSE,
    REVERSAL_ADVICE: REVERSAL_RESPONSE,
    REVERSAL_ADVICE_REPEAT: REVERSAL_RESPONSE,
    NETWORK_REQUEST: NETWORK_RESPONSE,
}

# --- Field values ---------------------------------------------------------------------------------
PROCESSING_PURCHASE: Final = "000000"
PROCESSING_REFUND: Final = "200000"
POS_ENTRY_ECOMMERCE: Final = "812"
NETWORK_ECHO: Final = "301"

# DE 48 subelement tags (2 digits); the numbering follows Mastercard's DE 48 where one exists.
TAG_ECI: Final = "42"
TAG_CRYPTOGRAM: Final = "43"
TAG_REFUND_REFERENCE: Final = "71"
TAG_CVC: Final = "92"

# DE 44 CVC2 result codes (Visa's CVV2 result values) and Stripe's `cvc_check` for each.
CVC_MATCH: Final = "M"
CVC_NO_MATCH: Final = "N"
CVC_NOT_PROCESSED: Final = "P"
CVC_CHECK: Final[dict[str, str]] = {
    CVC_MATCH: "pass",
    CVC_NO_MATCH: "fail",
    CVC_NOT_PROCESSED: "unchecked",
}

PRIVATE_DATA_MAX: Final = 256


def _build_spec() -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = copy.deepcopy(default_ascii)
    spec["44"] = {**spec["44"], "max_len": 1, "desc": "CVC2 Result"}
    spec["48"] = {**spec["48"], "max_len": PRIVATE_DATA_MAX, "desc": "Private Subelements"}
    return spec


SPEC: Final = _build_spec()

# --- What each message carries --------------------------------------------------------------------
# `required` fields must be present; anything outside `required | optional` is a format error, so
# a PAN can never ride along in a message that has no business carrying it (C3).
_AUTH_FIELDS: Final = frozenset({"2", "3", "4", "7", "11", "12", "13", "14", "22", "37", "41"})
_TRACE: Final = frozenset({"4", "7", "11", "37", "41", "42", "49"})

REQUIRED_FIELDS: Final[dict[str, frozenset[str]]] = {
    AUTH_REQUEST: _AUTH_FIELDS | {"42", "49"},
    FINANCIAL_REQUEST: _TRACE | {"3", "12", "13", "48", "90"},
    COMPLETION_ADVICE: _TRACE | {"3", "12", "13", "90"},
    COMPLETION_ADVICE_REPEAT: _TRACE | {"3", "12", "13", "90"},
    REVERSAL_ADVICE: _TRACE | {"3", "12", "13", "90"},
    REVERSAL_ADVICE_REPEAT: _TRACE | {"3", "12", "13", "90"},
    NETWORK_REQUEST: frozenset({"7", "11", "70"}),
    # Responses: the matching keys and the answer. A format-error answer (`30`) may lack what the
    # request got wrong, so everything else is optional and checked where present.
    **dict.fromkeys(
        (AUTH_RESPONSE, FINANCIAL_RESPONSE, COMPLETION_RESPONSE, REVERSAL_RESPONSE),
        frozenset({"7", "11", "39"}),
    ),
    NETWORK_RESPONSE: frozenset({"7", "11", "39", "70"}),
}
OPTIONAL_FIELDS: Final[dict[str, frozenset[str]]] = {
    AUTH_REQUEST: frozenset({"48"}),
    FINANCIAL_REQUEST: frozenset({"38"}),
    COMPLETION_ADVICE: frozenset({"38"}),
    COMPLETION_ADVICE_REPEAT: frozenset({"38"}),
    REVERSAL_ADVICE: frozenset({"38"}),
    REVERSAL_ADVICE_REPEAT: frozenset({"38"}),
    NETWORK_REQUEST: frozenset(),
    AUTH_RESPONSE: frozenset({"3", "4", "12", "13", "37", "38", "41", "42", "44", "49"}),
    FINANCIAL_RESPONSE: frozenset({"3", "4", "12", "13", "37", "38", "41", "42", "49"}),
    COMPLETION_RESPONSE: frozenset({"4", "37", "38", "41", "42", "49"}),
    REVERSAL_RESPONSE: frozenset({"4", "37", "41", "42", "49"}),
    NETWORK_RESPONSE: frozenset(),
}

# DE 48 subelements each message may carry: the CVC (and the 3-D Secure result) only in the 0100
# (C1: the CVC goes to the issuer once, for the authorization, and nowhere else).
PRIVATE_TAGS: Final[dict[str, frozenset[str]]] = {
    AUTH_REQUEST: frozenset({TAG_ECI, TAG_CRYPTOGRAM, TAG_CVC}),
    FINANCIAL_REQUEST: frozenset({TAG_REFUND_REFERENCE}),
}

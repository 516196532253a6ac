"""ISO 8583 response codes (field 39) and what each becomes in Stripe's error object — one table.

The Stripe `code` and `decline_code` for Stripe's test cards follow /work/shared/reference
(test-cards-and-codes.md); a unit test parses that file and checks every row against this table.
Where the reference is silent, the choice follows Stripe's decline-code documentation:

- `05` do not honour → `generic_decline`: Stripe's own `pm_card_chargeDeclined` answers that, so a
  merchant's tests see what they would see on Stripe (Stripe also has `do_not_honor`; one ISO code
  can map to only one Stripe code, and matching the test card wins);
- `12`, `13`, `25` and `94` are the simulator's answers to follow-up messages that break the
  per-authorization rules (see `issuer`): `12` not allowed in the record's state, `13` invalid
  amount, `25` no such authorization, `94` same reference with different content;
- `68` ("response received too late") is never sent by the issuer: the client reports it when it
  gave up waiting and the authorization was reversed (issue 4, item 6).

Codes not in the table are answered as a generic decline — fail closed (P3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

APPROVED: Final = "00"
FORMAT_ERROR: Final = "30"
TOO_LATE: Final = "68"  # local: the client timed out and reversed


@dataclass(frozen=True, slots=True)
class ResponseCode:
    iso: str
    meaning: str
    code: str | None  # Stripe error `code`; None when approved
    decline_code: str | None  # Stripe `decline_code`; None when approved
    message: str  # Stripe-style message for the merchant developer


def _decline(iso: str, meaning: str, code: str, decline_code: str, message: str) -> ResponseCode:
    return ResponseCode(iso, meaning, code, decline_code, message)


_DECLINED = "Your card was declined."
_CVC = "Your card's security code is incorrect."
_PROCESSING = "An error occurred while processing your card. Try again in a little bit."

RESPONSE_CODES: Final[dict[str, ResponseCode]] = {
    code.iso: code
    for code in (
        ResponseCode(APPROVED, "approved", None, None, "Approved."),
        _decline("05", "do not honour", "card_declined", "generic_decline", _DECLINED),
        _decline("12", "invalid transaction", "card_declined", "transaction_not_allowed",
                 _DECLINED),
        _decline("13", "invalid amount", "card_declined", "invalid_amount", _DECLINED),
        _decline("14", "invalid card number", "incorrect_number", "incorrect_number",
                 "Your card number is incorrect."),
        _decline("1A", "additional customer authentication required", "authentication_required",
                 "authentication_required", "Your card requires authentication."),
        _decline("25", "unable to locate original", "processing_error", "processing_error",
                 _PROCESSING),
        _decline(FORMAT_ERROR, "format error", "processing_error", "processing_error",
                 _PROCESSING),
        _decline("41", "lost card", "card_declined", "lost_card", _DECLINED),
        _decline("43", "stolen card", "card_declined", "stolen_card", _DECLINED),
        _decline("51", "insufficient funds", "card_declined", "insufficient_funds",
                 "Your card has insufficient funds."),
        _decline("54", "expired card", "expired_card", "expired_card",
                 "Your card has expired."),
        _decline("59", "suspected fraud", "card_declined", "fraudulent", _DECLINED),
        _decline("61", "exceeds amount limit", "card_declined", "card_velocity_exceeded",
                 _DECLINED),
        _decline("65", "exceeds frequency limit", "card_declined", "card_velocity_exceeded",
                 _DECLINED),
        _decline(TOO_LATE, "response received too late", "processing_error", "try_again_later",
                 _PROCESSING),
        _decline("82", "CVV/iCVV/dCVV check failed", "incorrect_cvc", "incorrect_cvc", _CVC),
        _decline("91", "issuer unavailable", "card_declined", "issuer_not_available",
                 "Your card was declined. Try again in a little bit."),
        _decline("94", "duplicate transmission", "card_declined", "duplicate_transaction",
                 _DECLINED),
        _decline("96", "system malfunction", "processing_error", "processing_error",
                 _PROCESSING),
        _decline("N7", "CVV2 mismatch", "incorrect_cvc", "incorrect_cvc", _CVC),
    )
}  # fmt: skip
_UNKNOWN: Final = ResponseCode(
    "??", "unknown response code", "card_declined", "generic_decline", _DECLINED
)


def lookup(iso: str) -> ResponseCode:
    """The table's row for `iso`; a generic decline (never an approval) for codes not in it."""
    known = RESPONSE_CODES.get(iso)
    if known is not None:
        return known
    return ResponseCode(
        iso, _UNKNOWN.meaning, _UNKNOWN.code, _UNKNOWN.decline_code, _UNKNOWN.message
    )

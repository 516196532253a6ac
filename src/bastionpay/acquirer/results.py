"""What the acquirer client returns: typed outcomes, never exceptions for a decline or a timeout.

- `Approved` — the issuer said `00`: store `ref`, which capture, void and refund need.
- `Declined` — the issuer declined; or nothing was sent (`91`, `fault="unreachable"`); or the
  client gave up waiting and the reversal was acknowledged (`68`, `reversed=True`): fail the
  payment with `error()`.
- `ReversalPending` — an authorization went unanswered *and* so did its reversal: queue `ref`,
  show `processing`, and let a janitor call `reverse(ref)` until it returns `Reversed`.
- `Reversed` — the issuer acknowledged a reversal (void or timeout).
- `Unknown` — a capture or refund went unanswered after bounded retries: retry later with the same
  reference; the issuer answers repeats with the first answer.

None of these holds card data: `AuthorizationRef` carries RRN, STAN, transmission time, approval
code, amount, currency and the acceptor ids — everything a follow-up message needs, and safe to
store in a queue outside the CDE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from bastionpay.acquirer import codes
from bastionpay.kernel.errors import CardError


@dataclass(frozen=True, slots=True)
class AuthorizationRef:
    """An authorization as the follow-up messages reference it (fields 37, 38, 90, 4, 49, 41, 42).

    `approval_code` is empty when the authorization was never answered.
    """

    rrn: str
    stan: str
    transmitted: str  # DE 7 of the original 0100, MMDDhhmmss
    approval_code: str
    amount: int
    currency: str  # Stripe's lower-case ISO 4217 code
    card_acceptor_id: str
    terminal_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthorizationRef:
        return cls(
            rrn=str(data["rrn"]),
            stan=str(data["stan"]),
            transmitted=str(data["transmitted"]),
            approval_code=str(data["approval_code"]),
            amount=int(data["amount"]),
            currency=str(data["currency"]),
            card_acceptor_id=str(data["card_acceptor_id"]),
            terminal_id=str(data["terminal_id"]),
        )


@dataclass(frozen=True, slots=True)
class Approved:
    approval_code: str
    rrn: str
    stan: str
    amount: int
    currency: str
    ref: AuthorizationRef
    cvc_check: str | None = None  # Stripe's vocabulary: pass / fail / unchecked (authorizations)

    iso_code: ClassVar[str] = codes.APPROVED


@dataclass(frozen=True, slots=True)
class Declined:
    iso_code: str
    code: str
    decline_code: str
    message: str
    rrn: str
    stan: str
    reversed: bool = False  # the client gave up on the answer and the reversal was acknowledged
    fault: str | None = None  # unreachable / timeout / connection / malformed, when not the issuer

    @classmethod
    def from_iso(
        cls, iso_code: str, *, rrn: str, stan: str, reversed: bool = False, fault: str | None = None
    ) -> Declined:
        row = codes.lookup(iso_code)
        return cls(
            iso_code=iso_code,
            code=row.code or "card_declined",
            decline_code=row.decline_code or "generic_decline",
            message=row.message,
            rrn=rrn,
            stan=stan,
            reversed=reversed,
            fault=fault,
        )

    def error(self) -> CardError:
        """The Stripe error to raise for this decline (HTTP 402, `card_error`)."""
        return CardError(self.message, code=self.code, decline_code=self.decline_code)


@dataclass(frozen=True, slots=True)
class Reversed:
    rrn: str
    stan: str


@dataclass(frozen=True, slots=True)
class ReversalPending:
    ref: AuthorizationRef
    # Why the reversal is still pending: its last attempt's failure (unreachable / timeout /
    # connection / malformed) or `reversal_refused_<iso code>` when the issuer declined it.
    fault: str


@dataclass(frozen=True, slots=True)
class Unknown:
    rrn: str
    fault: str


AuthorizationOutcome = Approved | Declined | ReversalPending
FollowUpOutcome = Approved | Declined | Unknown
ReversalOutcome = Reversed | Declined | ReversalPending

"""3-D Secure on PaymentIntents, the api's side (issue 4, item 7; issue 7, item 5).

The vault decides whether a card needs authentication and runs the challenge; the api never sees
a card number, an ECI or a cryptogram. What the api keeps, on the PaymentIntent
(`payment_intents.three_d_secure`, an `Attempt`): the vault's authentication id, the charge id
reserved for the attempt (the authorization reference once authenticated, so a replay cannot
authorize twice), the challenge URL, the merchant's `return_url`, why, and the risk assessment to
re-evaluate.

The flow, Stripe's:

1. `confirm` → the vault answers "authenticate first" (card requires it, or a risk rule said
   `request_3ds`): nothing authorized, no Charge, the intent is `requires_action` with
   `next_action.redirect_to_url {url, return_url}`.
2. The cardholder completes or fails the vault's challenge and is sent to `return_url`
   (+ `payment_intent`, `payment_intent_client_secret`, `redirect_status`, as Stripe does).
3. The next retrieve or confirm of the intent asks the vault how it ended and finishes the
   payment in one unit of work (`intents.resume`): succeeded → rules again with
   `three_ds_completed`, authorization carrying the result, capture or hold; failed or expired →
   `requires_payment_method` with `payment_intent_authentication_failure`. So when the merchant
   retrieves the intent after the redirect it is already `succeeded` / `requires_capture`.

Every transition is in the api's audit log (`payments.payment_intent.authenticate`, L1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit import events as audit
from bastionpay.audit.events import ActorType, AuditEvent, Origin
from bastionpay.kernel.errors import InvalidRequestError, ProcessorError
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.interfaces import AuthenticationRequired
from bastionpay.payments.models import PaymentIntent, PaymentMethod
from bastionpay.risk.models import RiskAssessment
from bastionpay.risk.service import Assessment

MAX_RETURN_URL: Final = 1800  # the vault takes 2048 with the parameters added below
AUTHENTICATION_FAILURE: Final = "payment_intent_authentication_failure"
FAILURE_MESSAGE: Final = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this PaymentIntent again."
)


@dataclass(frozen=True)
class Actor:
    """Who moved the intent: the merchant's key (confirm, retrieve) or the system."""

    type: ActorType
    id: str
    origin: Origin = audit.SYSTEM_ORIGIN


SYSTEM: Final = Actor("system", "payments")


@dataclass(frozen=True)
class Attempt:
    authentication: str
    charge: str
    url: str
    return_url: str | None
    reason: str
    risk_assessment: str | None

    @classmethod
    def of(cls, intent: PaymentIntent) -> Attempt:
        data = intent.three_d_secure or {}
        try:
            return cls(
                authentication=str(data["authentication"]),
                charge=str(data["charge"]),
                url=str(data["url"]),
                return_url=data.get("return_url"),
                reason=str(data.get("reason") or "card_required"),
                risk_assessment=data.get("risk_assessment"),
            )
        except KeyError:
            raise ProcessorError("The PaymentIntent's 3-D Secure attempt is unreadable.") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "authentication": self.authentication,
            "charge": self.charge,
            "url": self.url,
            "return_url": self.return_url,
            "reason": self.reason,
            "risk_assessment": self.risk_assessment,
        }


def check_return_url(value: str | None) -> str | None:
    """Stripe's `return_url`: an absolute http(s) URL (no script, data or relative URL)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if (
        len(value) > MAX_RETURN_URL
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or not value.isascii()
        or not value.isprintable()
    ):
        raise InvalidRequestError(
            "return_url must be an absolute http(s) URL.", code="url_invalid", param="return_url"
        )
    return value


def processor_return_url(intent: PaymentIntent, return_url: str | None) -> str | None:
    """Where the vault sends the cardholder: `return_url` + the intent's ids, as Stripe adds."""
    if return_url is None:
        return None
    parts = urlsplit(return_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [
        ("payment_intent", intent.id),
        ("payment_intent_client_secret", f"{intent.id}_secret_{intent.client_secret_suffix}"),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def next_action(intent: PaymentIntent) -> dict[str, Any] | None:
    """Stripe's `next_action` for an intent waiting on 3-D Secure."""
    if intent.status != "requires_action" or not intent.three_d_secure:
        return None
    attempt = Attempt.of(intent)
    return {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": attempt.url, "return_url": attempt.return_url},
    }


def decorate(body: dict[str, Any], intent: PaymentIntent) -> dict[str, Any]:
    body["next_action"] = next_action(intent)
    return body


def _audit(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    actor: Actor,
    outcome: audit.Outcome,
    **details: Any,
) -> None:
    audit.record(
        session,
        AuditEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action="payments.payment_intent.authenticate",
            outcome=outcome,
            merchant_id=ctx.merchant_id,
            livemode=ctx.livemode,
            target_type="payment_intent",
            target_id=intent.id,
            origin=actor.origin,
            details=details,
        ),
    )


def require_action(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    charge_id: str,
    required: AuthenticationRequired,
    return_url: str | None,
    assessment: Assessment | None,
    actor: Actor,
) -> None:
    attempt = Attempt(
        authentication=required.id,
        charge=charge_id,
        url=required.url,
        return_url=return_url,
        reason=required.reason,
        risk_assessment=assessment.id if assessment is not None else None,
    )
    intent.three_d_secure = attempt.to_dict()
    intent.status = "requires_action"
    intent.last_payment_error = None
    _audit(
        session,
        ctx,
        intent,
        actor,
        "success",
        step="challenge",
        authentication=required.id,
        reason=required.reason,
    )


def abandon(session: Session, ctx: PaymentContext, intent: PaymentIntent, actor: Actor) -> None:
    """A new payment method replaces the one being authenticated."""
    attempt = Attempt.of(intent)
    intent.three_d_secure = None
    intent.status = "requires_confirmation"
    _settle(session, attempt, "abandoned")
    _audit(
        session,
        ctx,
        intent,
        actor,
        "failure",
        step="abandoned",
        authentication=attempt.authentication,
    )


def succeeded(
    session: Session, ctx: PaymentContext, intent: PaymentIntent, attempt: Attempt, actor: Actor
) -> None:
    _audit(
        session,
        ctx,
        intent,
        actor,
        "success",
        step="authenticated",
        authentication=attempt.authentication,
    )


def failed(
    session: Session,
    ctx: PaymentContext,
    intent: PaymentIntent,
    method: PaymentMethod,
    attempt: Attempt,
    status: str,
    actor: Actor,
) -> None:
    """Back to `requires_payment_method` with Stripe's authentication failure; nothing was sent."""
    intent.status = "requires_payment_method"
    intent.payment_method_id = None
    intent.last_payment_error = {
        "type": "invalid_request_error",
        "code": AUTHENTICATION_FAILURE,
        "message": FAILURE_MESSAGE,
        "doc_url": "https://docs.stripe.com/error-codes/payment-intent-authentication-failure",
        "payment_method": {"id": method.id, "object": "payment_method", "type": method.type},
    }
    _settle(session, attempt, "auth_failed")
    _audit(
        session,
        ctx,
        intent,
        actor,
        "failure",
        step=status,
        authentication=attempt.authentication,
    )


def _settle(session: Session, attempt: Attempt, outcome: str) -> None:
    if attempt.risk_assessment is not None:
        row = session.scalar(
            select(RiskAssessment).where(RiskAssessment.id == attempt.risk_assessment)
        )
        if row is not None:
            row.outcome = outcome

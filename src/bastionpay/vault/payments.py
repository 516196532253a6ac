"""Authorization through the acquirer client, and the CVC purge (issue 4, items 1, 2 and 6).

Authorization is the only place a card number is decrypted (detokenization), and it is audited
before it happens (L1, PCI DSS 10.2.1.1; fail closed, P3). One call:

1. one write transaction: reserve the `(merchant, reference)` pair with a `pending` row (a retry
   with the same reference replays the stored answer; a concurrent one gets 409), read the CVC's
   ciphertext and **delete its row** — C1 / PCI DSS 3.3.1: the CVC does not outlive the
   authorization, whatever its outcome, even if the process dies mid-call — and stage the
   `vault.card.detokenize` audit event;
2. no transaction open: decrypt number and CVC in memory, send `0100` (`AcquirerClient.authorize`,
   which reverses on a timeout and never double-charges), drop the plaintexts;
3. one write transaction: store the outcome and its audit event.

Outcomes are answers, not errors: `approved`, `declined` (Stripe's `code` / `decline_code`, and
`reversed` when the client gave up waiting and the reversal was acknowledged), or
`reversal_pending` (neither the authorization nor its reversal was answered: the vault's background
job keeps reversing; the api shows the PaymentIntent as `processing`).

Stored per authorization: amounts, states and the acquirer's references (RRN, STAN, transmission
time, approval code) that capture, void and refund (`followups.py`) need — never the PAN or CVC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bastionpay.acquirer import codes
from bastionpay.acquirer.client import (
    MAX_AMOUNT,
    AuthorizationRequest,
    InvalidRequest,
    ThreeDSecure,
)
from bastionpay.acquirer.currencies import UnknownCurrencyCode, to_numeric
from bastionpay.acquirer.results import (
    Approved,
    AuthorizationOutcome,
    Declined,
)
from bastionpay.crypto.kek import KekError
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import (
    IdempotencyError,
    IdempotencyKeyInUse,
    InvalidRequestError,
    ProcessorError,
    ResourceMissing,
    ServiceUnavailable,
)
from bastionpay.kernel.ids import new_id
from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog, threeds
from bastionpay.vault.auditlog import Outcome, VaultAction, VaultEvent
from bastionpay.vault.cards import CardNumber, SecurityCode
from bastionpay.vault.database import checkpoint_wal
from bastionpay.vault.interfaces import Purpose, SealedRecord
from bastionpay.vault.keyring import KeyringError
from bastionpay.vault.models import Authorization, Cvc, Refund
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.tokens import Actor, deny, load_card

log = get_logger("bastionpay.vault.payments")

MAX_REFERENCE: Final = 255
PURGE_BATCH: Final = 5_000  # CVCs deleted per purge run (the next run takes the rest)


@dataclass(frozen=True)
class AuthorizeRequest:
    merchant_id: str
    payment_method: str
    livemode: bool  # the PaymentIntent's mode: a test payment never reaches a live card
    amount: int
    currency: str
    reference: str
    # 3-D Secure (issue 4, item 7; `threeds`): a succeeded authentication of this very attempt,
    # whose result the vault itself attaches — the api never handles an ECI or a cryptogram.
    authentication: str | None = None
    request_three_d_secure: threeds.RequestMode = "automatic"
    return_url: str | None = None


def authorization_payload(row: Authorization) -> dict[str, Any]:
    decline = None
    if row.status == "declined" and row.iso_code:
        found = codes.lookup(row.iso_code)
        decline = {
            "code": row.error_code,
            "decline_code": row.decline_code,
            "message": found.message,
            "iso_code": row.iso_code,
            "reversed": row.iso_code == codes.TOO_LATE,
            "fault": row.fault,
        }
    ref = row.acquirer_ref or {}
    return {
        "id": row.id,
        "object": "vault.authorization",
        "status": row.status,
        "merchant_id": row.merchant_id,
        "payment_method": row.card_id,
        "livemode": row.livemode,
        "reference": row.reference,
        "amount": row.amount,
        "currency": row.currency,
        "amount_captured": row.captured_amount,
        "amount_refunded": row.refunded_amount,
        "approval_code": row.approval_code,
        "network": {"rrn": ref.get("rrn"), "stan": ref.get("stan")},
        "cvc_check": row.cvc_check,
        "three_d_secure_eci": row.three_d_secure_eci,
        "decline": decline,
        "fault": row.fault if row.status == "reversal_pending" else None,
        "created": row.created,
        "updated": row.updated,
    }


def refund_payload(row: Refund) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "vault.refund",
        "authorization": row.authorization_id,
        "reference": row.reference,
        "amount": row.amount,
        "status": row.status,
        "iso_code": row.iso_code,
        "created": row.created,
    }


def check_amount(amount: object, param: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidRequestError(
            f"amount must be an integer within 1..{MAX_AMOUNT} minor units", param=param
        )
    return amount


def check_reference(reference: object) -> str:
    if (
        not isinstance(reference, str)
        or not 0 < len(reference) <= MAX_REFERENCE
        or not reference.isascii()
        or not reference.isprintable()
    ):
        raise InvalidRequestError(
            "reference must be 1-255 printable ASCII characters", param="reference"
        )
    return reference


def _check_currency(currency: object) -> str:
    try:
        if not isinstance(currency, str):
            raise UnknownCurrencyCode("?")
        to_numeric(currency)
    except UnknownCurrencyCode:
        raise InvalidRequestError("Invalid currency.", param="currency") from None
    return currency.lower()


def audit_event(
    session: Any,
    actor: Actor,
    action: VaultAction,
    outcome: Outcome,
    row: Authorization,
    **details: Any,
) -> None:
    auditlog.record(
        session,
        VaultEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            outcome=outcome,
            merchant_id=row.merchant_id,
            livemode=row.livemode,
            target_type="authorization",
            target_id=row.id,
            origin=actor.origin,
            details={"payment_method": row.card_id, "reference": row.reference, **details},
        ),
    )


# --- Authorization -----------------------------------------------------------------------------


def authorize(runtime: VaultRuntime, request: AuthorizeRequest, *, actor: Actor) -> dict[str, Any]:
    """An Authorization — or, when 3-D Secure must come first, a `vault.authentication`.

    Nothing reaches the acquirer before a required authentication succeeded (issue 4, item 7):
    a card the issuer wants authenticated, or a request with `request_three_d_secure: "any"` (a
    risk rule's `request_3ds`), gets its challenge instead of a `0100`.
    """
    amount = check_amount(request.amount)
    currency = _check_currency(request.currency)
    reference = check_reference(request.reference)
    return_url = threeds.check_return_url(request.return_url)
    card = load_card(runtime, request.merchant_id, request.payment_method, actor=actor)
    if card.livemode != request.livemode:
        # Test and live mode are separate worlds (issue 2, item 5): as if the card did not exist.
        deny(runtime, actor, card.merchant_id, "payment_method", card.id, "mode_mismatch")
        raise ResourceMissing("payment_method", card.id, param="payment_method")
    three_d_secure: ThreeDSecure | None = None
    if request.authentication is None:
        reason = threeds.reason_for(card, request.request_three_d_secure)
        if reason is not None:
            return threeds.begin(
                runtime,
                card,
                reference=reference,
                amount=amount,
                currency=currency,
                reason=reason,
                return_url=return_url,
                actor=actor,
            )
    else:
        three_d_secure = threeds.result_for(
            runtime,
            request.authentication,
            card=card,
            amount=amount,
            currency=currency,
            reference=reference,
            actor=actor,
        )
    now = runtime.clock.now()
    row = Authorization(
        id=new_id("vauth"),
        merchant_id=card.merchant_id,
        card_id=card.id,
        livemode=card.livemode,
        reference=reference,
        amount=amount,
        currency=currency,
        status="pending",
        captured_amount=0,
        refunded_amount=0,
        three_d_secure_eci=three_d_secure.eci if three_d_secure else None,
        created=now,
        updated=now,
    )
    sealed_cvc: SealedRecord | None = None
    # Which 3-D Secure result the authorization carries (its ECI is on the row; never the value).
    authenticated = {"authentication": request.authentication} if request.authentication else {}
    try:
        with unit_of_work(runtime.db, write=True) as session:
            existing = session.scalar(
                select(Authorization).where(
                    Authorization.merchant_id == card.merchant_id,
                    Authorization.reference == reference,
                )
            )
            if existing is None:
                session.add(row)
                session.flush()
                cvc = session.scalar(select(Cvc).where(Cvc.card_id == card.id))
                if cvc is not None:
                    if cvc.expires_at > now:
                        sealed_cvc = SealedRecord(
                            card.merchant_id, card.id, Purpose.CVC, cvc.dek_version, cvc.ciphertext
                        )
                    # C1 / PCI DSS 3.3.1: gone at authorization, whatever the outcome.
                    session.execute(delete(Cvc).where(Cvc.card_id == card.id))
                audit_event(
                    session,
                    actor,
                    "vault.card.detokenize",
                    "success",
                    row,
                    purpose="authorization",
                    cvc=sealed_cvc is not None,
                    **authenticated,
                )
    except IntegrityError:
        existing = _by_reference(runtime, card.merchant_id, reference)
    if existing is not None:
        return _replay(existing, card.id, amount, currency)
    outcome = _send(
        runtime,
        row,
        sealed_cvc,
        three_d_secure,
        actor,
        expiry=(card.exp_month, card.exp_year),
    )
    return authorization_payload(_record_outcome(runtime, row, outcome, actor))


def _by_reference(runtime: VaultRuntime, merchant_id: str, reference: str) -> Authorization:
    with unit_of_work(runtime.db, write=False) as session:
        found = session.scalar(
            select(Authorization).where(
                Authorization.merchant_id == merchant_id, Authorization.reference == reference
            )
        )
    if found is None:  # pragma: no cover - the unique key said it exists
        raise ServiceUnavailable("Try again.", code="conflict")
    return found


def _replay(existing: Authorization, card_id: str, amount: int, currency: str) -> dict[str, Any]:
    if (existing.card_id, existing.amount, existing.currency) != (card_id, amount, currency):
        raise IdempotencyError(
            "This reference was already used for an authorization with other parameters.",
            code="reference_reused",
            param="reference",
        )
    if existing.status == "pending":
        raise IdempotencyKeyInUse(existing.reference[:32])
    return authorization_payload(existing)


def _send(
    runtime: VaultRuntime,
    row: Authorization,
    sealed_cvc: SealedRecord | None,
    three_d_secure: ThreeDSecure | None,
    actor: Actor,
    *,
    expiry: tuple[int, int],
) -> AuthorizationOutcome:
    number: CardNumber | None = None
    security_code: SecurityCode | None = None
    try:
        # Read the record now, not with the card: a re-encryption may have moved it meanwhile.
        sealed = runtime.records.get(row.merchant_id, row.card_id, Purpose.PAN)
        if sealed is None:
            raise ResourceMissing("payment_method", row.card_id, param="payment_method")
        number = runtime.keyring.open_pan(sealed)
        security_code = runtime.keyring.open_cvc(sealed_cvc) if sealed_cvc is not None else None
        return runtime.acquirer.authorize(
            AuthorizationRequest(
                pan=number,
                exp_month=expiry[0],
                exp_year=expiry[1],
                amount=row.amount,
                currency=row.currency,
                reference=row.reference,
                cvc=security_code,
                three_d_secure=three_d_secure,
            )
        )
    except (KeyringError, KekError, InvalidRequest, ResourceMissing) as exc:
        # Nothing was sent (or the record is unreadable: an incident, C5). Messages name fields
        # and versions, never values.
        _fail(runtime, row, actor, type(exc).__name__)
        if isinstance(exc, InvalidRequest):
            raise InvalidRequestError(str(exc)) from None
        raise ProcessorError(
            "The card data could not be read; the payment was not processed.",
            code="vault_record_unavailable",
        ) from None
    finally:
        del number, security_code  # the plaintexts live no longer than the call (C1)


def _fail(runtime: VaultRuntime, row: Authorization, actor: Actor, reason: str) -> None:
    log.error("vault_authorization_failed", authorization_id=row.id, reason=reason)
    with unit_of_work(runtime.db, write=True) as session:
        session.execute(
            update(Authorization)
            .where(Authorization.id == row.id)
            .values(status="failed", fault=reason[:64], updated=runtime.clock.now())
        )
        audit_event(session, actor, "vault.authorization.create", "failure", row, reason=reason)


def _record_outcome(
    runtime: VaultRuntime, row: Authorization, outcome: AuthorizationOutcome, actor: Actor
) -> Authorization:
    values: dict[str, Any] = {"updated": runtime.clock.now()}
    if isinstance(outcome, Approved):
        values.update(
            status="approved",
            approval_code=outcome.approval_code,
            iso_code=outcome.iso_code,
            acquirer_ref=outcome.ref.to_dict(),
            cvc_check=outcome.cvc_check,
        )
    elif isinstance(outcome, Declined):
        values.update(
            status="declined",
            iso_code=outcome.iso_code,
            error_code=outcome.code,
            decline_code=outcome.decline_code,
            fault=outcome.fault,
            acquirer_ref={"rrn": outcome.rrn, "stan": outcome.stan},
        )
    else:
        values.update(status="reversal_pending", acquirer_ref=outcome.ref.to_dict())
        values["fault"] = outcome.fault[:64]
    with unit_of_work(runtime.db, write=True) as session:
        session.execute(update(Authorization).where(Authorization.id == row.id).values(**values))
        stored = session.scalar(select(Authorization).where(Authorization.id == row.id))
        if stored is None:  # pragma: no cover - inserted above
            raise ServiceUnavailable("Try again.", code="conflict")
        audit_event(
            session,
            actor,
            "vault.authorization.create",
            "success" if stored.status == "approved" else "failure",
            stored,
            status=stored.status,
            amount=stored.amount,
            currency=stored.currency,
            iso_code=stored.iso_code,
            fault=stored.fault,
        )
    log.info(
        "vault_authorization",
        authorization_id=stored.id,
        status=stored.status,
        iso_code=stored.iso_code,
    )
    return stored


# --- Lookups and background work ---------------------------------------------------------------


def load_authorization(
    runtime: VaultRuntime, merchant_id: str, authorization_id: str, *, actor: Actor
) -> Authorization:
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(Authorization).where(Authorization.id == authorization_id))
    if row is None or row.merchant_id != merchant_id:
        if row is not None:
            deny(
                runtime, actor, merchant_id, "authorization", authorization_id, "merchant_mismatch"
            )
        raise ResourceMissing("authorization", authorization_id[:64])
    return row


def purge_expired_cvcs(runtime: VaultRuntime) -> int:
    """Delete CVCs past their TTL (C1, PCI DSS 3.3.2); audited; the SQLite WAL is truncated.

    The WAL is truncated on every run, expired CVCs or not: an authorization deletes its CVC row
    (secure_delete zeroes it in `vault.db`), but the WAL frame that inserted the ciphertext stays in
    `vault.db-wal` until a checkpoint truncates it (security review M1). So a CVC's ciphertext
    outlives its authorization by at most one purge interval (≤ 60 s, VaultSettings).
    """
    now = runtime.clock.now()
    with unit_of_work(runtime.db, write=True) as session:
        expired = list(
            session.scalars(select(Cvc.card_id).where(Cvc.expires_at <= now).limit(PURGE_BATCH))
        )
        if expired:
            session.execute(delete(Cvc).where(Cvc.card_id.in_(expired)))
            auditlog.record(
                session,
                VaultEvent(
                    actor_type="system",
                    actor_id="vault.purge",
                    action="vault.cvc.delete",
                    outcome="success",
                    target_type="cvc",
                    details={
                        "reason": "ttl_expired",
                        "count": len(expired),
                        "cards": expired[:100],
                    },
                ),
            )
    # After the transaction: a TRUNCATE checkpoint waits for open transactions, this one included.
    checkpoint_wal(runtime.db)
    if expired:
        log.info("vault_cvcs_purged", count=len(expired))
    return len(expired)

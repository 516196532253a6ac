"""Capture, void, reverse and refund an authorization; retry unanswered reversals (issue 4, item 6).

Each follow-up reads the authorization (the merchant must own it), sends one message through the
acquirer client with the references stored at authorization (RRN, STAN, DE 7 time, approval code —
never card data), and records the outcome with its audit event (L1). The issuer answers repeats
with the first answer, so a retried call never captures or refunds twice; refunds also claim their
amount atomically before they are sent, so concurrent refunds cannot overdraw the capture.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import select, update

from bastionpay.acquirer.results import (
    Approved,
    AuthorizationRef,
    Declined,
    ReversalPending,
    Reversed,
)
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import (
    CardError,
    IdempotencyError,
    InvalidRequestError,
    ProcessorError,
    ResourceMissing,
    ServiceUnavailable,
)
from bastionpay.kernel.ids import new_id
from bastionpay.vault.auditlog import Outcome, VaultAction
from bastionpay.vault.models import Authorization, Refund
from bastionpay.vault.payments import (
    audit_event,
    authorization_payload,
    check_amount,
    check_reference,
    load_authorization,
    refund_payload,
)
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.store import rowcount
from bastionpay.vault.tokens import Actor

REVERSAL_BATCH: Final = 20


def _ref(row: Authorization) -> AuthorizationRef:
    if not row.acquirer_ref or "transmitted" not in row.acquirer_ref:
        raise InvalidRequestError(
            f"This authorization has no acquirer reference (status {row.status}).",
            code="authorization_unexpected_state",
        )
    return AuthorizationRef.from_dict(row.acquirer_ref)


def _unexpected(row: Authorization, verb: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"This authorization cannot be {verb} because its status is {row.status}.",
        code="authorization_unexpected_state",
    )


def _transition(
    runtime: VaultRuntime,
    row: Authorization,
    actor: Actor,
    action: VaultAction,
    outcome: Outcome,
    *,
    expected: tuple[str, ...],
    **values: Any,
) -> Authorization:
    values["updated"] = runtime.clock.now()
    with unit_of_work(runtime.db, write=True) as session:
        session.execute(
            update(Authorization)
            .where(Authorization.id == row.id, Authorization.status.in_(expected))
            .values(**values)
        )
        stored = session.scalar(select(Authorization).where(Authorization.id == row.id))
        if stored is None:  # pragma: no cover
            raise ResourceMissing("authorization", row.id)
        audit_event(session, actor, action, outcome, stored, status=stored.status)
    return stored


def capture(
    runtime: VaultRuntime,
    merchant_id: str,
    authorization_id: str,
    amount: int | None,
    *,
    actor: Actor,
) -> dict[str, Any]:
    row = load_authorization(runtime, merchant_id, authorization_id, actor=actor)
    if row.status == "captured" and amount in (None, row.captured_amount):
        return authorization_payload(row)  # a retried capture
    if row.status != "approved":
        raise _unexpected(row, "captured")
    to_capture = row.amount if amount is None else check_amount(amount)
    if to_capture > row.amount:
        raise InvalidRequestError(
            "The amount to capture exceeds the authorized amount.", param="amount"
        )
    outcome = runtime.acquirer.capture(_ref(row), to_capture)
    if isinstance(outcome, Approved):
        stored = _transition(
            runtime,
            row,
            actor,
            "vault.authorization.capture",
            "success",
            expected=("approved",),
            status="captured",
            captured_amount=to_capture,
        )
        return authorization_payload(stored)
    _audit_now(runtime, actor, "vault.authorization.capture", row, type(outcome).__name__)
    if isinstance(outcome, Declined):
        raise outcome.error()
    raise ServiceUnavailable(
        "The acquirer did not answer; retry the capture.", code="acquirer_unavailable"
    )


def void(
    runtime: VaultRuntime, merchant_id: str, authorization_id: str, *, actor: Actor
) -> dict[str, Any]:
    row = load_authorization(runtime, merchant_id, authorization_id, actor=actor)
    if row.status in ("voided", "reversed", "reversal_pending"):
        return authorization_payload(row)
    if row.status != "approved":
        raise _unexpected(row, "voided")
    return authorization_payload(_reverse(runtime, row, actor, action="vault.authorization.void"))


def reverse(
    runtime: VaultRuntime, merchant_id: str, authorization_id: str, *, actor: Actor
) -> dict[str, Any]:
    """Retry the reversal of a `reversal_pending` authorization (the janitor's call)."""
    row = load_authorization(runtime, merchant_id, authorization_id, actor=actor)
    if row.status in ("voided", "reversed"):
        return authorization_payload(row)
    if row.status != "reversal_pending":
        raise _unexpected(row, "reversed")
    return authorization_payload(
        _reverse(runtime, row, actor, action="vault.authorization.reverse")
    )


def _reverse(
    runtime: VaultRuntime, row: Authorization, actor: Actor, *, action: VaultAction
) -> Authorization:
    outcome = runtime.acquirer.reverse(_ref(row))
    final = "voided" if row.status == "approved" else "reversed"
    expected = ("approved", "reversal_pending")
    if isinstance(outcome, Reversed):
        return _transition(runtime, row, actor, action, "success", expected=expected, status=final)
    if isinstance(outcome, ReversalPending):
        return _transition(
            runtime,
            row,
            actor,
            action,
            "failure",
            expected=expected,
            status="reversal_pending",
            fault=outcome.fault[:64],
        )
    _audit_now(runtime, actor, action, row, f"declined_{outcome.iso_code}")
    raise ProcessorError(
        "The acquirer refused the reversal; the authorization needs an operator.",
        code="reversal_refused",
    )


def refund(
    runtime: VaultRuntime,
    merchant_id: str,
    authorization_id: str,
    amount: object,
    reference: object,
    *,
    actor: Actor,
) -> dict[str, Any]:
    value = check_amount(amount)
    refund_reference = check_reference(reference)
    row = load_authorization(runtime, merchant_id, authorization_id, actor=actor)
    if row.status != "captured":
        raise _unexpected(row, "refunded")
    existing = _refund_by_reference(runtime, row.id, refund_reference)
    # Checked whatever the status: a retry of an `unknown` refund resends the reserved amount,
    # never another one (security review I4).
    if existing is not None and existing.amount != value:
        raise IdempotencyError(
            "This refund reference was used with another amount.", code="reference_reused"
        )
    if existing is not None and existing.status != "unknown":
        return refund_payload(existing)
    if existing is None:
        existing = _reserve_refund(runtime, row, value, refund_reference)
    outcome = runtime.acquirer.refund(_ref(row), value, reference=refund_reference)
    status = (
        "succeeded"
        if isinstance(outcome, Approved)
        else ("failed" if isinstance(outcome, Declined) else "unknown")
    )
    iso = outcome.iso_code if isinstance(outcome, Approved | Declined) else None
    with unit_of_work(runtime.db, write=True) as session:
        session.execute(
            update(Refund).where(Refund.id == existing.id).values(status=status, iso_code=iso)
        )
        if status == "failed":  # give the reserved amount back
            session.execute(
                update(Authorization)
                .where(Authorization.id == row.id)
                .values(refunded_amount=Authorization.refunded_amount - value)
            )
        audit_event(
            session,
            actor,
            "vault.authorization.refund",
            "success" if status == "succeeded" else "failure",
            row,
            refund=existing.id,
            amount=value,
            status=status,
        )
        stored = session.scalar(select(Refund).where(Refund.id == existing.id))
    if stored is None:  # pragma: no cover
        raise ResourceMissing("refund", existing.id)
    if status == "failed" and isinstance(outcome, Declined):
        raise CardError(outcome.message, code=outcome.code, decline_code=outcome.decline_code)
    if status == "unknown":
        raise ServiceUnavailable(
            "The acquirer did not answer; retry the refund with the same reference.",
            code="acquirer_unavailable",
        )
    return refund_payload(stored)


def _refund_by_reference(
    runtime: VaultRuntime, authorization_id: str, reference: str
) -> Refund | None:
    with unit_of_work(runtime.db, write=False) as session:
        return session.scalar(
            select(Refund).where(
                Refund.authorization_id == authorization_id, Refund.reference == reference
            )
        )


def _reserve_refund(
    runtime: VaultRuntime, row: Authorization, amount: int, reference: str
) -> Refund:
    """Claim `amount` of what is left to refund, atomically: concurrent refunds cannot overdraw."""
    refund_row = Refund(
        id=new_id("vre"),
        authorization_id=row.id,
        reference=reference,
        amount=amount,
        status="unknown",
        created=runtime.clock.now(),
    )
    with unit_of_work(runtime.db, write=True) as session:
        claimed = rowcount(
            session.execute(
                update(Authorization)
                .where(
                    Authorization.id == row.id,
                    Authorization.refunded_amount + amount <= Authorization.captured_amount,
                )
                .values(refunded_amount=Authorization.refunded_amount + amount)
            )
        )
        if claimed != 1:
            raise InvalidRequestError(
                "The refund exceeds the amount left to refund.", param="amount"
            )
        session.add(refund_row)
    return refund_row


def _audit_now(
    runtime: VaultRuntime, actor: Actor, action: VaultAction, row: Authorization, result: str
) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        audit_event(session, actor, action, "failure", row, result=result)


def retry_pending_reversals(runtime: VaultRuntime, *, limit: int = REVERSAL_BATCH) -> int:
    """Reverse authorizations whose reversal went unanswered; returns how many are now reversed."""
    with unit_of_work(runtime.db, write=False) as session:
        pending = list(
            session.scalars(
                select(Authorization)
                .where(Authorization.status == "reversal_pending")
                .order_by(Authorization.updated)
                .limit(limit)
            )
        )
    actor = Actor("system", "vault.reversals")
    done = 0
    for row in pending:
        try:
            stored = _reverse(runtime, row, actor, action="vault.authorization.reverse")
        except ProcessorError:
            continue  # refused by the issuer: audited, left for an operator
        done += stored.status == "reversed"
    return done

"""Routes: Disputes, as Stripe has them (`/v1/disputes`, docs/disputes.md).

List, retrieve, update (evidence, metadata, submit) and close. Opening and resolving are the card
network's, not the merchant's: operators simulate them with `bastionpay disputes open|resolve`.
Each route declares its permission (I5); updates and closes are audited with the request (L1).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.api import render
from bastionpay.api.pagination import paginate
from bastionpay.api.params import FormBool, FormStr, ListParams, Metadata, Params
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.disputes import evidence as ev
from bastionpay.disputes import service as disputes
from bastionpay.disputes import states
from bastionpay.disputes.models import Dispute
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.merchants import permissions as perm
from bastionpay.payments.models import Charge, PaymentIntent

EXPANDABLE = {"charge", "payment_intent"}


class NoParams(Params):
    pass


class ListDisputes(ListParams):
    charge: FormStr | None = None
    payment_intent: FormStr | None = None


class UpdateDispute(Params):
    evidence: ev.Evidence | None = None
    metadata: Metadata | None = None
    submit: FormBool | None = None


def render_dispute(
    session: Session, d: Dispute, now: int, ex: render.Expander | None = None
) -> dict[str, Any]:
    charge: Any = d.charge_id
    if ex is not None and ex.wants("charge"):
        found = ex.load(Charge, d.charge_id)
        charge = render.charge(found, ex) if found is not None else charge
    intent: Any = d.payment_intent_id
    if ex is not None and ex.wants("payment_intent"):
        found_pi = ex.load(PaymentIntent, d.payment_intent_id)
        intent = render.payment_intent(found_pi, ex) if found_pi is not None else intent
    txns = session.scalars(
        select(BalanceTransaction)
        .where(
            BalanceTransaction.merchant_id == d.merchant_id,
            BalanceTransaction.source_id == d.id,
        )
        .order_by(BalanceTransaction.pk)
    )
    return {
        "id": d.id,
        "object": "dispute",
        "amount": d.amount,
        "currency": d.currency,
        "charge": charge,
        "payment_intent": intent,
        "reason": d.reason,
        "status": d.status,
        "created": d.created,
        "livemode": d.livemode,
        "metadata": d.metadata_,
        "evidence": ev.render(d.evidence),
        "evidence_details": {
            "due_by": d.due_by,
            "has_evidence": bool(d.evidence),
            "past_due": d.status in states.NEEDS_RESPONSE and now > d.due_by,
            "submission_count": d.submission_count,
            "enhanced_eligibility": {},
        },
        "is_charge_refundable": d.is_charge_refundable,
        "balance_transactions": [render.balance_transaction(t, now) for t in txns],
        "enhanced_eligibility_types": [],
        "network_reason_code": None,
        "payment_method_details": None,
    }


def _expander(call: Call, *, list_prefix: bool = False) -> render.Expander:
    ex = render.Expander(
        call.session,
        call.caller.merchant_id,
        call.caller.livemode,
        call.expand,
        permissions=call.caller.permissions,
        list_prefix=list_prefix,
    )
    ex.check(EXPANDABLE)
    return ex


def retrieve(call: Call) -> Result:
    ex = _expander(call)
    found = disputes.get(call.session, call.ctx, call.path["id"])
    return Result(render_dispute(call.session, found, call.ctx.now, ex))


def list_all(call: Call) -> Result:
    p: ListDisputes = call.params
    ex = _expander(call, list_prefix=True)
    scope = [
        Dispute.merchant_id == call.caller.merchant_id,
        Dispute.livemode == call.caller.livemode,
    ]
    if p.charge is not None:
        scope.append(Dispute.charge_id == p.charge)
    if p.payment_intent is not None:
        scope.append(Dispute.payment_intent_id == p.payment_intent)
    now = call.ctx.now
    return Result(
        paginate(
            call.session,
            Dispute,
            scope,
            p,
            "/v1/disputes",
            lambda row: render_dispute(call.session, row, now, ex),
        )
    )


def update(call: Call) -> Result:
    p: UpdateDispute = call.params
    ex = _expander(call)
    evidence = p.evidence.model_dump(exclude_none=True) if p.evidence is not None else None
    found = disputes.update(
        call.session,
        call.ctx,
        call.path["id"],
        evidence=evidence,
        metadata=p.metadata,
        submit=p.submit,
    )
    return Result(render_dispute(call.session, found, call.ctx.now, ex))


def close(call: Call) -> Result:
    ex = _expander(call)
    found = disputes.close(call.session, call.ctx, call.path["id"])
    return Result(render_dispute(call.session, found, call.ctx.now, ex))


ENDPOINTS = [
    Endpoint("GET", "/v1/disputes", perm.DISPUTES_READ, ListDisputes, list_all),
    Endpoint("GET", "/v1/disputes/{id}", perm.DISPUTES_READ, NoParams, retrieve),
    Endpoint(
        "POST",
        "/v1/disputes/{id}",
        perm.DISPUTES_WRITE,
        UpdateDispute,
        update,
        audit_action="disputes.dispute.update",
    ),
    Endpoint(
        "POST",
        "/v1/disputes/{id}/close",
        perm.DISPUTES_WRITE,
        NoParams,
        close,
        audit_action="disputes.dispute.close",
    ),
]

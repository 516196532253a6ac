"""Routes: Reviews (Stripe's Review object; issue 7, item 6).

`GET /v1/reviews`, `GET /v1/reviews/{id}` and `POST /v1/reviews/{id}/approve` as Stripe has them;
`POST /v1/reviews/{id}/reject` is BastionPay's: Stripe rejects by refunding, here the held
authorization is voided and the payment labelled as fraud.
"""

from __future__ import annotations

from typing import Any

from bastionpay.api.pagination import paginate
from bastionpay.api.params import ListParams, Params
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.edge.shedding import Priority
from bastionpay.merchants import permissions as perm
from bastionpay.payments import review_decisions as decisions
from bastionpay.payments import reviews
from bastionpay.risk.models import Review


class NoParams(Params):
    pass


class ListReviews(ListParams):
    pass


def render_review(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "review",
        "created": r.created,
        "livemode": r.livemode,
        "open": r.open,
        "opened_reason": r.opened_reason,
        "reason": r.reason,
        "closed_reason": r.closed_reason,
        "charge": r.charge_id,
        "payment_intent": r.payment_intent_id,
        "billing_zip": None,
        "ip_address": None,
        "ip_address_location": None,
        "session": None,
        "rule": r.rule,  # BastionPay: the rule that opened it
    }


def approve(call: Call) -> Result:
    review = decisions.approve(call.session, call.ctx, call.path["id"], call.caller.key_id)
    return Result(render_review(review))


def reject(call: Call) -> Result:
    review = decisions.reject(call.session, call.ctx, call.path["id"], call.caller.key_id)
    return Result(render_review(review))


def retrieve(call: Call) -> Result:
    return Result(render_review(reviews.get(call.session, call.ctx, call.path["id"])))


def list_all(call: Call) -> Result:
    p: ListReviews = call.params
    scope = [Review.merchant_id == call.caller.merchant_id, Review.livemode == call.caller.livemode]
    return Result(paginate(call.session, Review, scope, p, "/v1/reviews", render_review))


ENDPOINTS = [
    Endpoint("GET", "/v1/reviews", perm.RISK_READ, ListReviews, list_all),
    Endpoint("GET", "/v1/reviews/{id}", perm.RISK_READ, NoParams, retrieve),
    Endpoint(
        "POST",
        "/v1/reviews/{id}/approve",
        perm.RISK_REVIEW,
        NoParams,
        approve,
        audit_action="risk.review.approve",
        priority=Priority.CRITICAL,
    ),
    Endpoint(
        "POST",
        "/v1/reviews/{id}/reject",
        perm.RISK_REVIEW,
        NoParams,
        reject,
        audit_action="risk.review.reject",
        priority=Priority.CRITICAL,
    ),
]

"""Routes: PaymentIntents, Charges, Refunds, PaymentMethods. Thin: parse, call service, render."""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy.orm import Session

from bastionpay.api import render
from bastionpay.api.pagination import paginate
from bastionpay.api.params import ListParams, merge_metadata
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.audit.events import ActorType
from bastionpay.config import Settings
from bastionpay.customers.models import Customer
from bastionpay.edge.shedding import Priority
from bastionpay.kernel.errors import (
    CardError,
    InvalidRequestError,
    ProcessorError,
    ServiceUnavailable,
)
from bastionpay.merchants import permissions as perm
from bastionpay.payments import intents, methods, refunds, screening, settlement, three_d_secure
from bastionpay.payments import schemas as s
from bastionpay.payments.lookup import get_owned
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod, Refund


def _expander(call: Call, allowed: set[str], *, list_prefix: bool = False) -> render.Expander:
    ex = render.Expander(
        call.session,
        call.caller.merchant_id,
        call.caller.livemode,
        call.expand,
        permissions=call.caller.permissions,
        list_prefix=list_prefix,
    )
    ex.check(allowed)
    return ex


log = logging.getLogger("bastionpay.payments")

PI_EXPANDABLE = {"latest_charge", "customer", "payment_method"}


def _render_intent(intent: PaymentIntent, ex: render.Expander) -> dict[str, Any]:
    # `next_action` comes from the 3-D Secure attempt (issue 4, item 7).
    return three_d_secure.decorate(render.payment_intent(intent, ex), intent)


def _actor(call: Call) -> three_d_secure.Actor:
    kind = call.caller.actor_type
    actor_type = cast("ActorType", kind) if kind in ("user", "oauth_client") else "api_key"
    return three_d_secure.Actor(actor_type, call.caller.key_id)


def _scope(model: Any, call: Call) -> list[Any]:
    return [model.merchant_id == call.caller.merchant_id, model.livemode == call.caller.livemode]


def _intent_result(call: Call, outcome: settlement.ConfirmOutcome) -> Result:
    ex = _expander(call, PI_EXPANDABLE)
    body = _render_intent(outcome.intent, ex)
    if outcome.decline is None:
        return Result(body)
    # Stripe answers a decline with HTTP 402 and the updated PaymentIntent inside the error; the
    # state change (failed charge, last_payment_error) is committed, not rolled back.
    decline = outcome.decline
    error = CardError(
        decline.message,
        code=decline.code,
        decline_code=decline.decline_code,
        extra={
            "charge": outcome.charge.id if outcome.charge else None,
            "payment_intent": body,
            "payment_method": (outcome.intent.last_payment_error or {}).get("payment_method"),
            "doc_url": f"https://docs.stripe.com/error-codes/{decline.code.replace('_', '-')}",
        },
    )
    return Result(error.to_wire(), status=error.http_status)


def _risk_inputs(options: s.RadarOptions | None) -> screening.RiskInputs | None:
    if options is None:
        return None
    return screening.RiskInputs(
        ip_address=options.ip_address, ip_country=options.ip_country, device_id=options.device_id
    )


def _fields(
    p: s.CreatePaymentIntent | s.UpdatePaymentIntent, metadata: dict[str, Any] | None
) -> intents.IntentFields:
    return intents.IntentFields(
        amount=p.amount,
        currency=p.currency,
        customer=p.customer,
        payment_method=p.payment_method,
        description=p.description,
        receipt_email=p.receipt_email,
        statement_descriptor=p.statement_descriptor,
        capture_method=p.capture_method,
        payment_method_types=tuple(p.payment_method_types) if p.payment_method_types else None,
        metadata=metadata,
    )


def create_intent(call: Call) -> Result:
    p: s.CreatePaymentIntent = call.params
    metadata = merge_metadata({}, p.metadata)
    _expander(call, PI_EXPANDABLE)  # refuse bad expand paths before any effect
    intent, method = intents.create(call.session, call.ctx, _fields(p, metadata))
    if p.confirm:
        outcome = intents.confirm(
            call.session,
            call.ctx,
            intent,
            method=method,
            risk_inputs=_risk_inputs(p.radar_options),
            return_url=p.return_url,
            actor=_actor(call),
        )
        return _intent_result(call, outcome)
    return Result(_render_intent(intent, _expander(call, PI_EXPANDABLE)))


def retrieve_intent(call: Call) -> Result:
    ex = _expander(call, PI_EXPANDABLE)
    intent = intents.get(call.session, call.ctx, call.path["id"])

    def fresh(session: Session, row: PaymentIntent) -> dict[str, Any]:
        own = render.Expander(
            session,
            call.caller.merchant_id,
            call.caller.livemode,
            call.expand,
            permissions=call.caller.permissions,
        )
        return _render_intent(row, own)

    # A 3-D Secure that ended since the redirect is finished now, as on Stripe (issue 4, item 7).
    try:
        finished = intents.refresh(call.ctx, intent, fresh, actor=_actor(call))
    except (ProcessorError, ServiceUnavailable) as exc:
        # Reading must not fail because the vault or risk is down: nothing changed (the step
        # rolled back and undid its processor work); the next retrieve or the janitor retries.
        log.warning("could not finish 3-D Secure of %s on retrieve (%s)", intent.id, exc.code)
        finished = None
    return Result(finished if finished is not None else _render_intent(intent, ex))


def update_intent(call: Call) -> Result:
    p: s.UpdatePaymentIntent = call.params
    current = intents.get(call.session, call.ctx, call.path["id"], lock=True)
    metadata = merge_metadata(current.metadata_, p.metadata) if p.metadata is not None else None
    intent = intents.update(call.session, call.ctx, current, _fields(p, None), metadata)
    return Result(_render_intent(intent, _expander(call, PI_EXPANDABLE)))


def confirm_intent(call: Call) -> Result:
    p: s.ConfirmPaymentIntent = call.params
    _expander(call, PI_EXPANDABLE)
    intent = intents.get(call.session, call.ctx, call.path["id"], lock=True)
    if p.capture_method is not None and intent.status in intents.CONFIRMABLE:
        intent.capture_method = p.capture_method
    if p.receipt_email is not None:
        intent.receipt_email = p.receipt_email
    outcome = intents.confirm(
        call.session,
        call.ctx,
        intent,
        p.payment_method,
        risk_inputs=_risk_inputs(p.radar_options),
        return_url=p.return_url,
        actor=_actor(call),
    )
    return _intent_result(call, outcome)


def capture_intent(call: Call) -> Result:
    p: s.CapturePaymentIntent = call.params
    _expander(call, PI_EXPANDABLE)
    # Validate everything before the processor moves money (security review H2).
    current = intents.get(call.session, call.ctx, call.path["id"], lock=True)
    metadata = merge_metadata(current.metadata_, p.metadata) if p.metadata is not None else None
    intent = intents.capture(call.session, call.ctx, current, p.amount_to_capture)
    if metadata is not None:
        intent.metadata_ = metadata
    return Result(_render_intent(intent, _expander(call, PI_EXPANDABLE)))


def cancel_intent(call: Call) -> Result:
    p: s.CancelPaymentIntent = call.params
    _expander(call, PI_EXPANDABLE)
    intent = intents.cancel(call.session, call.ctx, call.path["id"], p.cancellation_reason)
    return Result(_render_intent(intent, _expander(call, PI_EXPANDABLE)))


def list_intents(call: Call) -> Result:
    p: s.ListPaymentIntents = call.params
    ex = _expander(call, PI_EXPANDABLE, list_prefix=True)
    scope = _scope(PaymentIntent, call)
    if p.customer is not None:
        scope.append(PaymentIntent.customer_id == p.customer)
    return Result(
        paginate(
            call.session,
            PaymentIntent,
            scope,
            p,
            "/v1/payment_intents",
            lambda row: _render_intent(row, ex),
        )
    )


CHARGE_EXPANDABLE = {"customer", "payment_intent", "balance_transaction"}


def _render_charge(call: Call, row: Charge, ex: render.Expander) -> dict[str, Any]:
    body = render.charge(row, ex)
    if ex.wants("customer") and row.customer_id:
        found = ex.load(Customer, row.customer_id)
        body["customer"] = render.customer(found) if found is not None else row.customer_id
    if ex.wants("payment_intent"):
        found_pi = ex.load(PaymentIntent, row.payment_intent_id)
        if found_pi is not None:
            body["payment_intent"] = _render_intent(
                found_pi,
                render.Expander(
                    call.session,
                    row.merchant_id,
                    row.livemode,
                    [],
                    permissions=call.caller.permissions,
                ),
            )
    return body


def retrieve_charge(call: Call) -> Result:
    row = get_owned(
        call.session,
        Charge,
        "charge",
        call.path["id"],
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
    )
    return Result(_render_charge(call, row, _expander(call, CHARGE_EXPANDABLE)))


def list_charges(call: Call) -> Result:
    p: s.ListCharges = call.params
    ex = _expander(call, CHARGE_EXPANDABLE, list_prefix=True)
    scope = _scope(Charge, call)
    if p.customer is not None:
        scope.append(Charge.customer_id == p.customer)
    if p.payment_intent is not None:
        scope.append(Charge.payment_intent_id == p.payment_intent)
    return Result(
        paginate(
            call.session, Charge, scope, p, "/v1/charges", lambda row: _render_charge(call, row, ex)
        )
    )


def create_refund(call: Call) -> Result:
    p: s.CreateRefund = call.params
    refund = refunds.create(
        call.session,
        call.ctx,
        charge_id=p.charge,
        payment_intent_id=p.payment_intent,
        amount=p.amount,
        reason=p.reason,
        metadata=merge_metadata({}, p.metadata),
    )
    return Result(render.refund(refund))


def retrieve_refund(call: Call) -> Result:
    row = get_owned(
        call.session,
        Refund,
        "refund",
        call.path["id"],
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
    )
    return Result(render.refund(row))


def update_refund(call: Call) -> Result:
    p: s.UpdateRefund = call.params
    row = get_owned(
        call.session,
        Refund,
        "refund",
        call.path["id"],
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
        for_update=True,
    )
    if p.metadata is not None:
        row.metadata_ = merge_metadata(row.metadata_, p.metadata)
    return Result(render.refund(row))


def list_refunds(call: Call) -> Result:
    p: s.ListRefunds = call.params
    scope = _scope(Refund, call)
    if p.charge is not None:
        scope.append(Refund.charge_id == p.charge)
    if p.payment_intent is not None:
        scope.append(Refund.payment_intent_id == p.payment_intent)
    return Result(paginate(call.session, Refund, scope, p, "/v1/refunds", render.refund))


def large_refund(params: s.CreateRefund, settings: Settings) -> bool:
    """A refund above `step_up_refund_amount` is sensitive (I3). Without an amount a refund
    returns everything still refundable, which the threshold cannot bound: sensitive too."""
    return params.amount is None or params.amount > settings.step_up_refund_amount


def retrieve_payment_method(call: Call) -> Result:
    row = get_owned(
        call.session,
        PaymentMethod,
        "PaymentMethod",
        call.path["id"],
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
    )
    return Result(render.payment_method(row, _expander(call, {"customer"})))


def attach_payment_method(call: Call) -> Result:
    p: s.AttachPaymentMethod = call.params
    row = methods.attach(call.session, call.ctx, call.path["id"], p.customer)
    return Result(render.payment_method(row, _expander(call, {"customer"})))


def detach_payment_method(call: Call) -> Result:
    row = methods.detach(call.session, call.ctx, call.path["id"])
    return Result(render.payment_method(row, _expander(call, {"customer"})))


def _list_methods_for(call: Call, customer_id: str, p: ListParams, url: str) -> Result:
    customer = get_owned(
        call.session,
        Customer,
        "customer",
        customer_id,
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
        param="customer",
    )
    scope = [*_scope(PaymentMethod, call), PaymentMethod.customer_id == customer.id]
    ex = _expander(call, {"customer"}, list_prefix=True)
    return Result(
        paginate(
            call.session, PaymentMethod, scope, p, url, lambda row: render.payment_method(row, ex)
        )
    )


def list_payment_methods(call: Call) -> Result:
    p: s.ListPaymentMethods = call.params
    if p.customer is None:
        # Listing every PaymentMethod of the account is not offered: a customer is required.
        raise InvalidRequestError(
            "Missing required param: customer.", code="parameter_missing", param="customer"
        )
    return _list_methods_for(call, p.customer, p, "/v1/payment_methods")


def list_customer_payment_methods(call: Call) -> Result:
    p: s.ListCustomerPaymentMethods = call.params
    cid = call.path["id"]
    return _list_methods_for(call, cid, p, f"/v1/customers/{cid}/payment_methods")


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/payment_intents",
        perm.PAYMENTS_WRITE,
        s.CreatePaymentIntent,
        create_intent,
        audit_action="payments.payment_intent.create",
        priority=Priority.CRITICAL,  # keeps capacity under overload (edge item 4)
    ),
    Endpoint("GET", "/v1/payment_intents", perm.PAYMENTS_READ, s.ListPaymentIntents, list_intents),
    Endpoint("GET", "/v1/payment_intents/{id}", perm.PAYMENTS_READ, s.NoParams, retrieve_intent),
    Endpoint(
        "POST",
        "/v1/payment_intents/{id}",
        perm.PAYMENTS_WRITE,
        s.UpdatePaymentIntent,
        update_intent,
    ),
    Endpoint(
        "POST",
        "/v1/payment_intents/{id}/confirm",
        perm.PAYMENTS_WRITE,
        s.ConfirmPaymentIntent,
        confirm_intent,
        audit_action="payments.payment_intent.confirm",
        priority=Priority.CRITICAL,  # keeps capacity under overload (edge item 4)
    ),
    Endpoint(
        "POST",
        "/v1/payment_intents/{id}/capture",
        perm.PAYMENTS_WRITE,
        s.CapturePaymentIntent,
        capture_intent,
        audit_action="payments.payment_intent.capture",
        priority=Priority.CRITICAL,  # keeps capacity under overload (edge item 4)
    ),
    Endpoint(
        "POST",
        "/v1/payment_intents/{id}/cancel",
        perm.PAYMENTS_WRITE,
        s.CancelPaymentIntent,
        cancel_intent,
        audit_action="payments.payment_intent.cancel",
        priority=Priority.CRITICAL,  # keeps capacity under overload (edge item 4)
    ),
    Endpoint("GET", "/v1/charges", perm.PAYMENTS_READ, s.ListCharges, list_charges),
    Endpoint("GET", "/v1/charges/{id}", perm.PAYMENTS_READ, s.NoParams, retrieve_charge),
    Endpoint(
        "POST",
        "/v1/refunds",
        perm.REFUNDS_WRITE,
        s.CreateRefund,
        create_refund,
        audit_action="payments.refund.create",
        priority=Priority.CRITICAL,  # keeps capacity under overload (edge item 4)
        step_up=large_refund,  # operators: a fresh second factor above the threshold (I3)
    ),
    Endpoint("GET", "/v1/refunds", perm.PAYMENTS_READ, s.ListRefunds, list_refunds),
    Endpoint("GET", "/v1/refunds/{id}", perm.PAYMENTS_READ, s.NoParams, retrieve_refund),
    Endpoint("POST", "/v1/refunds/{id}", perm.REFUNDS_WRITE, s.UpdateRefund, update_refund),
    Endpoint(
        "GET",
        "/v1/payment_methods",
        perm.CUSTOMERS_READ,
        s.ListPaymentMethods,
        list_payment_methods,
    ),
    Endpoint(
        "GET", "/v1/payment_methods/{id}", perm.CUSTOMERS_READ, s.NoParams, retrieve_payment_method
    ),
    Endpoint(
        "POST",
        "/v1/payment_methods/{id}/attach",
        perm.CUSTOMERS_WRITE,
        s.AttachPaymentMethod,
        attach_payment_method,
    ),
    Endpoint(
        "POST",
        "/v1/payment_methods/{id}/detach",
        perm.CUSTOMERS_WRITE,
        s.NoParams,
        detach_payment_method,
    ),
    Endpoint(
        "GET",
        "/v1/customers/{id}/payment_methods",
        perm.CUSTOMERS_READ,
        s.ListCustomerPaymentMethods,
        list_customer_payment_methods,
    ),
]

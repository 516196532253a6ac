"""Wire shapes: our rows rendered as Stripe's objects, with `expand` support.

Nothing here ever renders a card number: PaymentMethods carry brand, last4, expiry, funding, country
and fingerprint only (SECURITY-REQUIREMENTS C2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.merchants import permissions as perm
from bastionpay.payments.models import Charge, PaymentIntent, PaymentMethod, Refund

Obj = dict[str, Any]

EXPAND_PERMISSIONS: dict[str, str] = {
    "customer": perm.CUSTOMERS_READ,
    "payment_method": perm.CUSTOMERS_READ,
    "latest_charge": perm.PAYMENTS_READ,
    "charge": perm.PAYMENTS_READ,
    "payment_intent": perm.PAYMENTS_READ,
    "balance_transaction": perm.BALANCE_READ,
}


class Expander:
    """Resolves `expand[]` paths. Unknown paths are refused like Stripe refuses them."""

    def __init__(
        self,
        session: Session,
        merchant_id: str,
        livemode: bool,
        paths: list[str],
        *,
        permissions: frozenset[str],
        list_prefix: bool = False,
    ) -> None:
        self.permissions = permissions
        self.session = session
        self.merchant_id = merchant_id
        self.livemode = livemode
        prefix = "data."
        self.paths: set[str] = set()
        for raw in paths:
            path = raw
            if list_prefix:
                if not path.startswith(prefix):
                    raise InvalidRequestError(
                        f"This property cannot be expanded ({path}). On list endpoints, prefix "
                        "expansions with data., e.g. data.customer.",
                        code="parameter_invalid",
                        param="expand",
                    )
                path = path[len(prefix) :]
            self.paths.add(path)

    def wants(self, field: str) -> bool:
        return field in self.paths

    def check(self, allowed: set[str]) -> None:
        for path in self.paths:
            if path not in allowed:
                raise InvalidRequestError(
                    f"This property cannot be expanded ({path}).",
                    code="parameter_invalid",
                    param="expand",
                )
            # Expanding an object reads it: the key needs that object's own permission, or a
            # restricted key could read customers through `expand` (security review M1; I5).
            needed = EXPAND_PERMISSIONS[path]
            if needed not in self.permissions:
                raise PermissionDenied(
                    f"The provided key does not have the required permissions to expand "
                    f"{path} ({needed}).",
                    code="insufficient_permissions",
                )

    def load(self, model: type[Any], object_id: str | None) -> Any:
        if object_id is None:
            return None
        return self.session.scalar(
            select(model).where(
                model.id == object_id,
                model.merchant_id == self.merchant_id,
                model.livemode == self.livemode,
            )
        )


def customer(c: Customer, ex: Expander | None = None) -> Obj:
    if c.deleted:
        return {"id": c.id, "object": "customer", "deleted": True}
    return {
        "id": c.id,
        "object": "customer",
        "created": c.created,
        "livemode": c.livemode,
        "email": c.email,
        "name": c.name,
        "description": c.description,
        "phone": c.phone,
        "metadata": c.metadata_,
        "balance": 0,
        "currency": None,
        "delinquent": False,
        "invoice_prefix": None,
        "default_source": None,
        "invoice_settings": {
            "default_payment_method": None,
            "custom_fields": None,
            "footer": None,
            "rendering_options": None,
        },
        "preferred_locales": [],
        "tax_exempt": "none",
        "address": None,
        "shipping": None,
    }


def payment_method(m: PaymentMethod, ex: Expander | None = None) -> Obj:
    customer_value: Any = m.customer_id
    if ex is not None and ex.wants("customer") and m.customer_id is not None:
        found = ex.load(Customer, m.customer_id)
        customer_value = customer(found) if found is not None else m.customer_id
    return {
        "id": m.id,
        "object": "payment_method",
        "created": m.created,
        "livemode": m.livemode,
        "type": m.type,
        "customer": customer_value,
        "metadata": m.metadata_,
        "billing_details": {
            "address": None,
            "email": None,
            "name": None,
            "phone": None,
            **m.billing_details,
        },
        "card": {
            "brand": m.card_brand,
            "last4": m.card_last4,
            "exp_month": m.card_exp_month,
            "exp_year": m.card_exp_year,
            "funding": m.card_funding,
            "country": m.card_country,
            "fingerprint": m.fingerprint,
            "display_brand": m.card_brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "networks": {"available": [m.card_brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
    }


def charge(c: Charge, ex: Expander | None = None) -> Obj:
    method: PaymentMethod | None = ex.load(PaymentMethod, c.payment_method_id) if ex else None
    details: Obj | None = None
    if method is not None:
        details = {
            "type": "card",
            "card": {
                "brand": method.card_brand,
                "last4": method.card_last4,
                "exp_month": method.card_exp_month,
                "exp_year": method.card_exp_year,
                "funding": method.card_funding,
                "country": method.card_country,
                "fingerprint": method.fingerprint,
                "network": method.card_brand,
                "checks": {
                    "cvc_check": "pass",
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                },
            },
        }
    return {
        "id": c.id,
        "object": "charge",
        "created": c.created,
        "livemode": c.livemode,
        "amount": c.amount,
        "amount_captured": c.amount_captured,
        "amount_refunded": c.amount_refunded,
        "currency": c.currency,
        "status": c.status,
        "paid": c.status == "succeeded",
        "captured": c.captured,
        "refunded": c.captured and c.amount_refunded >= c.amount_captured > 0,
        "failure_code": c.failure_code,
        "failure_message": c.failure_message,
        "outcome": c.outcome or None,
        "payment_intent": c.payment_intent_id,
        "payment_method": c.payment_method_id,
        "payment_method_details": details,
        "customer": c.customer_id,
        "balance_transaction": c.balance_transaction_id,
        "description": c.description,
        "metadata": c.metadata_,
        "disputed": bool(c.disputed),
        "authorization_code": c.authorization_code,
        "receipt_email": None,
        "statement_descriptor": None,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
    }


def payment_intent(p: PaymentIntent, ex: Expander) -> Obj:
    latest: Any = p.latest_charge_id
    if ex.wants("latest_charge") and p.latest_charge_id is not None:
        found = ex.load(Charge, p.latest_charge_id)
        latest = charge(found, ex) if found is not None else latest
    cust: Any = p.customer_id
    if ex.wants("customer") and p.customer_id is not None:
        found_c = ex.load(Customer, p.customer_id)
        cust = customer(found_c) if found_c is not None else cust
    pm: Any = p.payment_method_id
    if ex.wants("payment_method") and p.payment_method_id is not None:
        found_m = ex.load(PaymentMethod, p.payment_method_id)
        pm = payment_method(found_m) if found_m is not None else pm
    return {
        "id": p.id,
        "object": "payment_intent",
        "created": p.created,
        "livemode": p.livemode,
        "amount": p.amount,
        "amount_capturable": p.amount_capturable,
        "amount_received": p.amount_received,
        "currency": p.currency,
        "status": p.status,
        "capture_method": p.capture_method,
        "confirmation_method": p.confirmation_method,
        "customer": cust,
        "payment_method": pm,
        "payment_method_types": p.payment_method_types,
        "description": p.description,
        "receipt_email": p.receipt_email,
        "statement_descriptor": p.statement_descriptor,
        "metadata": p.metadata_,
        "latest_charge": latest,
        "last_payment_error": p.last_payment_error,
        "cancellation_reason": p.cancellation_reason,
        "canceled_at": p.canceled_at,
        "client_secret": f"{p.id}_secret_{p.client_secret_suffix}",
        "next_action": None,
        "review": p.review_id,
        "setup_future_usage": None,
        "on_behalf_of": None,
        "transfer_data": None,
        "application_fee_amount": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
    }


def refund(r: Refund, ex: Expander | None = None) -> Obj:
    return {
        "id": r.id,
        "object": "refund",
        "created": r.created,
        "amount": r.amount,
        "currency": r.currency,
        "status": r.status,
        "reason": r.reason,
        "charge": r.charge_id,
        "payment_intent": r.payment_intent_id,
        "metadata": r.metadata_,
        "balance_transaction": r.balance_transaction_id,
    }


def _reporting_category(b: BalanceTransaction) -> str:
    if b.type == "adjustment":
        # Disputes (bastionpay.disputes): the withdrawal is negative, a won dispute's reversal
        # positive — Stripe's `dispute` and `dispute_reversal` categories.
        return "dispute" if b.amount < 0 else "dispute_reversal"
    return "charge" if b.type == "charge" else "refund"


def balance_transaction(b: BalanceTransaction, now: int) -> Obj:
    return {
        "id": b.id,
        "object": "balance_transaction",
        "created": b.created,
        "amount": b.amount,
        "fee": b.fee,
        "net": b.net,
        "currency": b.currency,
        "type": b.type,
        "source": b.source_id,
        "description": b.description,
        "available_on": b.available_on,
        "status": "available" if b.available_on <= now else "pending",
        "reporting_category": _reporting_category(b),
        "exchange_rate": None,
        "fee_details": (
            [
                {
                    "amount": b.fee,
                    "currency": b.currency,
                    "type": "stripe_fee",
                    "description": "Dispute fee" if b.type == "adjustment" else "Processing fees",
                    "application": None,
                }
            ]
            if b.fee
            else []
        ),
    }


Renderer = Callable[[Any, Expander], Obj]

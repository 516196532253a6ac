"""Customers: create, update, delete (Stripe keeps a `deleted` stub), all tenant-scoped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bastionpay.customers.models import Customer
from bastionpay.kernel.errors import ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.payments.context import PaymentContext
from bastionpay.payments.lookup import get_owned


@dataclass(frozen=True)
class CustomerFields:
    email: str | None = None
    name: str | None = None
    description: str | None = None
    phone: str | None = None


def get(
    session: Session,
    ctx: PaymentContext,
    customer_id: str,
    *,
    lock: bool = False,
    include_deleted: bool = False,
) -> Customer:
    customer = get_owned(
        session,
        Customer,
        "customer",
        customer_id,
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        for_update=lock,
    )
    if customer.deleted and not include_deleted:
        raise ResourceMissing("customer", customer_id)
    return customer


def create(
    session: Session, ctx: PaymentContext, fields: CustomerFields, metadata: dict[str, Any] | None
) -> Customer:
    customer = Customer(
        id=new_id("cus"),
        merchant_id=ctx.merchant_id,
        livemode=ctx.livemode,
        created=ctx.now,
        email=fields.email,
        name=fields.name,
        description=fields.description,
        phone=fields.phone,
        metadata_=dict(metadata or {}),
        deleted=False,
    )
    session.add(customer)
    session.flush()
    return customer


def update(
    session: Session,
    ctx: PaymentContext,
    customer_id: str,
    fields: CustomerFields,
    metadata: dict[str, Any] | None,
) -> Customer:
    customer = get(session, ctx, customer_id, lock=True)
    # Stripe: an empty string unsets an optional field.
    for name in ("email", "name", "description", "phone"):
        value = getattr(fields, name)
        if value is not None:
            setattr(customer, name, value or None)
    if metadata is not None:
        customer.metadata_ = metadata
    return customer


def delete(session: Session, ctx: PaymentContext, customer_id: str) -> Customer:
    customer = get(session, ctx, customer_id, lock=True)
    customer.deleted = True
    return customer

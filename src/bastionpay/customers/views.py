"""Routes: Customers."""

from __future__ import annotations

from pydantic import Field

from bastionpay.api import render
from bastionpay.api.pagination import paginate
from bastionpay.api.params import FormStr, ListParams, Metadata, Params, merge_metadata
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.customers import service
from bastionpay.customers.models import Customer
from bastionpay.merchants import permissions as perm
from bastionpay.payments import methods


class CustomerParams(Params):
    email: FormStr | None = Field(default=None, max_length=512)
    name: FormStr | None = Field(default=None, max_length=256)
    description: FormStr | None = Field(default=None, max_length=1000)
    phone: FormStr | None = Field(default=None, max_length=64)
    metadata: Metadata | None = None


class CreateCustomer(CustomerParams):
    payment_method: FormStr | None = None


class ListCustomers(ListParams):
    email: FormStr | None = Field(default=None, max_length=512)


class NoParams(Params):
    pass


def _fields(p: CustomerParams) -> service.CustomerFields:
    return service.CustomerFields(
        email=p.email, name=p.name, description=p.description, phone=p.phone
    )


def create(call: Call) -> Result:
    p: CreateCustomer = call.params
    customer = service.create(call.session, call.ctx, _fields(p), merge_metadata({}, p.metadata))
    if p.payment_method is not None:
        methods.attach(call.session, call.ctx, p.payment_method, customer.id)
    return Result(render.customer(customer))


def retrieve(call: Call) -> Result:
    customer = service.get(call.session, call.ctx, call.path["id"], include_deleted=True)
    return Result(render.customer(customer))


def update(call: Call) -> Result:
    p: CustomerParams = call.params
    current = service.get(call.session, call.ctx, call.path["id"], lock=True)
    metadata = merge_metadata(current.metadata_, p.metadata) if p.metadata is not None else None
    return Result(
        render.customer(service.update(call.session, call.ctx, current.id, _fields(p), metadata))
    )


def delete(call: Call) -> Result:
    customer = service.delete(call.session, call.ctx, call.path["id"])
    return Result({"id": customer.id, "object": "customer", "deleted": True})


def list_all(call: Call) -> Result:
    p: ListCustomers = call.params
    scope = [
        Customer.merchant_id == call.caller.merchant_id,
        Customer.livemode == call.caller.livemode,
        Customer.deleted.is_(False),
    ]
    if p.email is not None:
        scope.append(Customer.email == p.email)
    return Result(paginate(call.session, Customer, scope, p, "/v1/customers", render.customer))


ENDPOINTS = [
    Endpoint("POST", "/v1/customers", perm.CUSTOMERS_WRITE, CreateCustomer, create),
    Endpoint("GET", "/v1/customers", perm.CUSTOMERS_READ, ListCustomers, list_all),
    Endpoint("GET", "/v1/customers/{id}", perm.CUSTOMERS_READ, NoParams, retrieve),
    Endpoint("POST", "/v1/customers/{id}", perm.CUSTOMERS_WRITE, CustomerParams, update),
    Endpoint("DELETE", "/v1/customers/{id}", perm.CUSTOMERS_WRITE, NoParams, delete),
]

"""Routes: Balance and BalanceTransactions (derived from the ledger's balance transactions)."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import case, func, select

from bastionpay.api import render
from bastionpay.api.pagination import paginate
from bastionpay.api.params import FormStr, ListParams, Params
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.ledger.models import BalanceTransaction
from bastionpay.merchants import permissions as perm
from bastionpay.payments.lookup import get_owned


class NoParams(Params):
    pass


class ListBalanceTransactions(ListParams):
    type: Literal["charge", "refund", "adjustment"] | None = None
    source: FormStr | None = None
    currency: FormStr | None = None


def balance(call: Call) -> Result:
    now = call.ctx.now
    available = func.sum(
        case((BalanceTransaction.available_on <= now, BalanceTransaction.net), else_=0)
    )
    pending = func.sum(
        case((BalanceTransaction.available_on > now, BalanceTransaction.net), else_=0)
    )
    rows = call.session.execute(
        select(BalanceTransaction.currency, available, pending)
        .where(
            BalanceTransaction.merchant_id == call.caller.merchant_id,
            BalanceTransaction.livemode == call.caller.livemode,
        )
        .group_by(BalanceTransaction.currency)
        .order_by(BalanceTransaction.currency)
    ).all()
    body = {
        "object": "balance",
        "livemode": call.caller.livemode,
        "available": [
            {"amount": int(a), "currency": c, "source_types": {"card": int(a)}} for c, a, _ in rows
        ],
        "pending": [
            {"amount": int(p), "currency": c, "source_types": {"card": int(p)}} for c, _, p in rows
        ],
    }
    if not rows:
        body["available"] = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        body["pending"] = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
    return Result(body)


def retrieve_transaction(call: Call) -> Result:
    row = get_owned(
        call.session,
        BalanceTransaction,
        "balance transaction",
        call.path["id"],
        merchant_id=call.caller.merchant_id,
        livemode=call.caller.livemode,
    )
    return Result(render.balance_transaction(row, call.ctx.now))


def list_transactions(call: Call) -> Result:
    p: ListBalanceTransactions = call.params
    scope = [
        BalanceTransaction.merchant_id == call.caller.merchant_id,
        BalanceTransaction.livemode == call.caller.livemode,
    ]
    if p.type is not None:
        scope.append(BalanceTransaction.type == p.type)
    if p.source is not None:
        scope.append(BalanceTransaction.source_id == p.source)
    if p.currency is not None:
        scope.append(BalanceTransaction.currency == p.currency.lower())
    now = call.ctx.now
    return Result(
        paginate(
            call.session,
            BalanceTransaction,
            scope,
            p,
            "/v1/balance_transactions",
            lambda row: render.balance_transaction(row, now),
        )
    )


ENDPOINTS = [
    Endpoint("GET", "/v1/balance", perm.BALANCE_READ, NoParams, balance),
    Endpoint(
        "GET",
        "/v1/balance_transactions",
        perm.BALANCE_READ,
        ListBalanceTransactions,
        list_transactions,
    ),
    Endpoint(
        "GET", "/v1/balance_transactions/{id}", perm.BALANCE_READ, NoParams, retrieve_transaction
    ),
]

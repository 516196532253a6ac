"""Small helpers for functional tests through the ASGI app."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from bastionpay.db.uow import unit_of_work
from bastionpay.ledger.verify import Report, verify
from bastionpay.runtime import Runtime


def pay(api: TestClient, amount: int = 2000, pm: str = "pm_card_visa", **extra: Any) -> Any:
    data = {"amount": str(amount), "currency": "usd", "payment_method": pm, "confirm": "true"}
    data.update({k: str(v) for k, v in extra.items()})
    return api.post("/v1/payment_intents", data=data)


def ledger_report(runtime: Runtime) -> Report:
    with unit_of_work(runtime.db, write=False) as session:
        return verify(session)


def assert_ledger_ok(runtime: Runtime) -> None:
    report = ledger_report(runtime)
    failure = report.first_failure()
    assert failure is None, f"{failure.name}: {failure.problems}" if failure else ""

"""Small helpers for functional tests through the ASGI app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from bastionpay.db.uow import unit_of_work
from bastionpay.identity import csrf
from bastionpay.identity import sessions as user_sessions
from bastionpay.identity.models import User
from bastionpay.identity.principals import SESSION_COOKIE, user_permissions
from bastionpay.identity.roles import is_platform_role
from bastionpay.kernel.ids import new_id
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


@dataclass(frozen=True)
class OperatorSession:
    """An operator with a live, fully authenticated session (identity issue), for /v1 calls."""

    user_id: str
    role: str
    token: str
    csrf_token: str
    permissions: frozenset[str]

    def headers(self, account: str | None = None) -> dict[str, str]:
        headers = {"Cookie": f"{SESSION_COOKIE}={self.token}", "X-CSRF-Token": self.csrf_token}
        if account is not None:
            headers["Stripe-Account"] = account
        return headers


def operator_session(
    runtime: Runtime, role: str, merchant_id: str | None, *, mfa_at: int | None = None
) -> OperatorSession:
    """A user of `role` (platform roles get no merchant) with an active session.

    The user is inserted directly with an unusable password hash: these tests are about what an
    authenticated operator may do; logging in has its own tests (test_identity_web.py).
    `mfa_at` is when the session last proved a second factor (step-up); None: never.
    """
    now = runtime.clock.now()
    user = User(
        id=new_id("usr"),
        email=f"{role}-{secrets.token_hex(6)}@example.test",
        merchant_id=None if is_platform_role(role) else merchant_id,
        role=role,
        status="active",
        password_hash="!",
        password_history=[],
        password_changed_at=now,
        failed_logins=0,
        mfa_enrolled=True,
        created=now,
        security_generation=0,
    )
    with unit_of_work(runtime.db, write=True) as session:
        session.add(user)
        session.flush()
        issued = user_sessions.start(
            session,
            runtime.identity_keys,
            user,
            stage="active",
            now=now,
            settings=runtime.settings,
            ip="127.0.0.1",
            user_agent="functional test",
        )
        issued.record.mfa_at = mfa_at
    return OperatorSession(
        user_id=user.id,
        role=role,
        token=issued.token,
        csrf_token=csrf.token_for(runtime.identity_keys, issued.token),
        permissions=user_permissions(user),
    )

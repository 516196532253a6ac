"""Step-up (SECURITY-REQUIREMENTS I3): operators' sensitive actions need a second factor proven
within the last 5 minutes — API key creation and revocation, role changes, disabling staff,
refunds above the configured amount. API keys and OAuth apps are not asked (no human to ask)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import operator_session, pay

from bastionpay import bootstrap
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.identity.models import User
from bastionpay.kernel.clock import FrozenClock
from bastionpay.runtime import Runtime

START = 1_800_000_000


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def rt(db_url: str, tmp_path: Any, clock: FrozenClock) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path, clock=clock, step_up_refund_amount=5_000)
    yield runtime
    runtime.db.dispose()


def _owner(runtime: Runtime, merchant_id: str, *, mfa_at: int | None) -> dict[str, str]:
    operator = operator_session(runtime, "owner", merchant_id, mfa_at=mfa_at)
    return {**operator.headers(), "user": operator.user_id}


def _headers(operator: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in operator.items() if k != "user"}


def _step_up_events(runtime: Runtime, user_id: str) -> int:
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(
            select(AuditStaged.action).where(AuditStaged.actor_id == user_id)
        ).all()
    return sum(1 for action in rows if action == "identity.step_up.required")


def test_key_creation_needs_a_fresh_second_factor(rt: Runtime, clock: FrozenClock) -> None:
    merchant = bootstrap.create_merchant_with_keys(rt, "Step-up keys")
    stale = _owner(rt, merchant["id"], mfa_at=START - 301)
    fresh = _owner(rt, merchant["id"], mfa_at=START - 60)
    with api_client(rt, None) as client:
        refused = client.post("/v1/api_keys", data={"type": "secret"}, headers=_headers(stale))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "step_up_required"
        assert _step_up_events(rt, stale["user"]) == 1
        created = client.post("/v1/api_keys", data={"type": "secret"}, headers=_headers(fresh))
        assert created.status_code == 200, created.text
        key = created.json()
        assert key["secret"].startswith("sk_test_")
        # The new key works; listing shows it redacted, never the secret again.
        with api_client(rt, key["secret"]) as api:
            assert api.get("/v1/balance").status_code == 200
        listed = client.get("/v1/api_keys", headers=_headers(stale)).json()["data"]
        assert key["id"] in {k["id"] for k in listed}
        assert all("secret" not in k for k in listed)
        # Five minutes later the same session must prove a factor again.
        clock.advance(300)
        again = client.delete(f"/v1/api_keys/{key['id']}", headers=_headers(fresh))
        assert again.status_code == 403
        assert again.json()["error"]["code"] == "step_up_required"


def test_session_without_any_mfa_proof_cannot_do_sensitive_actions(rt: Runtime) -> None:
    merchant = bootstrap.create_merchant_with_keys(rt, "Step-up none")
    never = _owner(rt, merchant["id"], mfa_at=None)
    with api_client(rt, None) as client:
        refused = client.post("/v1/api_keys", data={"type": "secret"}, headers=_headers(never))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "step_up_required"


def test_refunds_above_the_threshold_need_step_up(rt: Runtime) -> None:
    merchant = bootstrap.create_merchant_with_keys(rt, "Step-up refunds")
    stale = _owner(rt, merchant["id"], mfa_at=START - 3600)
    with api_client(rt, merchant["secret_key"]) as api:
        paid = pay(api, amount=20_000).json()
    with api_client(rt, None) as client:
        small = client.post(
            "/v1/refunds",
            data={"payment_intent": paid["id"], "amount": "5000"},
            headers=_headers(stale),
        )
        assert small.status_code == 200, small.text
        large = client.post(
            "/v1/refunds",
            data={"payment_intent": paid["id"], "amount": "5001"},
            headers=_headers(stale),
        )
        assert large.status_code == 403
        assert large.json()["error"]["code"] == "step_up_required"
        # Without an amount a refund returns everything left: not bounded, so sensitive.
        whole = client.post(
            "/v1/refunds", data={"payment_intent": paid["id"]}, headers=_headers(stale)
        )
        assert whole.status_code == 403
    # A secret key is a machine credential: no human to step up; its permissions bound it.
    with api_client(rt, merchant["secret_key"]) as api:
        assert (
            api.post("/v1/refunds", data={"payment_intent": paid["id"], "amount": "9000"})
        ).status_code == 200


def test_role_change_and_disable_need_step_up_and_respect_ownership(rt: Runtime) -> None:
    merchant = bootstrap.create_merchant_with_keys(rt, "Step-up roles")
    owner = _owner(rt, merchant["id"], mfa_at=START)
    stale = _owner(rt, merchant["id"], mfa_at=START - 600)
    with unit_of_work(rt.db, write=False) as session:
        target = session.scalar(select(User).where(User.id == stale["user"]))
        assert target is not None
    with api_client(rt, None) as client:
        refused = client.post(
            f"/v1/users/{owner['user']}", data={"role": "analyst"}, headers=_headers(stale)
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "step_up_required"
        changed = client.post(
            f"/v1/users/{stale['user']}", data={"role": "analyst"}, headers=_headers(owner)
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["role"] == "analyst"
        # The role change bumped the user's generation: their session is gone (I4).
        gone = client.get("/v1/customers", headers=_headers(stale))
        assert gone.status_code == 401
        self_change = client.post(
            f"/v1/users/{owner['user']}", data={"role": "admin"}, headers=_headers(owner)
        )
        assert self_change.status_code == 403
        assert self_change.json()["error"]["code"] == "self_change"


def test_v1_session_idles_out_and_its_expiry_is_recorded(rt: Runtime, clock: FrozenClock) -> None:
    """I4: 15 minutes idle ends an operator's session on /v1 too; the expiry is audited once and
    survives the 401 (it is committed before the refusal)."""
    merchant = bootstrap.create_merchant_with_keys(rt, "Idle session")
    owner = _owner(rt, merchant["id"], mfa_at=START)
    with api_client(rt, None) as client:
        clock.advance(14 * 60)
        assert client.get("/v1/customers", headers=_headers(owner)).status_code == 200
        clock.advance(14 * 60)  # used 14 minutes ago: still alive
        assert client.get("/v1/customers", headers=_headers(owner)).status_code == 200
        clock.advance(15 * 60)
        expired = client.get("/v1/customers", headers=_headers(owner))
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "session_invalid"
        assert client.get("/v1/customers", headers=_headers(owner)).status_code == 401
    with unit_of_work(rt.db, write=False) as session:
        actions = session.scalars(
            select(AuditStaged.action).where(AuditStaged.actor_id == owner["user"])
        ).all()
    assert actions.count("identity.session.expire") == 1

"""The tamper-evident audit log (SECURITY-REQUIREMENTS L1, L2; issue 3 "done when").

Every kind of tampering — edit, delete, swap, insert, truncate, replace a checkpoint — is caught by
`verify_log` naming the problem; exports verify offline and tampered exports are rejected; an action
whose audit record cannot be written does not happen (P3).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.audit import events, seal
from bastionpay.audit.export import ExportInvalid, export_lines, verify_export, write_export
from bastionpay.audit.models import AuditEntry, AuditStaged
from bastionpay.audit.verify import verify_log
from bastionpay.db.uow import unit_of_work
from bastionpay.jobs.worker import run_audit_once
from bastionpay.kernel.pan import find_pans
from bastionpay.merchants import service as merchants
from bastionpay.payments.models import PaymentIntent
from bastionpay.runtime import Runtime


@pytest.fixture
def audited(fresh_db_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, dict[str, Any]]]:
    """A fresh database with a merchant, a few audited actions, sealed and checkpointed twice."""
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        pay(api, 2000)
        _seal(runtime, checkpoint=True)
        intent = pay(api, 1500, capture_method="manual").json()
        api.post(f"/v1/payment_intents/{intent['id']}/capture")
        api.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": "500"})
        pay(api, 1000, pm="pm_card_chargeDeclined")
    _seal(runtime, checkpoint=True)
    yield runtime, merchant
    runtime.db.dispose()


def _seal(runtime: Runtime, *, checkpoint: bool = False) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        seal.seal(session, runtime.audit_keys)
        if checkpoint:
            seal.checkpoint(session, runtime.audit_keys, now_us=1_800_000_000_000_000)


def _problems(runtime: Runtime) -> list[str]:
    with unit_of_work(runtime.db, write=False) as session:
        return verify_log(session, runtime.audit_keys).problems


def _tamper(runtime: Runtime, *statements: str) -> None:
    """An attacker with database rights: drop the append-only triggers, then edit."""
    with unit_of_work(runtime.db, write=True) as session:
        if runtime.db.is_sqlite:
            for table in ("audit_entries", "audit_checkpoints"):
                for event in ("update", "delete"):
                    session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{event}"))
        else:
            for table in ("audit_entries", "audit_checkpoints"):
                session.execute(text(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}"))
        for statement in statements:
            session.execute(text(statement))


def test_actions_are_recorded_with_who_what_when_outcome_origin_target(
    audited: tuple[Runtime, dict[str, Any]],
) -> None:
    runtime, merchant = audited
    with unit_of_work(runtime.db, write=False) as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    actions = [e.action for e in entries]
    assert actions[:4] == [
        "merchant.account.create",
        "merchant.api_key.create",
        "merchant.api_key.create",
        "payments.payment_intent.create",
    ]
    assert "payments.payment_intent.capture" in actions
    assert "payments.refund.create" in actions
    declined = [e for e in entries if e.outcome == "failure"]
    assert declined and declined[-1].details["decline_code"] == "generic_decline"
    create = entries[3]
    assert create.actor_type == "api_key" and create.actor_id.startswith("key_")
    assert create.merchant_id == merchant["id"] and create.target_id.startswith("pi_")
    assert create.origin_ip == "127.0.0.1" and create.request_id.startswith("req_")
    blob = json.dumps([{c: getattr(e, c) for c in ("details", "actor_id")} for e in entries])
    assert merchant["secret_key"] not in blob and merchant["secret_key"][8:] not in blob
    assert _problems(runtime) == []


TAMPERING = {
    "edit": ("UPDATE audit_entries SET actor_id = 'key_someoneelse' WHERE seq = 5", "entry 5"),
    "delete": ("DELETE FROM audit_entries WHERE seq = 4", "entry 4: missing"),
    "swap": (
        "UPDATE audit_entries SET seq = CASE seq WHEN 3 THEN 1003 WHEN 4 THEN 3 END "
        "WHERE seq IN (3, 4)",
        "entry 3",
    ),
    "insert": (
        "INSERT INTO audit_entries (seq, event_id, occurred_us, actor_type, actor_id, action, "
        "outcome, details, leaf_hash, chain_hash) SELECT 1000, 'aud_forged', occurred_us, "
        "actor_type, actor_id, action, outcome, details, leaf_hash, chain_hash "
        "FROM audit_entries WHERE seq = 2",
        "entry",
    ),
    "append": (
        "INSERT INTO audit_entries (seq, event_id, occurred_us, actor_type, actor_id, action, "
        "outcome, details, leaf_hash, chain_hash) SELECT (SELECT MAX(seq) + 1 FROM "
        "audit_entries), 'aud_forged', occurred_us, actor_type, actor_id, action, outcome, "
        "details, leaf_hash, chain_hash FROM audit_entries WHERE seq = 2",
        "entry",
    ),
    "truncate": ("DELETE FROM audit_entries WHERE seq >= 6", "truncated"),
    "replace_checkpoint": (
        "UPDATE audit_checkpoints SET root_hash = '" + "ab" * 32 + "' WHERE pk = 1",
        "checkpoint 1",
    ),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_every_kind_of_tampering_is_detected(
    audited: tuple[Runtime, dict[str, Any]], kind: str
) -> None:
    runtime, _ = audited
    assert _problems(runtime) == []
    statement, expected = TAMPERING[kind]
    if kind == "swap":  # move 4 to 3 and 3 out of the way, then 3's old row into 4
        _tamper(runtime, statement, "UPDATE audit_entries SET seq = 4 WHERE seq = 1003")
    else:
        _tamper(runtime, statement)
    problems = _problems(runtime)
    assert problems, f"{kind} was not detected"
    assert expected in problems[0], problems


def test_a_forged_head_cannot_hide_a_truncation(audited: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, _ = audited
    _tamper(runtime, "DELETE FROM audit_entries WHERE seq >= 6", "UPDATE audit_head SET size = 6")
    assert "MAC does not match" in _problems(runtime)[0]


def test_sealing_refuses_to_extend_a_tampered_head(
    audited: tuple[Runtime, dict[str, Any]],
) -> None:
    runtime, _ = audited
    _tamper(runtime, "UPDATE audit_head SET size = size - 1")
    with pytest.raises(seal.AuditTampered):
        _seal(runtime)


def test_sealed_entries_are_append_only_in_the_database(
    audited: tuple[Runtime, dict[str, Any]],
) -> None:
    runtime, _ = audited
    for statement in ("UPDATE audit_entries SET outcome = 'x'", "DELETE FROM audit_checkpoints"):
        with pytest.raises(DBAPIError), unit_of_work(runtime.db, write=True) as session:
            session.execute(text(statement))


def _export(runtime: Runtime, since_us: int = 0) -> list[str]:
    with unit_of_work(runtime.db, write=False) as session:
        checkpoint = seal.latest_checkpoint(session)
        assert checkpoint is not None
        out = io.StringIO()
        write_export(export_lines(session, runtime.audit_keys, checkpoint, since_us=since_us), out)
    return out.getvalue().splitlines()


def test_exports_verify_offline_and_tampered_exports_are_rejected(
    audited: tuple[Runtime, dict[str, Any]],
) -> None:
    runtime, _ = audited
    lines = _export(runtime)
    assert verify_export(lines) == len(lines) - 1 > 5
    assert verify_export(lines, pinned_public_key=runtime.audit_keys.public_key_b64) > 0

    def mutate(index: int, change: Any) -> list[str]:
        copy = [json.loads(line) for line in lines]
        change(copy[index])
        return [json.dumps(item) for item in copy]

    def flip_node(entry: dict[str, Any]) -> None:
        node = entry["inclusion_proof"][0]
        entry["inclusion_proof"][0] = ("0" if node[0] != "0" else "1") + node[1:]

    cases = {
        "edited field": mutate(3, lambda e: e["fields"].update(outcome="denied")),
        "proof node": mutate(3, flip_node),
        "moved entry": mutate(3, lambda e: e.update(seq=e["seq"] + 1)),
        "checkpoint root": mutate(0, lambda h: h.update(root_hash="00" * 32)),
        "checkpoint size": mutate(0, lambda h: h.update(tree_size=h["tree_size"] - 1)),
    }
    for name, tampered in cases.items():
        with pytest.raises(ExportInvalid):
            verify_export(tampered)
            pytest.fail(f"tampered export accepted: {name}")
    with pytest.raises(ExportInvalid, match="pinned"):
        verify_export(lines, pinned_public_key="A" * 43 + "=")


def test_failed_authentication_is_audited_without_the_key(
    fresh_db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    with api_client(runtime, "sk_test_notarealkey1234") as api:
        assert api.get("/v1/balance").status_code == 401
    _seal(runtime)
    with unit_of_work(runtime.db, write=False) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "identity.authentication.fail")
        ).one()
    assert entry.outcome == "failure"
    assert "notarealkey" not in json.dumps(entry.details) + entry.actor_id
    runtime.db.dispose()


def test_reading_the_audit_log_is_itself_audited(audited: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, merchant = audited
    with api_client(runtime, merchant["secret_key"]) as api:
        listed = api.get("/v1/audit_events", params={"limit": 3})
        assert listed.status_code == 200
        page = listed.json()
        assert page["has_more"] is True and len(page["data"]) == 3
        assert page["data"][0]["seq"] > page["data"][1]["seq"]  # newest first
        after = api.get(
            "/v1/audit_events", params={"starting_after": page["data"][-1]["id"], "limit": 100}
        ).json()
        assert after["data"][0]["seq"] == page["data"][-1]["seq"] - 1
        refunds = api.get("/v1/audit_events", params={"action": "payments.refund.create"}).json()
        assert [e["action"] for e in refunds["data"]] == ["payments.refund.create"]
    with unit_of_work(runtime.db, write=False) as session:
        reads = session.scalar(
            select(func.count())
            .select_from(AuditStaged)
            .where(AuditStaged.action == "audit.log.read")
        )
    assert reads == 3


def test_an_action_whose_audit_record_fails_does_not_happen(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P3: fail closed."""
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(events, "record", broken)
    with api_client(runtime, merchant["secret_key"]) as api:
        assert pay(api, 2000).status_code == 500
    with unit_of_work(runtime.db, write=False) as session:
        assert session.scalar(select(func.count()).select_from(PaymentIntent)) == 0
    runtime.db.dispose()


def test_restricted_keys_need_the_audit_permission(
    audited: tuple[Runtime, dict[str, Any]],
) -> None:
    runtime, merchant = audited
    with unit_of_work(runtime.db, write=True) as session:
        key = merchants.issue_key(
            session,
            runtime.api_keys,
            merchant_id=merchant["id"],
            kind="restricted",
            livemode=False,
            now=runtime.clock.now(),
            permissions=frozenset({"payments:read"}),
        ).plaintext
    client: TestClient
    with api_client(runtime, key) as client:
        assert client.get("/v1/audit_events").status_code == 403


def test_the_worker_seals_and_checkpoints(fresh_db_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, merchant["secret_key"]) as api:
        pay(api, 2000)
    assert run_audit_once(runtime, checkpoint_due=False) == {
        "audit_sealed": 4,  # the merchant, its two keys, the payment
        "audit_checkpoints": 0,
    }
    assert run_audit_once(runtime, checkpoint_due=False)["audit_sealed"] == 0
    assert run_audit_once(runtime, checkpoint_due=True)["audit_checkpoints"] == 1
    assert run_audit_once(runtime, checkpoint_due=True)["audit_checkpoints"] == 0  # nothing new
    assert _problems(runtime) == []
    runtime.db.dispose()


def test_card_numbers_never_reach_stored_audit_rows(fresh_db_url: str, tmp_path: Path) -> None:
    """C5: the audit log stores paths, user agents and details — never a card number in them."""
    runtime = make_runtime(fresh_db_url, tmp_path)
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    with api_client(runtime, "sk_test_notarealkey1234") as bad:
        assert bad.get("/v1/customers/4242424242424242").status_code == 401  # path is audited
    with api_client(runtime, merchant["secret_key"]) as api:
        response = api.post(
            "/v1/payment_intents",
            data={
                "amount": "2000",
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
            },
            headers={"User-Agent": "shop/1.0 card 5555 5555 5555 4444"},
        )
        assert response.status_code == 200
    _seal(runtime)
    with unit_of_work(runtime.db, write=False) as session:
        rows = session.scalars(select(AuditEntry)).all()
        stored = json.dumps([[e.user_agent, e.details] for e in rows])
    assert "customers/424242" in stored  # the path is kept, only the number is masked
    assert find_pans(stored) == []
    assert "5555 5555 5555 4444" not in stored and "4242424242424242" not in stored
    assert _problems(runtime) == []
    runtime.db.dispose()

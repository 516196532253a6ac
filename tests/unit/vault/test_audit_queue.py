"""vault.auditlog: the vault's own log — vocabulary, scrubbing, bounded queue, sealing (L1, L2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from bastionpay.audit.keys import load_audit_keys
from bastionpay.audit.verify import verify_log
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.vault import auditlog, migrate
from bastionpay.vault.auditlog import AuditQueue, VaultEvent
from bastionpay.vault.database import open_database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    migrate.upgrade(url)
    return open_database(url)


def _event(reason: str) -> VaultEvent:
    return VaultEvent(
        actor_type="anonymous",
        actor_id="unknown",
        action="vault.mtls.reject",
        outcome="denied",
        details={"reason": reason},
    )


def _rows(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        return [
            (row[0], row[1])
            for row in conn.execute(text("SELECT action, details FROM audit_staged ORDER BY pk"))
        ]


def test_the_queue_is_bounded_and_reports_what_it_dropped(db: Database) -> None:
    queue = AuditQueue(capacity=2)
    for index in range(5):
        queue.put(_event(f"r{index}"))
    assert queue.drain(db) == 3  # two events and one note of the three dropped
    rows = _rows(db)
    assert [action for action, _ in rows] == ["vault.mtls.reject"] * 3
    assert '"dropped_events": 3' in rows[-1][1]
    assert queue.drain(db) == 0


def test_details_are_scrubbed_and_the_vocabulary_is_closed(db: Database) -> None:
    auditlog.record_now(db, _event("card 4242 4242 4242 4242 in a path"))
    [(_, details)] = _rows(db)
    assert "4242 4242 4242 4242" not in details and "424242******4242" in details
    with (
        pytest.raises(ValueError, match="unknown vault audit action"),
        unit_of_work(db, write=True) as session,
    ):
        auditlog.record(
            session,
            VaultEvent(actor_type="system", actor_id="x", action="vault.nope", outcome="success"),  # type: ignore[arg-type]
        )


def test_sealed_vault_events_verify_with_the_vault_s_keys(db: Database, tmp_path: Path) -> None:
    keys = load_audit_keys(tmp_path / "keys")
    for index in range(3):
        auditlog.record_now(db, _event(f"r{index}"))
    assert auditlog.seal_staged(db, keys) == 3
    assert auditlog.checkpoint(db, keys)
    with unit_of_work(db, write=False) as session:
        report = verify_log(session, keys)
    assert report.ok, report.problems
    assert report.entries == 3
    with pytest.raises(Exception, match="immutable"), db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries"))  # append-only (L2)

"""vault.store: the KeyStore/RecordStore contracts over the vault database, SQLite and PostgreSQL.

The same checks as `test_memory_store.py` (the reference behaviour), then the key ring's own
scenarios from `test_keyring.py` — rotation of both key levels, budgets, bindings, destruction —
re-run with these stores in place of the in-memory ones. PostgreSQL (127.0.0.1:5432, trust auth)
is skipped when absent unless BASTIONPAY_REQUIRE_SERVICES=1. Also: the vault's migrations produce
exactly its models, on both backends.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, insert, inspect, select, update
from tests.unit.vault import test_keyring as scenarios
from tests.unit.vault.test_keyring import World

from bastionpay.crypto.file_kek import FileKek
from bastionpay.crypto.kek import KeyEncryptionKey, WrappedKey
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.clock import FrozenClock
from bastionpay.vault import migrate
from bastionpay.vault.database import open_database
from bastionpay.vault.interfaces import DekConflict, DekRow, Purpose, Reencrypted, SealedRecord
from bastionpay.vault.models import vault_metadata
from bastionpay.vault.store import CARDS, CVCS, KEYS, SqlKeyStore, SqlRecordStore, rowcount

PG_ADMIN_URL = os.environ.get(
    "BASTIONPAY_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("BASTIONPAY_REQUIRE_SERVICES") == "1"


def _pg_admin() -> Any:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def vault_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly created and migrated vault database per backend (one per module run)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('vaultdb') / 'vault.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"bp_vault_test_{secrets.token_hex(6)}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(vault_db_url: str) -> Iterator[Database]:
    database = open_database(vault_db_url)
    with unit_of_work(database, write=True) as session:  # each test starts from empty tables
        for table in (CVCS, CARDS, KEYS):
            session.execute(delete(table))
    yield database
    database.dispose()


class TestRecords(SqlRecordStore):
    """The SQL record store plus the helpers the key ring scenarios use (`put`, `delete`, `all`).

    `put` stands in for the vault service, which writes card rows with their metadata."""

    __test__ = False

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._database = db

    def put(self, record: SealedRecord) -> None:
        table = CARDS if record.purpose is Purpose.PAN else CVCS
        key = table.c.id if record.purpose is Purpose.PAN else table.c.card_id
        blob = table.c.pan_ciphertext if record.purpose is Purpose.PAN else table.c.ciphertext
        with unit_of_work(self._database, write=True) as session:
            changed = session.execute(
                update(table)
                .where(key == record.record_id)
                .values(**{"dek_version": record.dek_version, blob.name: record.ciphertext})
            )
            if rowcount(changed):
                return
            values: dict[str, Any] = {
                key.name: record.record_id,
                "merchant_id": record.merchant_id,
                "dek_version": record.dek_version,
                blob.name: record.ciphertext,
            }
            if record.purpose is Purpose.PAN:
                values.update(
                    livemode=False,
                    fingerprint="0" * 16,
                    platform_fingerprint="0" * 64,
                    brand="visa",
                    bin6="424242",
                    last4="4242",
                    exp_month=12,
                    exp_year=2030,
                    funding="credit",
                    source="test",
                    created=0,
                )
            else:
                values.update(created=0, expires_at=600)
            session.execute(insert(table).values(**values))

    def delete(self, merchant_id: str, record_id: str, purpose: Purpose) -> None:
        table, key = (CARDS, CARDS.c.id) if purpose is Purpose.PAN else (CVCS, CVCS.c.card_id)
        with unit_of_work(self._database, write=True) as session:
            session.execute(
                delete(table).where(key == record_id, table.c.merchant_id == merchant_id)
            )

    def all(self) -> list[SealedRecord]:
        found: list[SealedRecord] = []
        with unit_of_work(self._database, write=False) as session:
            for row in session.execute(select(CARDS.c.merchant_id, CARDS.c.id)):
                found.append(self._get(row[0], row[1], Purpose.PAN))
            for row in session.execute(select(CVCS.c.merchant_id, CVCS.c.card_id)):
                found.append(self._get(row[0], row[1], Purpose.CVC))
        return sorted(found, key=lambda r: (r.merchant_id, r.record_id, r.purpose.value))

    def _get(self, merchant_id: str, record_id: str, purpose: Purpose) -> SealedRecord:
        record = self.get(merchant_id, record_id, purpose)
        assert record is not None
        return record


def wrapped(kek_version: int, tag: bytes = b"a") -> WrappedKey:
    return WrappedKey(backend="file", kek_version=kek_version, blob=tag * 60)


def row(merchant: str, version: int, kek_version: int = 1) -> DekRow:
    return DekRow(merchant, version, wrapped(kek_version), created_at=100 + version)


# --- The contract, as test_memory_store.py states it -----------------------------------------


def test_versions_are_unique_per_merchant(db: Database) -> None:
    keys = SqlKeyStore(db)
    keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_b", 1))
    with pytest.raises(DekConflict):
        keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_a", 2))
    latest = keys.latest_dek("acct_a")
    assert latest is not None and latest.version == 2
    assert latest.wrapped == wrapped(1) and latest.created_at == 102
    assert keys.latest_dek("acct_c") is None
    assert [(r.merchant_id, r.version) for r in keys.list_deks()] == [
        ("acct_a", 1),
        ("acct_a", 2),
        ("acct_b", 1),
    ]
    assert [r.version for r in keys.list_deks("acct_a")] == [1, 2]


def test_concurrent_inserts_of_one_version_give_one_row(db: Database) -> None:
    keys = SqlKeyStore(db)
    outcomes: list[str] = []
    lock = threading.Lock()

    def insert_v1(tag: bytes) -> None:
        try:
            keys.insert_dek(DekRow("acct_race", 1, wrapped(1, tag), created_at=1))
            result = "inserted"
        except DekConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=insert_v1, args=(bytes([65 + i]),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["conflict"] * 3 + ["inserted"]
    assert len(keys.list_deks("acct_race")) == 1


def test_replace_wrapped_is_compare_and_set(db: Database) -> None:
    keys = SqlKeyStore(db)
    keys.insert_dek(row("acct_a", 1))
    assert not keys.replace_wrapped("acct_a", 1, old=wrapped(1, b"z"), new=wrapped(2))
    assert keys.replace_wrapped("acct_a", 1, old=wrapped(1), new=wrapped(2))
    assert not keys.replace_wrapped("acct_a", 1, old=wrapped(1), new=wrapped(3))
    assert keys.count_live_by_kek_version() == {2: 1}
    assert not keys.replace_wrapped("acct_x", 1, old=wrapped(1), new=wrapped(2))


def test_destroyed_keys_are_tombstones_outside_every_count(db: Database) -> None:
    keys = SqlKeyStore(db)
    keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_a", 2, kek_version=2))
    keys.mark_destroyed("acct_a", 1, at=500)
    tombstone = keys.get_dek("acct_a", 1)
    assert tombstone is not None
    assert (tombstone.wrapped, tombstone.destroyed_at, tombstone.live) == (None, 500, False)
    assert keys.count_live_by_kek_version() == {2: 1}
    assert keys.deks_not_under(2, limit=10) == []
    with unit_of_work(db, write=False) as session:  # no key material left in the row (C4)
        stored = session.execute(
            select(KEYS.c.wrapped, KEYS.c.kek_version).where(KEYS.c.version == 1)
        ).one()
    assert tuple(stored) == (None, None)


def test_deks_not_under_is_bounded(db: Database) -> None:
    keys = SqlKeyStore(db)
    for index in range(5):
        keys.insert_dek(row(f"acct_{index}", 1))
    assert len(keys.deks_not_under(2, limit=3)) == 3
    assert keys.deks_not_under(1, limit=3) == []


def test_reservations_are_atomic(db: Database) -> None:
    keys = SqlKeyStore(db)
    keys.insert_dek(row("acct_a", 1))
    totals: list[int] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(25):
            total = keys.reserve_encryptions("acct_a", 1, 4)
            with lock:
                totals.append(total)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(totals) == list(range(4, 401, 4))  # every block handed out exactly once
    with pytest.raises(ValueError, match="at least one"):
        keys.reserve_encryptions("acct_a", 1, 0)
    with pytest.raises(KeyError):
        keys.reserve_encryptions("acct_none", 1, 1)


def test_record_counts_and_batches(db: Database) -> None:
    records = TestRecords(db)
    for index in range(5):
        records.put(
            SealedRecord("acct_a", f"pm_{index}", Purpose.PAN, 1 + index % 2, b"c%d" % index)
        )
    records.put(SealedRecord("acct_b", "pm_9", Purpose.PAN, 1, b"p"))
    records.put(SealedRecord("acct_b", "pm_9", Purpose.CVC, 1, b"b"))
    assert records.count_by_dek_version() == {("acct_a", 1): 3, ("acct_a", 2): 2, ("acct_b", 1): 2}
    assert records.count_by_dek_version("acct_b") == {("acct_b", 1): 2}
    batch = records.records_under("acct_a", 1, limit=2)
    assert [r.record_id for r in batch] == ["pm_0", "pm_2"]
    mixed = records.records_under("acct_b", 1, limit=5)
    assert [(r.record_id, r.purpose) for r in mixed] == [
        ("pm_9", Purpose.CVC),
        ("pm_9", Purpose.PAN),
    ]
    applied = records.replace_batch(
        [Reencrypted(old=record, dek_version=2, ciphertext=b"new") for record in batch]
    )
    assert applied == 2
    assert records.count_by_dek_version("acct_a") == {("acct_a", 1): 1, ("acct_a", 2): 4}
    assert (
        records.replace_batch(
            [Reencrypted(old=record, dek_version=3, ciphertext=b"x") for record in batch]
        )
        == 0
    )  # stale reads apply nothing


def test_migrations_produce_exactly_the_models(vault_db_url: str) -> None:
    engine = create_engine(vault_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": migrate.VERSION_TABLE}
            )
            assert compare_metadata(context, vault_metadata) == []
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert migrate.current_revision(vault_db_url) == migrate.head_revision(vault_db_url)
    assert {"vault_cards", "vault_cvcs", "audit_entries", "vault_alembic_version"} <= names
    assert "alembic_version" not in names  # never confused with the api's history


# --- The key ring's scenarios over these stores ------------------------------------------------


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    clock = FrozenClock(scenarios.T0)

    def reopen() -> KeyEncryptionKey:
        return FileKek(tmp_path / "kek.json", clock=clock)

    return World(reopen(), SqlKeyStore(db), TestRecords(db), clock, reopen)  # type: ignore[arg-type]


test_seal_and_open_with_a_first_data_key = scenarios.test_seal_and_open_with_a_first_data_key
test_records_are_bound_to_merchant_record_and_purpose = (
    scenarios.test_records_are_bound_to_merchant_record_and_purpose
)
test_a_wrapped_key_moved_to_another_merchant_does_not_unwrap = (
    scenarios.test_a_wrapped_key_moved_to_another_merchant_does_not_unwrap
)
test_kek_rotation_rewraps_every_data_key_then_retires_the_old_kek = (
    scenarios.test_kek_rotation_rewraps_every_data_key_then_retires_the_old_kek
)
test_dek_rotation_reencrypts_in_batches_then_destroys_the_old_key = (
    scenarios.test_dek_rotation_reencrypts_in_batches_then_destroys_the_old_key
)
test_both_rotations_together = scenarios.test_both_rotations_together
test_records_deleted_during_reencryption_are_skipped = (
    scenarios.test_records_deleted_during_reencryption_are_skipped
)
test_encryption_budget_is_shared_and_enforced = (
    scenarios.test_encryption_budget_is_shared_and_enforced
)
test_auto_rotation_before_the_budget_runs_out = (
    scenarios.test_auto_rotation_before_the_budget_runs_out
)
test_a_shredded_merchant_gets_no_new_key = scenarios.test_a_shredded_merchant_gets_no_new_key
test_status_and_errors_carry_no_key_material = (
    scenarios.test_status_and_errors_carry_no_key_material
)
test_bounds_are_checked = scenarios.test_bounds_are_checked
test_card_numbers_and_cvcs_round_trip_as_their_types = (
    scenarios.test_card_numbers_and_cvcs_round_trip_as_their_types
)
test_a_key_destroyed_elsewhere_is_dropped_from_the_cache = (
    scenarios.test_a_key_destroyed_elsewhere_is_dropped_from_the_cache
)

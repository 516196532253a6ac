"""vault.keyring: per-merchant data keys under a KEK, and rotation of both (C3, C4).

Every rotation test runs with the file KEK and with a PKCS#11 KEK in a SoftHSM2 token, and checks
after every step that the status counts are right and that every record still decrypts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.vault.softhsm import PIN, TOKEN, softhsm

from bastionpay.crypto.envelope import NonceBudgetExhausted
from bastionpay.crypto.file_kek import FileKek
from bastionpay.crypto.kek import KeyEncryptionKey, UnknownKekVersion, UnwrapFailed
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.secrets import Secret
from bastionpay.vault.cards import Brand, CardNumber, SecurityCode
from bastionpay.vault.interfaces import DekRow, Purpose, Reencrypted, SealedRecord
from bastionpay.vault.keyring import (
    GracePeriod,
    KeyInUse,
    Keyring,
    KeyringStatus,
    NoDataKey,
    RecordUnreadable,
)
from bastionpay.vault.memory import MemoryKeyStore, MemoryRecordStore

T0 = 1_767_225_600
GRACE = 300


@dataclasses.dataclass
class World:
    """One vault: a KEK, the two stores, and a way to build key rings over them."""

    kek: KeyEncryptionKey
    keys: MemoryKeyStore
    records: MemoryRecordStore
    clock: FrozenClock
    reopen_kek: Callable[[], KeyEncryptionKey]
    plaintexts: dict[tuple[str, str, Purpose], bytes] = dataclasses.field(default_factory=dict)

    def keyring(self, kek: KeyEncryptionKey | None = None, **options: Any) -> Keyring:
        options.setdefault("supersede_grace_seconds", GRACE)
        return Keyring(kek or self.kek, self.keys, self.records, clock=self.clock, **options)

    def store_cards(self, keyring: Keyring, merchant: str, count: int, *, start: int = 0) -> None:
        for index in range(start, start + count):
            record_id = f"pm_{merchant}_{index:04d}"
            pan = f"42424242{index:08d}".encode()
            cvc = f"{index % 1000:03d}".encode()
            for purpose, plaintext in ((Purpose.PAN, pan), (Purpose.CVC, cvc)):
                self.records.put(keyring.seal(merchant, record_id, purpose, plaintext))
                self.plaintexts[(merchant, record_id, purpose)] = plaintext

    def assert_all_readable(self, keyring: Keyring) -> None:
        stored = self.records.all()
        assert len(stored) == len(self.plaintexts)
        for record in stored:
            key = (record.merchant_id, record.record_id, record.purpose)
            assert keyring.open(record) == self.plaintexts[key]


@pytest.fixture(params=["file", "pkcs11"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    clock = FrozenClock(T0)
    opened: list[Any] = []
    if request.param == "file":

        def reopen() -> KeyEncryptionKey:
            return FileKek(tmp_path / "kek.json", clock=clock)

    else:
        hsm = softhsm()
        from bastionpay.crypto.pkcs11_kek import Pkcs11Config, Pkcs11Kek  # noqa: PLC0415

        config = Pkcs11Config(
            module=hsm.module, token_label=TOKEN, pin=Secret(PIN), key_label_prefix=hsm.prefix()
        )

        def reopen() -> KeyEncryptionKey:
            backend = Pkcs11Kek(config, clock=clock, create_if_missing=True)
            opened.append(backend)
            return backend

    yield World(reopen(), MemoryKeyStore(), MemoryRecordStore(), clock, reopen)
    for backend in opened:
        backend.close()


def kek_protects(status: KeyringStatus) -> dict[int, int]:
    return {entry.version: entry.protects_data_keys for entry in status.kek_versions}


def kek_protects_records(status: KeyringStatus) -> dict[int, int]:
    return {entry.version: entry.protects_records for entry in status.kek_versions}


def dek_protects(status: KeyringStatus, merchant: str) -> dict[int, int]:
    return {
        entry.version: entry.protects_records
        for entry in status.data_keys
        if entry.merchant_id == merchant
    }


def test_seal_and_open_with_a_first_data_key(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 3)
    status = keyring.status()
    assert status.kek_backend == world.kek.backend
    assert kek_protects(status) == {1: 1}
    [dek] = status.data_keys
    assert (dek.merchant_id, dek.version, dek.active, dek.kek_version) == ("acct_a", 1, True, 1)
    assert (dek.protects_records, dek.created_at, dek.age_seconds) == (6, T0, 0)
    assert dek.encryptions >= 6
    world.assert_all_readable(keyring)
    world.clock.advance(90)
    assert keyring.status().data_keys[0].age_seconds == 90
    json.dumps(keyring.status().to_dict())  # the CLI prints it as JSON


def test_records_are_bound_to_merchant_record_and_purpose(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 2)
    world.store_cards(keyring, "acct_b", 1)
    pan = world.records.get("acct_a", "pm_acct_a_0000", Purpose.PAN)
    assert pan is not None
    for forged in (
        dataclasses.replace(pan, purpose=Purpose.CVC),
        dataclasses.replace(pan, record_id="pm_acct_a_0001"),
        dataclasses.replace(pan, merchant_id="acct_b", record_id="pm_acct_b_0000"),
        dataclasses.replace(pan, dek_version=2),
        dataclasses.replace(pan, ciphertext=pan.ciphertext[:-1] + bytes([pan.ciphertext[-1] ^ 1])),
        dataclasses.replace(pan, ciphertext=b"junk"),
    ):
        with pytest.raises((RecordUnreadable, NoDataKey)) as caught:
            keyring.open(forged)
        assert "4242" not in str(caught.value)


def test_a_wrapped_key_moved_to_another_merchant_does_not_unwrap(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 1)
    world.store_cards(keyring, "acct_b", 1)
    a_row = world.keys.get_dek("acct_a", 1)
    b_row = world.keys.get_dek("acct_b", 1)
    assert a_row is not None and b_row is not None and a_row.wrapped and b_row.wrapped
    assert world.keys.replace_wrapped("acct_b", 1, old=b_row.wrapped, new=a_row.wrapped)
    fresh = world.keyring()  # no cached keys
    record = world.records.get("acct_b", "pm_acct_b_0000", Purpose.PAN)
    assert record is not None
    with pytest.raises(UnwrapFailed):
        fresh.open(record)


def test_kek_rotation_rewraps_every_data_key_then_retires_the_old_kek(world: World) -> None:
    keyring = world.keyring()
    for merchant in ("acct_a", "acct_b", "acct_c"):
        world.store_cards(keyring, merchant, 2)
    keyring.rotate_dek("acct_c")  # a merchant with two live data key versions
    world.store_cards(keyring, "acct_c", 1, start=2)
    assert kek_protects(keyring.status()) == {1: 4}
    assert kek_protects_records(keyring.status()) == {1: 14}

    world.clock.advance(60)
    assert keyring.rotate_kek() == 2
    status = keyring.status()
    assert kek_protects(status) == {1: 4, 2: 0}
    assert kek_protects_records(status) == {1: 14, 2: 0}
    assert status.kek_active_version == 2
    with pytest.raises(KeyInUse, match="still protects 4 data keys"):
        keyring.retire_kek(1)
    with pytest.raises(KeyInUse, match="active"):
        keyring.retire_kek(2)

    partial = keyring.rewrap(batch_size=3, max_batches=1)
    assert (partial.kek_version, partial.rewrapped, partial.remaining) == (2, 3, 1)
    assert kek_protects(keyring.status()) == {1: 1, 2: 3}
    with pytest.raises(KeyInUse, match="still protects 1 data keys"):
        keyring.retire_kek(1)
    world.assert_all_readable(world.keyring())

    done = keyring.rewrap(batch_size=3)
    assert (done.rewrapped, done.remaining) == (1, 0)
    assert kek_protects(keyring.status()) == {1: 0, 2: 4}
    assert kek_protects_records(keyring.status()) == {1: 0, 2: 14}
    assert {row.kek_version for row in world.keys.list_deks()} == {2}
    assert keyring.rewrap().rewrapped == 0  # idempotent

    with pytest.raises(GracePeriod):
        keyring.retire_kek(1)
    world.clock.advance(GRACE)
    keyring.retire_kek(1)
    status = keyring.status()
    assert [entry.version for entry in status.kek_versions] == [2]
    assert kek_protects(status) == {2: 4}
    assert status.missing_kek_versions == ()

    # A new process: a new KEK handle and an empty key cache still reads everything.
    world.assert_all_readable(world.keyring(world.reopen_kek()))
    world.store_cards(keyring, "acct_d", 1)
    assert kek_protects(keyring.status()) == {2: 5}


def test_dek_rotation_reencrypts_in_batches_then_destroys_the_old_key(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 10)  # 20 records under v1
    world.store_cards(keyring, "acct_b", 2)  # another merchant, untouched throughout
    assert dek_protects(keyring.status(), "acct_a") == {1: 20}

    world.clock.advance(60)
    assert keyring.rotate_dek("acct_a") == 2
    world.store_cards(keyring, "acct_a", 1, start=10)  # new records go to v2 at once
    status = keyring.status()
    assert dek_protects(status, "acct_a") == {1: 20, 2: 2}
    assert [(d.version, d.active) for d in status.data_keys if d.merchant_id == "acct_a"] == [
        (1, False),
        (2, True),
    ]
    with pytest.raises(KeyInUse, match="still protects 20 records"):
        keyring.destroy_dek("acct_a", 1)
    with pytest.raises(KeyInUse, match="active"):
        keyring.destroy_dek("acct_a", 2)

    step = keyring.reencrypt("acct_a", batch_size=4, max_batches=2)
    assert (step.active_version, step.moved, step.remaining) == (2, 8, {1: 12})
    assert dek_protects(keyring.status(), "acct_a") == {1: 12, 2: 10}
    world.assert_all_readable(keyring)

    rest = keyring.reencrypt("acct_a", batch_size=4)
    assert (rest.moved, rest.remaining) == (12, {})
    assert dek_protects(keyring.status(), "acct_a") == {1: 0, 2: 22}
    world.assert_all_readable(world.keyring())

    with pytest.raises(GracePeriod):
        keyring.destroy_dek("acct_a", 1)
    assert keyring.destroy_drained("acct_a") == ()  # still in its grace period
    world.clock.advance(GRACE)
    assert keyring.destroy_drained("acct_a") == (1,)
    row = world.keys.get_dek("acct_a", 1)
    assert row is not None and row.wrapped is None and row.destroyed_at == T0 + 60 + GRACE
    status = keyring.status()
    old = next(d for d in status.data_keys if d.merchant_id == "acct_a" and d.version == 1)
    assert (old.protects_records, old.kek_version, old.active) == (0, None, False)
    assert old.destroyed_at == T0 + 60 + GRACE
    assert dek_protects(status, "acct_b") == {1: 4}
    keyring.destroy_dek("acct_a", 1)  # destroying twice is a no-op
    world.assert_all_readable(keyring)
    world.assert_all_readable(world.keyring(world.reopen_kek()))


def test_both_rotations_together(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 3)
    keyring.rotate_dek("acct_a")
    keyring.rotate_kek()
    assert keyring.reencrypt("acct_a").remaining == {}
    assert keyring.rewrap().remaining == 0
    world.clock.advance(GRACE)
    assert keyring.destroy_drained("acct_a") == (1,)
    keyring.retire_kek(1)
    status = keyring.status()
    assert kek_protects(status) == {2: 1}
    assert dek_protects(status, "acct_a") == {1: 0, 2: 6}
    world.assert_all_readable(world.keyring(world.reopen_kek()))


def test_records_deleted_during_reencryption_are_skipped(world: World) -> None:
    keyring = world.keyring()
    world.store_cards(keyring, "acct_a", 2)
    keyring.rotate_dek("acct_a")
    stale = world.records.records_under("acct_a", 1, limit=10)
    world.records.delete("acct_a", "pm_acct_a_0000", Purpose.CVC)  # CVC deleted at authorization
    del world.plaintexts[("acct_a", "pm_acct_a_0000", Purpose.CVC)]
    updates = [
        Reencrypted(old=record, dek_version=2, ciphertext=b"placeholder") for record in stale
    ]
    assert world.records.replace_batch(updates) == 3  # the deleted one is not resurrected
    assert world.records.get("acct_a", "pm_acct_a_0000", Purpose.CVC) is None
    assert world.records.replace_batch(updates) == 0  # and nothing applies twice


def test_encryption_budget_is_shared_and_enforced(world: World) -> None:
    options: dict[str, Any] = {
        "auto_rotate": False,
        "lease_block": 4,
        "rotate_after": 8,
        "encryption_limit": 10,
    }
    first, second = world.keyring(**options), world.keyring(**options)  # two processes
    first.seal("acct_a", "pm_0", Purpose.PAN, b"x")  # creates v1 and reserves 1-4
    sealed = 1
    exhausted: set[int] = set()
    turn = 0
    while len(exhausted) < 2 and sealed < 100:
        keyring = (first, second)[turn % 2]
        turn += 1
        if id(keyring) in exhausted:
            continue
        try:
            keyring.seal("acct_a", f"pm_{sealed}", Purpose.PAN, b"x")
            sealed += 1
        except NonceBudgetExhausted:
            exhausted.add(id(keyring))
    assert sealed == 10  # exactly the limit, across both "processes"
    [dek] = first.status().data_keys
    assert dek.rotation_due
    assert dek.encryptions >= 10


def test_auto_rotation_before_the_budget_runs_out(world: World) -> None:
    keyring = world.keyring(lease_block=4, rotate_after=8, encryption_limit=10)
    versions = [keyring.seal("acct_a", f"pm_{i}", Purpose.PAN, b"x").dek_version for i in range(12)]
    # Reservations come in blocks of 4: after the 5th seal, 8 are reserved and rotation is due, so
    # each version seals 5 records (never more than the limit of 10) before the next one starts.
    assert versions == [1] * 5 + [2] * 5 + [3] * 2
    status = keyring.status()
    assert [(d.version, d.active, d.rotation_due) for d in status.data_keys] == [
        (1, False, True),
        (2, False, True),
        (3, True, False),
    ]
    assert all(d.encryptions <= 10 for d in status.data_keys)


def test_a_racing_first_data_key_is_shared(world: World) -> None:
    class LateStore(MemoryKeyStore):
        """Answers "no data key yet" once, as a process that read before another one inserted."""

        def __init__(self) -> None:
            super().__init__()
            self.blind = 0

        def latest_dek(self, merchant_id: str) -> DekRow | None:
            if self.blind:
                self.blind -= 1
                return None
            return super().latest_dek(merchant_id)

    keys = LateStore()
    first = Keyring(world.kek, keys, world.records, clock=world.clock)
    second = Keyring(world.kek, keys, world.records, clock=world.clock)
    a = first.seal("acct_a", "pm_1", Purpose.PAN, b"one")
    keys.blind = 1
    b = second.seal("acct_a", "pm_2", Purpose.PAN, b"two")
    assert (a.dek_version, b.dek_version) == (1, 1)
    assert [row.version for row in keys.list_deks()] == [1]
    assert first.open(b) == b"two" and second.open(a) == b"one"


def test_a_shredded_merchant_gets_no_new_key(world: World) -> None:
    keyring = world.keyring(supersede_grace_seconds=0)
    keyring.seal("acct_a", "pm_1", Purpose.PAN, b"x")
    world.keys.mark_destroyed("acct_a", 1, at=T0)  # erasure by destroying the key (G3)
    with pytest.raises(NoDataKey):
        world.keyring().seal("acct_a", "pm_2", Purpose.PAN, b"y")


def test_close_zeroes_cached_keys(world: World) -> None:
    keyring = world.keyring()
    record = keyring.seal("acct_a", "pm_1", Purpose.PAN, b"secret")
    cached = list(keyring._cache.values())
    assert cached and not cached[0].destroyed
    keyring.close()
    assert all(key.destroyed for key in cached)
    assert keyring.open(record) == b"secret"  # unwrapped again on demand


def test_status_and_errors_carry_no_key_material(world: World) -> None:
    keyring = world.keyring()
    record = keyring.seal("acct_a", "pm_1", Purpose.PAN, b"4242424242424242")
    rendered = json.dumps(keyring.status().to_dict()) + repr(keyring) + repr(record)
    row = world.keys.get_dek("acct_a", 1)
    assert row is not None and row.wrapped is not None
    assert row.wrapped.blob.hex() not in rendered
    assert "4242424242424242" not in rendered
    assert record.ciphertext.hex() not in rendered


def test_bounds_are_checked(world: World) -> None:
    with pytest.raises(ValueError, match="rotate_after"):
        world.keyring(rotate_after=11, encryption_limit=10)
    keyring = world.keyring()
    keyring.seal("acct_a", "pm_1", Purpose.PAN, b"x")
    with pytest.raises(ValueError, match="batch"):
        keyring.reencrypt("acct_a", batch_size=0)
    with pytest.raises(ValueError, match="batch"):
        keyring.rewrap(batch_size=100_000)
    with pytest.raises(NoDataKey):
        keyring.reencrypt("acct_unknown")
    with pytest.raises(NoDataKey):
        keyring.destroy_dek("acct_a", 9)
    with pytest.raises(UnknownKekVersion):
        keyring.retire_kek(9)


def test_sealed_record_type_is_what_the_store_holds(world: World) -> None:
    keyring = world.keyring()
    record = keyring.seal("acct_a", "pm_1", Purpose.CVC, b"123")
    assert isinstance(record, SealedRecord)
    assert (record.merchant_id, record.record_id, record.purpose, record.dek_version) == (
        "acct_a",
        "pm_1",
        Purpose.CVC,
        1,
    )


def test_card_numbers_and_cvcs_round_trip_as_their_types(world: World) -> None:
    keyring = world.keyring()
    number = CardNumber.parse("378282246310005")
    cvc = SecurityCode.parse("7319", number.brand)
    sealed_pan = keyring.seal_pan("acct_a", "pm_1", number)
    sealed_cvc = keyring.seal_cvc("acct_a", "pm_1", cvc)
    assert (sealed_pan.purpose, sealed_cvc.purpose) == (Purpose.PAN, Purpose.CVC)
    opened = keyring.open_pan(sealed_pan)
    assert opened == number and opened.brand is Brand.AMEX
    assert keyring.open_cvc(sealed_cvc) == cvc
    with pytest.raises(RecordUnreadable):
        keyring.open_pan(sealed_cvc)
    with pytest.raises(RecordUnreadable):
        keyring.open_cvc(sealed_pan)


def test_a_ciphertext_with_a_changed_format_tag_is_an_unreadable_record(world: World) -> None:
    """Every envelope failure surfaces as RecordUnreadable, which the vault audits as a failed
    authorization (C5); an UnsupportedFormat once escaped and left the payment pending (review L2).
    """
    keyring = world.keyring()
    sealed = keyring.seal_pan("acct_a", "pm_1", CardNumber.parse("4242424242424242"))
    retagged = dataclasses.replace(sealed, ciphertext=b"\xff" + bytes(sealed.ciphertext[1:]))
    with pytest.raises(RecordUnreadable):
        keyring.open_pan(retagged)


def test_a_key_destroyed_elsewhere_is_dropped_from_the_cache(world: World) -> None:
    reader, operator = world.keyring(), world.keyring(supersede_grace_seconds=0)
    old = reader.seal("acct_a", "pm_1", Purpose.PAN, b"x")
    world.records.put(old)
    cached = reader._cache[("acct_a", 1)]
    operator.rotate_dek("acct_a")
    operator.reencrypt("acct_a")
    assert operator.destroy_drained("acct_a") == (1,)
    with pytest.raises(NoDataKey):
        reader.open(old)  # a stale copy of the record, under the destroyed version
    assert cached.destroyed
    [moved] = world.records.all()
    assert moved.dek_version == 2
    assert reader.open(moved) == b"x"

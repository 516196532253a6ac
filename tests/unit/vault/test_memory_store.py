"""vault.memory: the reference behaviour of the KeyStore/RecordStore contracts (interfaces.py).

The SQL implementation in the vault database should pass these same checks.
"""

from __future__ import annotations

import threading

import pytest

from bastionpay.crypto.kek import WrappedKey
from bastionpay.vault.interfaces import DekConflict, DekRow, Purpose, Reencrypted, SealedRecord
from bastionpay.vault.memory import MemoryKeyStore, MemoryRecordStore


def wrapped(kek_version: int, tag: bytes = b"a") -> WrappedKey:
    return WrappedKey(backend="file", kek_version=kek_version, blob=tag * 60)


def row(merchant: str, version: int, kek_version: int = 1) -> DekRow:
    return DekRow(merchant, version, wrapped(kek_version), created_at=100 + version)


def test_versions_are_unique_per_merchant() -> None:
    keys = MemoryKeyStore()
    keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_b", 1))
    with pytest.raises(DekConflict):
        keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_a", 2))
    latest = keys.latest_dek("acct_a")
    assert latest is not None and latest.version == 2
    assert keys.latest_dek("acct_c") is None
    assert [(r.merchant_id, r.version) for r in keys.list_deks()] == [
        ("acct_a", 1),
        ("acct_a", 2),
        ("acct_b", 1),
    ]
    assert [r.version for r in keys.list_deks("acct_a")] == [1, 2]


def test_replace_wrapped_is_compare_and_set() -> None:
    keys = MemoryKeyStore()
    keys.insert_dek(row("acct_a", 1))
    assert not keys.replace_wrapped("acct_a", 1, old=wrapped(1, b"z"), new=wrapped(2))
    assert keys.replace_wrapped("acct_a", 1, old=wrapped(1), new=wrapped(2))
    assert not keys.replace_wrapped("acct_a", 1, old=wrapped(1), new=wrapped(3))
    assert keys.count_live_by_kek_version() == {2: 1}
    assert not keys.replace_wrapped("acct_x", 1, old=wrapped(1), new=wrapped(2))


def test_destroyed_keys_are_tombstones_outside_every_count() -> None:
    keys = MemoryKeyStore()
    keys.insert_dek(row("acct_a", 1))
    keys.insert_dek(row("acct_a", 2, kek_version=2))
    keys.mark_destroyed("acct_a", 1, at=500)
    tombstone = keys.get_dek("acct_a", 1)
    assert tombstone is not None
    assert (tombstone.wrapped, tombstone.destroyed_at, tombstone.live) == (None, 500, False)
    assert keys.count_live_by_kek_version() == {2: 1}
    assert keys.deks_not_under(2, limit=10) == []


def test_deks_not_under_is_bounded() -> None:
    keys = MemoryKeyStore()
    for index in range(5):
        keys.insert_dek(row(f"acct_{index}", 1))
    assert len(keys.deks_not_under(2, limit=3)) == 3
    assert keys.deks_not_under(1, limit=3) == []


def test_reservations_are_atomic() -> None:
    keys = MemoryKeyStore()
    keys.insert_dek(row("acct_a", 1))
    totals: list[int] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(100):
            total = keys.reserve_encryptions("acct_a", 1, 4)
            with lock:
                totals.append(total)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(totals) == list(range(4, 1601, 4))  # every block handed out exactly once
    with pytest.raises(ValueError, match="at least one"):
        keys.reserve_encryptions("acct_a", 1, 0)


def test_record_counts_and_batches() -> None:
    records = MemoryRecordStore()
    for index in range(5):
        records.put(
            SealedRecord("acct_a", f"pm_{index}", Purpose.PAN, 1 + index % 2, b"c%d" % index)
        )
    records.put(SealedRecord("acct_b", "pm_0", Purpose.CVC, 1, b"b"))
    assert records.count_by_dek_version() == {("acct_a", 1): 3, ("acct_a", 2): 2, ("acct_b", 1): 1}
    assert records.count_by_dek_version("acct_b") == {("acct_b", 1): 1}
    batch = records.records_under("acct_a", 1, limit=2)
    assert [r.record_id for r in batch] == ["pm_0", "pm_2"]
    applied = records.replace_batch(
        [Reencrypted(old=record, dek_version=2, ciphertext=b"new") for record in batch]
    )
    assert applied == 2
    assert records.count_by_dek_version("acct_a") == {("acct_a", 1): 1, ("acct_a", 2): 4}

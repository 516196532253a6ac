"""In-memory `KeyStore` and `RecordStore`: the reference behaviour for tests (see `interfaces.py`).

Thread-safe (one lock each), bounded by what a test puts in. The vault database implements the same
contracts in SQL; these two classes are what its contract tests are compared against.
"""

from __future__ import annotations

import dataclasses
import threading

from bastionpay.crypto.kek import WrappedKey
from bastionpay.vault.interfaces import DekConflict, DekRow, Purpose, Reencrypted, SealedRecord


class MemoryKeyStore:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], DekRow] = {}
        self._lock = threading.Lock()

    def insert_dek(self, row: DekRow) -> None:
        with self._lock:
            key = (row.merchant_id, row.version)
            if key in self._rows:
                raise DekConflict("data key version exists")
            self._rows[key] = row

    def get_dek(self, merchant_id: str, version: int) -> DekRow | None:
        with self._lock:
            return self._rows.get((merchant_id, version))

    def latest_dek(self, merchant_id: str) -> DekRow | None:
        with self._lock:
            versions = [row for (merchant, _), row in self._rows.items() if merchant == merchant_id]
            return max(versions, key=lambda row: row.version) if versions else None

    def list_deks(self, merchant_id: str | None = None) -> list[DekRow]:
        with self._lock:
            return [
                row
                for key, row in sorted(self._rows.items())
                if merchant_id is None or key[0] == merchant_id
            ]

    def deks_not_under(self, kek_version: int, *, limit: int) -> list[DekRow]:
        with self._lock:
            found = [
                row
                for _, row in sorted(self._rows.items())
                if row.wrapped is not None and row.wrapped.kek_version != kek_version
            ]
            return found[:limit]

    def count_live_by_kek_version(self) -> dict[int, int]:
        with self._lock:
            counts: dict[int, int] = {}
            for row in self._rows.values():
                if row.wrapped is not None:
                    counts[row.wrapped.kek_version] = counts.get(row.wrapped.kek_version, 0) + 1
            return counts

    def replace_wrapped(
        self, merchant_id: str, version: int, *, old: WrappedKey, new: WrappedKey
    ) -> bool:
        with self._lock:
            row = self._rows.get((merchant_id, version))
            if row is None or row.wrapped != old:
                return False
            self._rows[(merchant_id, version)] = dataclasses.replace(row, wrapped=new)
            return True

    def reserve_encryptions(self, merchant_id: str, version: int, count: int) -> int:
        if count < 1:
            raise ValueError("reserve at least one encryption")
        with self._lock:
            row = self._rows[(merchant_id, version)]
            total = row.encryptions + count
            self._rows[(merchant_id, version)] = dataclasses.replace(row, encryptions=total)
            return total

    def mark_destroyed(self, merchant_id: str, version: int, *, at: int) -> None:
        with self._lock:
            row = self._rows[(merchant_id, version)]
            self._rows[(merchant_id, version)] = dataclasses.replace(
                row, wrapped=None, destroyed_at=at
            )


class MemoryRecordStore:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str, Purpose], SealedRecord] = {}
        self._lock = threading.Lock()

    # The vault service writes records in its own transactions; tests use `put` and `get`.
    def put(self, record: SealedRecord) -> None:
        with self._lock:
            self._records[(record.merchant_id, record.record_id, record.purpose)] = record

    def get(self, merchant_id: str, record_id: str, purpose: Purpose) -> SealedRecord | None:
        with self._lock:
            return self._records.get((merchant_id, record_id, purpose))

    def delete(self, merchant_id: str, record_id: str, purpose: Purpose) -> None:
        with self._lock:
            self._records.pop((merchant_id, record_id, purpose), None)

    def all(self) -> list[SealedRecord]:
        with self._lock:
            return [record for _, record in sorted(self._records.items())]

    def count_by_dek_version(self, merchant_id: str | None = None) -> dict[tuple[str, int], int]:
        with self._lock:
            counts: dict[tuple[str, int], int] = {}
            for record in self._records.values():
                if merchant_id is None or record.merchant_id == merchant_id:
                    key = (record.merchant_id, record.dek_version)
                    counts[key] = counts.get(key, 0) + 1
            return counts

    def records_under(
        self, merchant_id: str, dek_version: int, *, limit: int
    ) -> list[SealedRecord]:
        with self._lock:
            found = [
                record
                for _, record in sorted(self._records.items())
                if record.merchant_id == merchant_id and record.dek_version == dek_version
            ]
            return found[:limit]

    def replace_batch(self, updates: list[Reencrypted]) -> int:
        with self._lock:
            applied = 0
            for update in updates:
                old = update.old
                key = (old.merchant_id, old.record_id, old.purpose)
                current = self._records.get(key)
                if current is None or current.ciphertext != old.ciphertext:
                    continue  # deleted (a CVC after authorization) or rewritten meanwhile
                self._records[key] = dataclasses.replace(
                    current, dek_version=update.dek_version, ciphertext=update.ciphertext
                )
                applied += 1
            return applied

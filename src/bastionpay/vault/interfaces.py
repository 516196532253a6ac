"""Storage contracts for the key ring: wrapped data keys and sealed records (C3, C4).

The key ring (`keyring.py`) holds the key-management logic and no storage of its own; the vault
database implements these two protocols (SQLAlchemy, in the vault's own database), and
`memory.py` implements them in memory for tests. Both must pass the same behaviour, in particular
the compare-and-set methods, which are what make rotation safe while the vault keeps serving:

- `KeyStore.replace_wrapped` and `RecordStore.replace_batch` only apply when the row still holds
  what the caller read, so a concurrent writer is never overwritten with stale data;
- `KeyStore.reserve_encryptions` is one atomic increment (`UPDATE … SET n = n + k RETURNING n`),
  so several vault processes share one nonce budget per data key version (C4);
- `KeyStore.insert_dek` fails with `DekConflict` when the version exists (a unique key on
  `(merchant_id, version)`), so two processes rotating at once cannot both create version N.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bastionpay.crypto.kek import WrappedKey


class Purpose(StrEnum):
    """Which field of a card record a ciphertext holds; part of its associated data (C3)."""

    PAN = "pan"
    CVC = "cvc"


class DekConflict(Exception):
    """A data key version with this number already exists for the merchant."""


@dataclass(frozen=True, slots=True)
class DekRow:
    """One version of a merchant's data key, as stored: wrapped, never in clear (C4)."""

    merchant_id: str
    version: int
    wrapped: WrappedKey | None  # None once destroyed: the key is gone (crypto-shredded)
    created_at: int
    destroyed_at: int | None = None
    # Encryptions reserved under this version so far (the persisted nonce budget, C4).
    encryptions: int = 0

    @property
    def kek_version(self) -> int | None:
        return None if self.wrapped is None else self.wrapped.kek_version

    @property
    def live(self) -> bool:
        return self.wrapped is not None


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A ciphertext in the vault database and what it is bound to."""

    merchant_id: str
    record_id: str
    purpose: Purpose
    dek_version: int
    ciphertext: bytes

    def __repr__(self) -> str:
        return (
            f"SealedRecord({self.merchant_id!r}, {self.record_id!r}, {self.purpose.value}, "
            f"dek_version={self.dek_version})"
        )


@dataclass(frozen=True, slots=True)
class Reencrypted:
    """The new ciphertext for a record read as `old`."""

    old: SealedRecord
    dek_version: int
    ciphertext: bytes


class KeyStore(Protocol):
    def insert_dek(self, row: DekRow) -> None:
        """Add a new version; raises `DekConflict` if `(merchant_id, version)` exists."""
        ...

    def get_dek(self, merchant_id: str, version: int) -> DekRow | None: ...

    def latest_dek(self, merchant_id: str) -> DekRow | None:
        """The highest version for the merchant (destroyed or not), or None."""
        ...

    def list_deks(self, merchant_id: str | None = None) -> list[DekRow]:
        """All versions (of one merchant, or of all), ordered by merchant id and version."""
        ...

    def deks_not_under(self, kek_version: int, *, limit: int) -> list[DekRow]:
        """Up to `limit` live versions wrapped under any KEK version but `kek_version`."""
        ...

    def count_live_by_kek_version(self) -> dict[int, int]:
        """How many live data key versions each KEK version protects."""
        ...

    def replace_wrapped(
        self, merchant_id: str, version: int, *, old: WrappedKey, new: WrappedKey
    ) -> bool:
        """Store `new` if the row still holds `old`; False (and no change) otherwise."""
        ...

    def reserve_encryptions(self, merchant_id: str, version: int, count: int) -> int:
        """Atomically add `count` to the version's encryption total; return the new total."""
        ...

    def mark_destroyed(self, merchant_id: str, version: int, *, at: int) -> None:
        """Drop the wrapped key (keep the row as a tombstone for status and audit)."""
        ...


class RecordStore(Protocol):
    def count_by_dek_version(self, merchant_id: str | None = None) -> dict[tuple[str, int], int]:
        """How many sealed records each `(merchant_id, dek_version)` protects."""
        ...

    def records_under(
        self, merchant_id: str, dek_version: int, *, limit: int
    ) -> list[SealedRecord]:
        """Up to `limit` records of the merchant sealed under `dek_version`, in a stable order."""
        ...

    def replace_batch(self, updates: list[Reencrypted]) -> int:
        """Apply each update whose record still holds `old.ciphertext`; return how many applied.

        One transaction per batch: either the batch's applicable updates all land or none does.
        """
        ...

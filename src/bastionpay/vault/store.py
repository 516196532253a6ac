"""`KeyStore` and `RecordStore` over the vault database (SQLAlchemy), as `memory.py` behaves.

Every method is one short transaction of its own (the key ring commits nothing and holds no
session). The contract points of `interfaces.py`, in SQL:

- `insert_dek` relies on the unique key `(merchant_id, version)`: two processes creating version N
  at once get one row and one `DekConflict` (C4);
- `reserve_encryptions` is `UPDATE … SET encryptions = encryptions + k … RETURNING encryptions`,
  one atomic statement, so every process draws from one persisted nonce budget (C4, ASVS 11.3.4);
- `replace_wrapped` and `replace_batch` are compare-and-set: the `WHERE` names the value the caller
  read (wrapped blob and KEK version; record ciphertext), so a concurrent writer — another rewrap,
  a re-encryption, a CVC deleted at authorization (C1) — is never overwritten or resurrected.

Records live in two tables: card numbers in `vault_cards.pan_ciphertext`, CVCs in `vault_cvcs`
(C1: apart, so a CVC is deleted without touching its card). `records_under` merges both in the
order `memory.py` uses: record id, then purpose.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Table, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from bastionpay.crypto.kek import WrappedKey
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.vault.interfaces import DekConflict, DekRow, Purpose, Reencrypted, SealedRecord
from bastionpay.vault.models import Card, Cvc, DataKey

KEYS: Final[Table] = DataKey.__table__  # type: ignore[assignment]
CARDS: Final[Table] = Card.__table__  # type: ignore[assignment]
CVCS: Final[Table] = Cvc.__table__  # type: ignore[assignment]


def rowcount(result: object) -> int:
    """Rows an UPDATE matched (`CursorResult.rowcount`; the typed `Result` does not expose it)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _row(data: Any) -> DekRow:
    wrapped = None
    if data.wrapped is not None and data.kek_version is not None and data.kek_backend:
        wrapped = WrappedKey(data.kek_backend, int(data.kek_version), bytes(data.wrapped))
    return DekRow(
        merchant_id=data.merchant_id,
        version=int(data.version),
        wrapped=wrapped,
        created_at=int(data.created_at),
        destroyed_at=None if data.destroyed_at is None else int(data.destroyed_at),
        encryptions=int(data.encryptions),
    )


class SqlKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert_dek(self, row: DekRow) -> None:
        values: dict[str, Any] = {
            "merchant_id": row.merchant_id,
            "version": row.version,
            "kek_backend": row.wrapped.backend if row.wrapped else None,
            "kek_version": row.wrapped.kek_version if row.wrapped else None,
            "wrapped": row.wrapped.blob if row.wrapped else None,
            "created_at": row.created_at,
            "destroyed_at": row.destroyed_at,
            "encryptions": row.encryptions,
        }
        try:
            with unit_of_work(self._db, write=True) as session:
                session.execute(insert(KEYS).values(**values))
        except IntegrityError:
            raise DekConflict("data key version exists") from None

    def get_dek(self, merchant_id: str, version: int) -> DekRow | None:
        with unit_of_work(self._db, write=False) as session:
            found = session.execute(
                select(KEYS).where(KEYS.c.merchant_id == merchant_id, KEYS.c.version == version)
            ).first()
        return None if found is None else _row(found)

    def latest_dek(self, merchant_id: str) -> DekRow | None:
        with unit_of_work(self._db, write=False) as session:
            found = session.execute(
                select(KEYS)
                .where(KEYS.c.merchant_id == merchant_id)
                .order_by(KEYS.c.version.desc())
                .limit(1)
            ).first()
        return None if found is None else _row(found)

    def list_deks(self, merchant_id: str | None = None) -> list[DekRow]:
        query = select(KEYS).order_by(KEYS.c.merchant_id, KEYS.c.version)
        if merchant_id is not None:
            query = query.where(KEYS.c.merchant_id == merchant_id)
        with unit_of_work(self._db, write=False) as session:
            return [_row(found) for found in session.execute(query)]

    def deks_not_under(self, kek_version: int, *, limit: int) -> list[DekRow]:
        query = (
            select(KEYS)
            .where(KEYS.c.wrapped.is_not(None), KEYS.c.kek_version != kek_version)
            .order_by(KEYS.c.merchant_id, KEYS.c.version)
            .limit(limit)
        )
        with unit_of_work(self._db, write=False) as session:
            return [_row(found) for found in session.execute(query)]

    def count_live_by_kek_version(self) -> dict[int, int]:
        query = (
            select(KEYS.c.kek_version, func.count())
            .where(KEYS.c.wrapped.is_not(None))
            .group_by(KEYS.c.kek_version)
        )
        with unit_of_work(self._db, write=False) as session:
            return {int(version): int(count) for version, count in session.execute(query)}

    def replace_wrapped(
        self, merchant_id: str, version: int, *, old: WrappedKey, new: WrappedKey
    ) -> bool:
        statement = (
            update(KEYS)
            .where(
                KEYS.c.merchant_id == merchant_id,
                KEYS.c.version == version,
                KEYS.c.kek_backend == old.backend,
                KEYS.c.kek_version == old.kek_version,
                KEYS.c.wrapped == old.blob,
            )
            .values(kek_backend=new.backend, kek_version=new.kek_version, wrapped=new.blob)
        )
        with unit_of_work(self._db, write=True) as session:
            return rowcount(session.execute(statement)) == 1

    def reserve_encryptions(self, merchant_id: str, version: int, count: int) -> int:
        if count < 1:
            raise ValueError("reserve at least one encryption")
        statement = (
            update(KEYS)
            .where(KEYS.c.merchant_id == merchant_id, KEYS.c.version == version)
            .values(encryptions=KEYS.c.encryptions + count)
            .returning(KEYS.c.encryptions)
        )
        with unit_of_work(self._db, write=True) as session:
            total = session.execute(statement).scalar_one_or_none()
        if total is None:
            raise KeyError(f"no data key v{version} for {merchant_id}")
        return int(total)

    def mark_destroyed(self, merchant_id: str, version: int, *, at: int) -> None:
        statement = (
            update(KEYS)
            .where(KEYS.c.merchant_id == merchant_id, KEYS.c.version == version)
            .values(kek_backend=None, kek_version=None, wrapped=None, destroyed_at=at)
        )
        with unit_of_work(self._db, write=True) as session:
            if rowcount(session.execute(statement)) != 1:
                raise KeyError(f"no data key v{version} for {merchant_id}")


class SqlRecordStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, merchant_id: str, record_id: str, purpose: Purpose) -> SealedRecord | None:
        if purpose is Purpose.PAN:
            query = select(CARDS.c.dek_version, CARDS.c.pan_ciphertext).where(
                CARDS.c.merchant_id == merchant_id, CARDS.c.id == record_id
            )
        else:
            query = select(CVCS.c.dek_version, CVCS.c.ciphertext).where(
                CVCS.c.merchant_id == merchant_id, CVCS.c.card_id == record_id
            )
        with unit_of_work(self._db, write=False) as session:
            found = session.execute(query).first()
        if found is None:
            return None
        return SealedRecord(merchant_id, record_id, purpose, int(found[0]), bytes(found[1]))

    def count_by_dek_version(self, merchant_id: str | None = None) -> dict[tuple[str, int], int]:
        counts: dict[tuple[str, int], int] = {}
        with unit_of_work(self._db, write=False) as session:
            for table in (CARDS, CVCS):
                query = select(table.c.merchant_id, table.c.dek_version, func.count()).group_by(
                    table.c.merchant_id, table.c.dek_version
                )
                if merchant_id is not None:
                    query = query.where(table.c.merchant_id == merchant_id)
                for merchant, version, count in session.execute(query):
                    key = (str(merchant), int(version))
                    counts[key] = counts.get(key, 0) + int(count)
        return counts

    def records_under(
        self, merchant_id: str, dek_version: int, *, limit: int
    ) -> list[SealedRecord]:
        pans = (
            select(CARDS.c.id, CARDS.c.pan_ciphertext)
            .where(CARDS.c.merchant_id == merchant_id, CARDS.c.dek_version == dek_version)
            .order_by(CARDS.c.id)
            .limit(limit)
        )
        cvcs = (
            select(CVCS.c.card_id, CVCS.c.ciphertext)
            .where(CVCS.c.merchant_id == merchant_id, CVCS.c.dek_version == dek_version)
            .order_by(CVCS.c.card_id)
            .limit(limit)
        )
        found: list[SealedRecord] = []
        with unit_of_work(self._db, write=False) as session:
            for query, purpose in ((pans, Purpose.PAN), (cvcs, Purpose.CVC)):
                found.extend(
                    SealedRecord(merchant_id, str(record_id), purpose, dek_version, bytes(blob))
                    for record_id, blob in session.execute(query)
                )
        found.sort(key=lambda record: (record.record_id, record.purpose.value))
        return found[:limit]

    def replace_batch(self, updates: list[Reencrypted]) -> int:
        applied = 0
        with unit_of_work(self._db, write=True) as session:
            for change in updates:
                old = change.old
                if old.purpose is Purpose.PAN:
                    statement = (
                        update(CARDS)
                        .where(
                            and_(
                                CARDS.c.merchant_id == old.merchant_id,
                                CARDS.c.id == old.record_id,
                                CARDS.c.pan_ciphertext == old.ciphertext,
                            )
                        )
                        .values(dek_version=change.dek_version, pan_ciphertext=change.ciphertext)
                    )
                else:
                    statement = (
                        update(CVCS)
                        .where(
                            and_(
                                CVCS.c.merchant_id == old.merchant_id,
                                CVCS.c.card_id == old.record_id,
                                CVCS.c.ciphertext == old.ciphertext,
                            )
                        )
                        .values(dek_version=change.dek_version, ciphertext=change.ciphertext)
                    )
                # Zero rows: deleted (a CVC after authorization) or rewritten meanwhile; skip it.
                applied += rowcount(session.execute(statement))
        return applied

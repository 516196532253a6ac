"""The vault database handle: `bastionpay.db`'s engine with the vault's SQLite hardening.

SQLite keeps the bytes of a deleted row in the file's free pages until they are reused, so a
"deleted" CVC ciphertext could still be read out of `vault.db` (C1: after deletion nothing remains,
not even encrypted). `PRAGMA secure_delete=ON` makes SQLite overwrite deleted content with zeros;
`checkpoint_wal()` then folds the write-ahead log into the database and truncates it, so the WAL
does not keep old page images either (the purge job calls it after deleting CVCs).

PostgreSQL keeps dead tuples until VACUUM and old page images in WAL segments until they are
recycled; there the guarantee rests on the ciphertext being AES-256-GCM under the merchant's data
key, and on the database's own storage being encrypted and access-controlled (docs/vault.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from bastionpay.db.engine import Database


def open_database(url: str) -> Database:
    db = Database(url)
    if db.is_sqlite:

        @event.listens_for(db.engine, "connect")
        def _secure_delete(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

    return db


def checkpoint_wal(db: Database) -> None:
    """SQLite: copy the WAL into the database file and truncate it (no-op on PostgreSQL)."""
    if not db.is_sqlite:
        return
    with db.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

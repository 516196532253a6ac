"""Unit of work: one transaction per request or command (issue 2, item 4).

Services receive the session and never commit; the unit of work commits once at the end, or rolls
back everything if anything raised — so a payment's state, ledger postings and stored idempotent
response are all written or none is (SECURITY-REQUIREMENTS P2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.orm import Session

from bastionpay.db.engine import Database


@contextlib.contextmanager
def unit_of_work(db: Database, *, write: bool) -> Iterator[Session]:
    lock = db.write_lock if write else None
    if lock is not None:
        lock.acquire()
    try:
        engine = db.write_engine if write else db.engine
        with (
            Session(bind=engine, expire_on_commit=False, autoflush=True) as session,
            session.begin(),
        ):
            yield session
    finally:
        if lock is not None:
            lock.release()

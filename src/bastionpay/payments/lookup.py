"""Tenant-scoped lookups: one merchant's ids are 404 to every other (SECURITY-REQUIREMENTS I5)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.kernel.errors import ResourceMissing

T = TypeVar("T")


def get_owned(
    session: Session,
    model: type[T],
    kind: str,
    object_id: str,
    *,
    merchant_id: str,
    livemode: bool,
    param: str | None = "id",
    for_update: bool = False,
) -> T:
    m: Any = model
    query = select(model).where(
        m.id == object_id, m.merchant_id == merchant_id, m.livemode == livemode
    )
    if for_update:
        # Row lock on PostgreSQL so concurrent captures/refunds serialize on the object;
        # SQLite write transactions are already serialized (BEGIN IMMEDIATE).
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise ResourceMissing(kind, object_id, param=param)
    return found

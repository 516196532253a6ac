"""Stripe cursor pagination: newest first, `limit` 1–100, `starting_after` / `ending_before`.

Cursors are object ids, resolved to the internal monotonically increasing `pk` of the same merchant;
an id from another merchant is 404, so a cursor cannot probe for other tenants' objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from bastionpay.api.params import ListParams
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing

MAX_LIMIT = 100


def _cursor_pk(
    session: Session,
    columns: tuple[Any, Any, str],
    scope: Sequence[ColumnElement[bool]],
    object_id: str,
    param: str,
) -> int:
    order, ident, kind = columns
    pk = session.scalar(select(order).where(ident == object_id, *scope))
    if pk is None:
        raise ResourceMissing(kind, object_id, param=param)
    return int(pk)


def paginate(
    session: Session,
    model: Any,
    scope: Sequence[ColumnElement[bool]],
    params: ListParams,
    url: str,
    render: Callable[[Any], dict[str, Any]],
    *,
    order_by: Any = None,
    id_column: Any = None,
) -> dict[str, Any]:
    """`order_by` (default `model.pk`) must increase with age; `id_column` (default `model.id`)
    holds the public ids used as cursors."""
    order = order_by if order_by is not None else model.pk
    ident = id_column if id_column is not None else model.id
    columns = (order, ident, model.__tablename__.rstrip("s"))
    if not 1 <= params.limit <= MAX_LIMIT:
        raise InvalidRequestError(
            f"Invalid limit: must be between 1 and {MAX_LIMIT}",
            code="parameter_invalid_integer",
            param="limit",
        )
    if params.starting_after and params.ending_before:
        raise InvalidRequestError(
            "You may only specify one of these parameters: starting_after, ending_before.",
            param="starting_after",
        )
    query = select(model).where(*scope)
    if params.ending_before:
        pk = _cursor_pk(session, columns, scope, params.ending_before, "ending_before")
        rows = list(
            session.scalars(query.where(order > pk).order_by(order.asc()).limit(params.limit + 1))
        )
        has_more = len(rows) > params.limit
        rows = list(reversed(rows[: params.limit]))
    else:
        if params.starting_after:
            pk = _cursor_pk(session, columns, scope, params.starting_after, "starting_after")
            query = query.where(order < pk)
        rows = list(session.scalars(query.order_by(order.desc()).limit(params.limit + 1)))
        has_more = len(rows) > params.limit
        rows = rows[: params.limit]
    return {
        "object": "list",
        "data": [render(row) for row in rows],
        "has_more": has_more,
        "url": url,
    }

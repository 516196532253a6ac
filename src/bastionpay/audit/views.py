"""`GET /v1/audit_events`: a merchant's own audit trail. Reading it is itself audited (L1)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bastionpay.api.pagination import paginate
from bastionpay.api.params import FormInt, FormStr, ListParams
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.audit.models import AuditEntry
from bastionpay.merchants import permissions as perm


class ListAuditEvents(ListParams):
    action: FormStr | None = Field(default=None, max_length=64)
    outcome: FormStr | None = Field(default=None, max_length=16)
    target: FormStr | None = Field(default=None, max_length=64)
    created_gte: FormInt | None = None
    created_lt: FormInt | None = None


def render(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.event_id,
        "object": "audit_event",
        "seq": entry.seq,
        "created": entry.occurred_us // 1_000_000,
        "occurred_us": entry.occurred_us,
        "livemode": entry.livemode,
        "actor": {"type": entry.actor_type, "id": entry.actor_id},
        "action": entry.action,
        "outcome": entry.outcome,
        "target": {"type": entry.target_type, "id": entry.target_id},
        "origin": {
            "ip": entry.origin_ip,
            "user_agent": entry.user_agent,
            "request_id": entry.request_id,
        },
        "details": entry.details,
        "leaf_hash": entry.leaf_hash,
    }


def list_events(call: Call) -> Result:
    """Sealed entries only (the worker seals every second): each carries its place in the log."""
    p: ListAuditEvents = call.params
    scope: list[Any] = [
        AuditEntry.merchant_id == call.caller.merchant_id,
        AuditEntry.livemode == call.caller.livemode,
    ]
    if p.action is not None:
        scope.append(AuditEntry.action == p.action)
    if p.outcome is not None:
        scope.append(AuditEntry.outcome == p.outcome)
    if p.target is not None:
        scope.append(AuditEntry.target_id == p.target)
    if p.created_gte is not None:
        scope.append(AuditEntry.occurred_us >= p.created_gte * 1_000_000)
    if p.created_lt is not None:
        scope.append(AuditEntry.occurred_us < p.created_lt * 1_000_000)
    return Result(
        paginate(
            call.session,
            AuditEntry,
            scope,
            p,
            "/v1/audit_events",
            render,
            order_by=AuditEntry.seq,
            id_column=AuditEntry.event_id,
        )
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/audit_events",
        perm.AUDIT_READ,
        ListAuditEvents,
        list_events,
        audit_action="audit.log.read",
    ),
]

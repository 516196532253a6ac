"""Endpoint declarations. Every route names its permission (SECURITY-REQUIREMENTS I5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bastionpay.api.params import Params
from bastionpay.audit.events import Action
from bastionpay.config import Settings
from bastionpay.edge.shedding import Priority
from bastionpay.merchants.service import Caller
from bastionpay.payments.context import PaymentContext

if TYPE_CHECKING:
    from bastionpay.runtime import Runtime


@dataclass(frozen=True)
class Result:
    body: dict[str, Any]
    status: int = 200


@dataclass(frozen=True)
class Call:
    session: Session
    caller: Caller
    ctx: PaymentContext
    params: Any
    path: dict[str, str]
    expand: list[str] = field(default_factory=list)
    # The process's keys and settings, for the few handlers that need more than the payment
    # context (issuing API keys, invitations).
    runtime: Runtime | None = None

    def platform(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("this handler needs the runtime")
        return self.runtime


Handler = Callable[[Call], Result]
# Step-up (I3): given the validated parameters, is this request sensitive enough that an operator
# must have proven a second factor within the last few minutes?
StepUpRule = Callable[[Any, Settings], bool]


def always(_params: Any, _settings: Settings) -> bool:
    return True


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: str
    params: type[Params]
    handler: Handler
    # Recorded in the audit log with the request's own unit of work (L1); a reading endpoint that
    # is audited (reading the audit log itself) therefore runs in a write transaction.
    audit_action: Action | None = None
    # Load shedding (edge issue, item 4). None: lists (collection GETs) are low priority, the
    # rest normal; payment confirmations, captures and refunds declare `CRITICAL`.
    priority: Priority | None = None
    # Sensitive actions (I3): operators' sessions need a fresh second factor. API keys and OAuth
    # apps are machine credentials bounded by their permissions and scopes instead.
    step_up: StepUpRule | None = None
    # Platform-wide operations (vault key management): no merchant account is involved, so a
    # platform operator need not name one. Only platform permissions may guard them.
    platform: bool = False
    # Top-level response fields shown once (a new secret): never stored for idempotent replay (I7).
    secret_fields: tuple[str, ...] = ()

    @property
    def admission_priority(self) -> Priority:
        if self.priority is not None:
            return self.priority
        if self.method == "GET" and not self.path.endswith("}"):
            return Priority.LOW
        return Priority.NORMAL

    @property
    def writes(self) -> bool:
        return self.method in ("POST", "DELETE") or self.audit_action is not None

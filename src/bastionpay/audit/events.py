"""Recording audit events (SECURITY-REQUIREMENTS L1; PCI DSS 10.2.1–10.2.2).

`record` inserts into `audit_staged` inside the caller's unit of work, so an action and its audit
record commit together or not at all: if the audit insert fails, the action fails (fail closed, P3).
Events carry who (never a secret: key ids, not keys), what (`domain.object.verb`), when, outcome,
origin and target.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from bastionpay.audit.models import AuditStaged
from bastionpay.kernel.ids import new_id
from bastionpay.kernel.pan import mask_pans
from bastionpay.observability.metrics import METRICS

log = logging.getLogger("bastionpay.audit")

Outcome = Literal["success", "failure", "denied"]
ActorType = Literal["api_key", "user", "oauth_client", "system"]

# The action vocabulary: typed names, so a typo is a type error rather than a silent new action.
Action = Literal[
    "merchant.account.create",
    "merchant.api_key.create",
    "merchant.api_key.revoke",
    "merchant.api_key.restrict_ips",
    "merchant.account.rate_limits",
    "merchant.account.risk_settings",
    "identity.authentication.fail",
    "payments.payment_intent.create",
    "payments.payment_intent.confirm",
    "payments.payment_intent.capture",
    "payments.payment_intent.cancel",
    "payments.payment_intent.authenticate",  # 3-D Secure (issue 4, item 7)
    "payments.payment_intent.resolve",  # a timed-out payment settled by the janitor (item 6)
    "payments.refund.create",
    # Disputes (chargebacks, issue 7): opened and resolved by the (simulated) card network,
    # answered by the merchant.
    "disputes.dispute.create",
    "disputes.dispute.update",
    "disputes.dispute.close",
    "disputes.dispute.resolve",
    "audit.log.read",
    "audit.log.export",
    "audit.log.verify",
    "audit.checkpoint.create",
    "risk.review.approve",
    "risk.review.reject",
    "risk.rule.create",
    "risk.rule.update",
    "risk.rule.delete",
    "risk.list.update",
    "risk.model.activate",
    # Identity (issue 5): every authentication event is audited (L1, PCI DSS 10.2.1.4–10.2.1.5).
    "identity.user.create",
    "identity.user.disable",
    "identity.user.enable",
    "identity.user.role_change",
    "identity.password.change",
    "identity.login.success",
    "identity.login.fail",
    "identity.login.locked",
    "identity.mfa.enroll",
    "identity.mfa.remove",
    "identity.mfa.verify",
    "identity.mfa.fail",
    "identity.recovery_codes.generate",
    "identity.recovery_code.use",
    "identity.session.revoke",
    "identity.session.expire",
    "identity.logout",
    "identity.logout_everywhere",
    "identity.step_up.required",
    "identity.invitation.create",
    "identity.invitation.accept",
    "identity.invitation.revoke",
    "identity.authorization.deny",
    # OAuth 2.0 (issue 5, item 6).
    "oauth.client.create",
    "oauth.client.revoke",
    "oauth.consent.grant",
    "oauth.consent.deny",
    "oauth.token.issue",
    "oauth.token.refresh",
    "oauth.token.revoke",
    "oauth.token.reuse_detected",
    "oauth.authorization.fail",
    "oauth.signing_key.rotate",
    # Key management in the vault, asked for by an operator through the api (C4, issue 4).
    "vault.keys.status",
    "vault.keys.rotate",
    "vault.keys.retire",
]
ACTIONS: Final = frozenset(Action.__args__)  # type: ignore[attr-defined]
_STAGED = cast(Table, AuditStaged.__table__)


@dataclass(frozen=True)
class Origin:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM_ORIGIN: Final = Origin()


@dataclass(frozen=True)
class AuditEvent:
    actor_type: ActorType
    actor_id: str
    action: Action
    outcome: Outcome
    merchant_id: str | None = None
    livemode: bool | None = None
    target_type: str | None = None
    target_id: str | None = None
    origin: Origin = SYSTEM_ORIGIN
    details: dict[str, Any] = field(default_factory=dict)


def record(session: Session, event: AuditEvent, *, occurred_us: int | None = None) -> str:
    """Stage `event` in the caller's transaction; returns its id (`aud_…`)."""
    if event.action not in ACTIONS:
        raise ValueError(f"unknown audit action {event.action!r}")
    event_id = new_id("aud")
    try:
        _insert(session, event, event_id, occurred_us)
    except Exception:
        # The caller's action fails with it (P3); the failure itself is counted and logged (L3).
        METRICS.audit_failures.inc()
        log.exception("audit event could not be recorded: %s", event.action)
        raise
    METRICS.audit_appends.labels(event.outcome).inc()
    return event_id


def _scrub(value: Any) -> Any:
    """Mask card numbers in free text before it is stored (C5): the audit log records request
    paths, user agents and details, any of which a client can fill with a card number."""
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, dict):
        return {_scrub(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def _insert(session: Session, event: AuditEvent, event_id: str, occurred_us: int | None) -> None:
    session.execute(
        insert(_STAGED).values(
            event_id=event_id,
            occurred_us=occurred_us if occurred_us is not None else time.time_ns() // 1000,
            actor_type=event.actor_type,
            actor_id=event.actor_id,
            merchant_id=event.merchant_id,
            livemode=event.livemode,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            outcome=event.outcome,
            origin_ip=event.origin.ip,
            user_agent=_scrub(event.origin.user_agent or "")[:256] or None,
            request_id=event.origin.request_id,
            details=_scrub(event.details),
        )
    )

"""Disable operator accounts unused for `inactive_account_days` (90) (I7; PCI DSS 8.2.6).

"Unused" is measured from the last successful password login, or from creation for an account
that never logged in, or from the last time an administrator re-enabled it (`enabled_at`), so a
re-enabled account gets a full period to log in. Each disabled account is audited
(`identity.user.disable`, reason `inactive`) and its sessions end (generation bumped, I4).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import func, or_, select

from bastionpay.audit import events as audit
from bastionpay.db.uow import unit_of_work
from bastionpay.identity import accounts
from bastionpay.identity.models import User
from bastionpay.runtime import Runtime

DAY_SECONDS: Final = 86_400
# Bounded work per run (a limit on everything): a backlog drains over a few worker cycles.
BATCH: Final = 500


def disable_inactive_users(runtime: Runtime) -> int:
    """Disable this run's batch of inactive active accounts; returns how many were disabled."""
    now = runtime.clock.now()
    cutoff = now - runtime.settings.inactive_account_days * DAY_SECONDS
    with unit_of_work(runtime.db, write=True) as session:
        stale = list(
            session.scalars(
                select(User)
                .where(
                    User.status == "active",
                    func.coalesce(User.last_login_at, User.created) < cutoff,
                    or_(User.enabled_at.is_(None), User.enabled_at < cutoff),
                )
                .order_by(User.pk)
                .limit(BATCH)
            )
        )
        for user in stale:
            last_used = user.last_login_at
            accounts.disable_user(session, user.id, now=now, reason="inactive")
            audit.record(
                session,
                accounts.user_event(
                    "identity.user.disable",
                    user,
                    actor_type="system",
                    actor_id="worker",
                    details={
                        "reason": "inactive",
                        "last_login_at": last_used,
                        "inactive_days": runtime.settings.inactive_account_days,
                    },
                ),
            )
    return len(stale)

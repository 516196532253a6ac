"""Step-up: a sensitive action needs a second factor proven minutes ago, not at login (I3).

Large refunds, API key creation and rotation, role changes and data exports call this before they
act (issue 5, item 3). `UserSession.mfa_at` is set by `identity.sessions.record_mfa` whenever the
user proves a factor (at login or on the step-up page).
"""

from __future__ import annotations

from bastionpay.identity.models import UserSession
from bastionpay.kernel.errors import StepUpRequired

# Several api processes stamp `mfa_at` from their own clocks; a few seconds of skew between them
# must not make a fresh proof look like a forged one.
CLOCK_SKEW_SECONDS = 5


def require_step_up(user_session: UserSession, *, now: int, max_age: int) -> None:
    """Raise `StepUpRequired` unless the session proved a factor within `max_age` seconds.

    A proof dated further in the future than clock skew explains does not count: fail closed
    (P3). Only a fully authenticated session qualifies; a password-only session never does.
    """
    proven = user_session.mfa_at
    if (
        user_session.stage != "active"
        or user_session.revoked_at is not None
        or proven is None
        or proven > now + CLOCK_SKEW_SECONDS
        or now - proven > max_age
    ):
        raise StepUpRequired(max_age)

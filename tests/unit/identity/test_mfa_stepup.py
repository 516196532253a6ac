"""Step-up (issue 5 "Done when": step-up enforcement; SECURITY-REQUIREMENTS I3): a sensitive
action needs a second factor proven within `max_age` seconds by a fully authenticated session."""

from __future__ import annotations

import pytest

from bastionpay.identity.mfa.stepup import CLOCK_SKEW_SECONDS, require_step_up
from bastionpay.identity.models import UserSession
from bastionpay.kernel.errors import PermissionDenied, StepUpRequired

NOW = 1_800_000_000
MAX_AGE = 300


def session_(
    *, mfa_at: int | None, stage: str = "active", revoked_at: int | None = None
) -> UserSession:
    return UserSession(
        id_hash="0" * 64,
        user_id="usr_test",
        stage=stage,
        generation=0,
        created=NOW - 3600,
        last_seen=NOW,
        expires_at=NOW + 3600,
        mfa_at=mfa_at,
        revoked_at=revoked_at,
    )


@pytest.mark.parametrize("age", [0, 1, MAX_AGE - 1, MAX_AGE])
def test_a_fresh_proof_passes(age: int) -> None:
    require_step_up(session_(mfa_at=NOW - age), now=NOW, max_age=MAX_AGE)


@pytest.mark.parametrize("age", [MAX_AGE + 1, 3600, NOW])
def test_a_stale_proof_requires_step_up(age: int) -> None:
    with pytest.raises(StepUpRequired) as raised:
        require_step_up(session_(mfa_at=NOW - age), now=NOW, max_age=MAX_AGE)
    error = raised.value
    assert isinstance(error, PermissionDenied)
    assert error.http_status == 403
    assert error.code == "step_up_required"
    assert "5 minutes" in error.message


def test_no_proof_requires_step_up() -> None:
    with pytest.raises(StepUpRequired):
        require_step_up(session_(mfa_at=None), now=NOW, max_age=MAX_AGE)


def test_a_password_only_or_revoked_session_never_qualifies() -> None:
    with pytest.raises(StepUpRequired):
        require_step_up(session_(mfa_at=NOW, stage="password"), now=NOW, max_age=MAX_AGE)
    with pytest.raises(StepUpRequired):
        require_step_up(session_(mfa_at=NOW, revoked_at=NOW - 1), now=NOW, max_age=MAX_AGE)


def test_a_proof_from_the_future_fails_closed() -> None:
    require_step_up(session_(mfa_at=NOW + CLOCK_SKEW_SECONDS), now=NOW, max_age=MAX_AGE)
    with pytest.raises(StepUpRequired):
        require_step_up(session_(mfa_at=NOW + CLOCK_SKEW_SECONDS + 1), now=NOW, max_age=MAX_AGE)


def test_the_window_follows_max_age() -> None:
    require_step_up(session_(mfa_at=NOW - 100), now=NOW, max_age=120)
    with pytest.raises(StepUpRequired):
        require_step_up(session_(mfa_at=NOW - 100), now=NOW, max_age=60)

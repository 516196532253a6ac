"""MFA (issue 5, item 3; SECURITY-REQUIREMENTS I3, L1): TOTP, recovery codes, factor bookkeeping.

WebAuthn lives in test_identity_mfa_webauthn.py; step-up in tests/unit/identity/test_stepup.py.
Each failure is caught inside its unit of work, as the web layer must do, so the failure's audit
event commits (L1) and can be checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.identity.keys import SealBroken
from bastionpay.identity.mfa import MFA_FAILED_MESSAGE, MfaFailed, factors, recovery, totp
from bastionpay.identity.models import RecoveryCode, TotpCredential, User
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.runtime import Runtime

# 10 s into a 30 s step, so ±1 step arithmetic below is unambiguous.
T0 = 1_800_000_010
STEP = 30


def make_user(runtime: Runtime) -> str:
    """A bare User row (Part A's create_user hashes a password; MFA needs none)."""
    uid = new_id("usr")
    with unit_of_work(runtime.db, write=True) as session:
        session.add(
            User(
                id=uid,
                email=f"{uid.lower()}@example.test",
                merchant_id=None,
                role="platform_admin",
                status="active",
                password_hash="placeholder-not-a-hash",
                password_history=[],
                password_changed_at=0,
                failed_logins=0,
                mfa_enrolled=False,
                created=0,
                security_generation=0,
            )
        )
    return uid


def load(session: Session, uid: str) -> User:
    user = session.scalar(select(User).where(User.id == uid))
    assert user is not None
    return user


def attempt(runtime: Runtime, uid: str, action: Callable[[Session, User], Any]) -> MfaFailed | None:
    """Run `action`; return its MfaFailed, committing the transaction either way (L1)."""
    with unit_of_work(runtime.db, write=True) as session:
        try:
            action(session, load(session, uid))
        except MfaFailed as exc:
            return exc
    return None


def audit_rows(runtime: Runtime, uid: str) -> list[AuditStaged]:
    with unit_of_work(runtime.db, write=False) as session:
        return list(
            session.scalars(
                select(AuditStaged).where(AuditStaged.actor_id == uid).order_by(AuditStaged.pk)
            )
        )


def code_at(seed: str, when: int) -> str:
    return pyotp.TOTP(seed).at(when)


def enrolled_totp(runtime: Runtime, uid: str, *, at: int = T0) -> str:
    """Enrol and confirm TOTP at `at` (which burns that step); returns the seed."""
    with unit_of_work(runtime.db, write=True) as session:
        user = load(session, uid)
        enrollment = totp.begin_enrollment(
            session, runtime.identity_keys, user, now=at, issuer="BastionPay"
        )
        totp.confirm_enrollment(
            session,
            runtime.identity_keys,
            user,
            enrollment.credential_id,
            code_at(enrollment.secret_b32, at),
            now=at,
        )
    return enrollment.secret_b32


def verify_totp(runtime: Runtime, uid: str, code: str, now: int) -> MfaFailed | None:
    return attempt(
        runtime, uid, lambda s, u: totp.verify(s, runtime.identity_keys, u, code, now=now)
    )


# -- TOTP ----


def test_totp_enrollment_is_unconfirmed_until_a_valid_code_and_the_seed_is_sealed(
    runtime: Runtime,
) -> None:
    uid, other = make_user(runtime), make_user(runtime)
    keys = runtime.identity_keys
    with unit_of_work(runtime.db, write=True) as session:
        user = load(session, uid)
        enrollment = totp.begin_enrollment(session, keys, user, now=T0, issuer="BastionPay")
        email = user.email
    seed = enrollment.secret_b32
    # 160-bit seed, base32, for authenticator apps: SHA-1, 6 digits, 30 s (I3).
    assert re.fullmatch(r"[A-Z2-7]{32}", seed)
    assert seed not in repr(enrollment)
    parsed = pyotp.parse_uri(enrollment.provisioning_uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == seed
    assert parsed.issuer == "BastionPay"
    assert parsed.name == email
    assert parsed.digits == 6
    assert parsed.interval == 30
    # The Key URI format's defaults (SHA1, 6, 30) are left implicit, which every app reads.
    assert parsed.digest().name == "sha1"

    # At rest only an AES-GCM seal bound to the user: the seed does not appear, and the
    # ciphertext does not open under another user's id.
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(TotpCredential).where(TotpCredential.user_id == uid))
        assert row is not None
        assert not row.confirmed
        assert seed.encode() not in row.secret_ciphertext
        assert keys.seeds.open(uid, row.secret_ciphertext) == seed.encode()
        with pytest.raises(SealBroken):
            keys.seeds.open(other, row.secret_ciphertext)
        assert not load(session, uid).mfa_enrolled
        assert factors(session, load(session, uid)).totp is False

    # An unconfirmed enrolment proves nothing at login.
    assert verify_totp(runtime, uid, code_at(seed, T0), T0) is not None
    # A wrong code does not confirm it.
    wrong = f"{(int(code_at(seed, T0)) + 1) % 1_000_000:06d}"
    confirm_wrong = attempt(
        runtime,
        uid,
        lambda s, u: totp.confirm_enrollment(s, keys, u, enrollment.credential_id, wrong, now=T0),
    )
    assert confirm_wrong is not None
    # The right code does; the first confirmed factor enrols the user (I3: MFA mandatory).
    assert (
        attempt(
            runtime,
            uid,
            lambda s, u: totp.confirm_enrollment(
                s, keys, u, enrollment.credential_id, code_at(seed, T0), now=T0
            ),
        )
        is None
    )
    with unit_of_work(runtime.db, write=False) as session:
        user = load(session, uid)
        assert user.mfa_enrolled
        assert factors(session, user).totp is True
    actions = [(r.action, r.outcome, r.details.get("factor")) for r in audit_rows(runtime, uid)]
    assert ("identity.mfa.enroll", "success", "totp") in actions
    assert actions.count(("identity.mfa.fail", "failure", "totp")) == 2


def test_totp_code_is_accepted_once_replay_rejected(runtime: Runtime) -> None:
    """Done when: "TOTP replay rejection" (I3: a code works once; RFC 6238 §5.2)."""
    uid = make_user(runtime)
    seed = enrolled_totp(runtime, uid, at=T0)
    # The confirming code's step is already burnt.
    assert verify_totp(runtime, uid, code_at(seed, T0), T0 + 1) is not None

    later = T0 + 3 * STEP
    code = code_at(seed, later)
    assert verify_totp(runtime, uid, code, later) is None
    # Same code, same step, a second later: refused.
    replay = verify_totp(runtime, uid, code, later + 1)
    assert replay is not None
    # Same code one step later: still inside the ±1 window, but its step is burnt: refused.
    assert verify_totp(runtime, uid, code, later + STEP) is not None
    # An older step's code, even inside the window, is refused once a newer one was accepted.
    assert verify_totp(runtime, uid, code_at(seed, later - STEP), later) is not None
    # The next step's code works.
    assert verify_totp(runtime, uid, code_at(seed, later + STEP), later + STEP) is None

    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(TotpCredential).where(TotpCredential.user_id == uid))
        assert row is not None
        assert row.last_step == (later + STEP) // STEP
    rows = audit_rows(runtime, uid)
    reasons = [r.details.get("reason") for r in rows if r.action == "identity.mfa.fail"]
    assert reasons == ["replayed"] * 4
    assert sum(r.action == "identity.mfa.verify" for r in rows) == 2
    # The code itself is never in an audit record (L3).
    dumped = json.dumps([r.details for r in rows])
    assert code not in dumped
    assert seed not in dumped
    assert replay.message == MFA_FAILED_MESSAGE


def test_totp_accepts_one_step_of_drift_and_no_more(runtime: Runtime) -> None:
    uid = make_user(runtime)
    seed = enrolled_totp(runtime, uid, at=T0)
    now = T0 + 10 * STEP
    # Two steps behind: refused. One behind: accepted.
    assert verify_totp(runtime, uid, code_at(seed, now - 2 * STEP), now) is not None
    assert verify_totp(runtime, uid, code_at(seed, now - STEP), now) is None
    # Two steps ahead: refused. One ahead: accepted (its step is later than the burnt one).
    assert verify_totp(runtime, uid, code_at(seed, now + 2 * STEP), now) is not None
    assert verify_totp(runtime, uid, code_at(seed, now + STEP), now) is None
    # The current step is now ≤ the last accepted one: refused.
    assert verify_totp(runtime, uid, code_at(seed, now), now) is not None


def test_totp_input_is_normalised_and_garbage_refused(runtime: Runtime) -> None:
    uid = make_user(runtime)
    seed = enrolled_totp(runtime, uid, at=T0)
    now = T0 + 5 * STEP
    code = code_at(seed, now)
    for garbage in ("", "12345", "1234567", "abcdef", "12345\u0661"):
        assert verify_totp(runtime, uid, garbage, now) is not None
    assert verify_totp(runtime, uid, f" {code[:3]} {code[3:]} ", now) is None


def test_totp_enrollment_expires_and_reenrolling_replaces_the_seed(runtime: Runtime) -> None:
    uid = make_user(runtime)
    keys = runtime.identity_keys
    old_seed = enrolled_totp(runtime, uid, at=T0)
    with unit_of_work(runtime.db, write=True) as session:
        stale = totp.begin_enrollment(
            session, keys, load(session, uid), now=T0, issuer="BastionPay"
        )
    late = T0 + totp.ENROLLMENT_TTL_SECONDS + 1
    assert (
        attempt(
            runtime,
            uid,
            lambda s, u: totp.confirm_enrollment(
                s, keys, u, stale.credential_id, code_at(stale.secret_b32, late), now=late
            ),
        )
        is not None
    )
    # The old app still works while a new enrolment is pending.
    assert verify_totp(runtime, uid, code_at(old_seed, late), late) is None
    new_seed = enrolled_totp(runtime, uid, at=late + STEP)
    with unit_of_work(runtime.db, write=False) as session:
        rows = list(session.scalars(select(TotpCredential).where(TotpCredential.user_id == uid)))
        assert [r.confirmed for r in rows] == [True]
    later = late + 5 * STEP
    assert verify_totp(runtime, uid, code_at(old_seed, later), later) is not None
    assert verify_totp(runtime, uid, code_at(new_seed, later), later) is None


def test_totp_unknown_user_without_factor_fails_the_same_way(runtime: Runtime) -> None:
    uid = make_user(runtime)
    failure = verify_totp(runtime, uid, "123456", T0)
    assert failure is not None
    assert failure.message == MFA_FAILED_MESSAGE
    assert failure.to_wire()["error"]["code"] == "mfa_failed"
    assert failure.http_status == 401


# -- recovery codes ----


def generate_codes(runtime: Runtime, uid: str, now: int = T0) -> list[str]:
    with unit_of_work(runtime.db, write=True) as session:
        return recovery.generate(session, runtime.identity_keys, load(session, uid), now=now)


def use_code(runtime: Runtime, uid: str, code: str, now: int = T0) -> MfaFailed | None:
    return attempt(
        runtime, uid, lambda s, u: recovery.use(s, runtime.identity_keys, u, code, now=now)
    )


def test_recovery_codes_are_strong_hashed_and_burn_after_one_use(runtime: Runtime) -> None:
    """Done when: "recovery-code burn" (I3: single-use hashed recovery codes)."""
    uid = make_user(runtime)
    codes = generate_codes(runtime, uid)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        # 10 base32 characters = 50 bits each.
        assert re.fullmatch(r"[a-z2-7]{5}-[a-z2-7]{5}", code)
    with unit_of_work(runtime.db, write=False) as session:
        stored = list(session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == uid)))
        assert len(stored) == 10
        hashes = {row.code_hash for row in stored}
        for code in codes:
            assert code not in hashes
            assert code.replace("-", "") not in hashes
            assert all(code.replace("-", "") not in h for h in hashes)
        assert factors(session, load(session, uid)).recovery_left == 10

    # Input is normalised: case, dashes and spaces do not matter.
    first = codes[0]
    assert use_code(runtime, uid, f"  {first[:5].upper()} {first[6:].upper()} ") is None
    # Burnt: the same code, in any spelling, is refused.
    assert use_code(runtime, uid, first) is not None
    assert use_code(runtime, uid, first.replace("-", "")) is not None
    assert use_code(runtime, uid, codes[1].replace("-", "")) is None
    with unit_of_work(runtime.db, write=False) as session:
        assert factors(session, load(session, uid)).recovery_left == 8

    rows = audit_rows(runtime, uid)
    uses = [r for r in rows if r.action == "identity.recovery_code.use"]
    assert [r.details["remaining"] for r in uses] == [9, 8]
    assert any(r.action == "identity.recovery_codes.generate" for r in rows)
    fails = [r for r in rows if r.action == "identity.mfa.fail"]
    assert {r.details["factor"] for r in fails} == {"recovery_code"}
    dumped = json.dumps([r.details for r in rows])
    for code in codes:
        assert code not in dumped
        assert code.replace("-", "") not in dumped


def test_regenerating_recovery_codes_replaces_all(runtime: Runtime) -> None:
    uid = make_user(runtime)
    old = generate_codes(runtime, uid)
    assert use_code(runtime, uid, old[0]) is None
    new = generate_codes(runtime, uid, now=T0 + 60)
    assert not set(old) & set(new)
    for code in old[1:4]:
        assert use_code(runtime, uid, code) is not None
    assert use_code(runtime, uid, new[0]) is None
    with unit_of_work(runtime.db, write=False) as session:
        assert factors(session, load(session, uid)).recovery_left == 9


def test_recovery_codes_belong_to_their_user(runtime: Runtime) -> None:
    alice, bob = make_user(runtime), make_user(runtime)
    alice_codes = generate_codes(runtime, alice)
    generate_codes(runtime, bob)
    assert use_code(runtime, bob, alice_codes[0]) is not None
    for garbage in ("", "abcde-fghi", "abcde-fghij-k", "01890-01890", "abcde_fghij"):
        assert use_code(runtime, alice, garbage) is not None
    assert use_code(runtime, alice, alice_codes[0]) is None


# -- factor bookkeeping ----


def test_the_last_factor_cannot_be_removed(runtime: Runtime) -> None:
    uid = make_user(runtime)
    enrolled_totp(runtime, uid)
    with unit_of_work(runtime.db, write=True) as session:
        user = load(session, uid)
        with pytest.raises(InvalidRequestError) as refused:
            totp.remove_totp(session, user)
        assert refused.value.code == "mfa_last_factor"
    with unit_of_work(runtime.db, write=False) as session:
        user = load(session, uid)
        assert factors(session, user).totp is True
        assert user.mfa_enrolled


def test_removing_a_missing_factor_is_a_404(runtime: Runtime) -> None:
    uid = make_user(runtime)
    with unit_of_work(runtime.db, write=True) as session, pytest.raises(ResourceMissing):
        totp.remove_totp(session, load(session, uid))


def test_a_disabled_user_cannot_use_totp(runtime: Runtime) -> None:
    uid = make_user(runtime)
    seed = enrolled_totp(runtime, uid)
    with unit_of_work(runtime.db, write=True) as session:
        load(session, uid).status = "disabled"
    now = T0 + 4 * STEP
    failure = verify_totp(runtime, uid, code_at(seed, now), now)
    assert failure is not None
    assert failure.message == MFA_FAILED_MESSAGE
    reasons = [r.details["reason"] for r in audit_rows(runtime, uid) if r.outcome == "failure"]
    assert reasons == ["user_inactive"]


def test_replay_check_is_made_by_the_database_not_a_stale_copy(runtime: Runtime) -> None:
    """Two requests racing with one code: the second's view of `last_step` is stale. The step is
    burnt by a conditional UPDATE, so the database, not the loaded row, decides (I3)."""
    uid = make_user(runtime)
    seed = enrolled_totp(runtime, uid, at=T0)
    now = T0 + 6 * STEP
    code = code_at(seed, now)

    def race(session: Session, user: User) -> None:
        loaded = session.scalar(select(TotpCredential).where(TotpCredential.user_id == uid))
        assert loaded is not None
        stale = loaded.last_step
        # The other request wins: it burns the step behind this session's back.
        session.execute(
            update(TotpCredential)
            .where(TotpCredential.pk == loaded.pk)
            .values(last_step=now // STEP)
            .execution_options(synchronize_session=False)
        )
        assert loaded.last_step == stale  # this session still sees the old value
        totp.verify(session, runtime.identity_keys, user, code, now=now)

    failure = attempt(runtime, uid, race)
    assert failure is not None
    reasons = [r.details["reason"] for r in audit_rows(runtime, uid) if r.outcome == "failure"]
    assert reasons == ["replayed"]

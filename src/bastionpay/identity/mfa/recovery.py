"""Recovery codes: the way back in when the phone or the key is lost (I3; PCI DSS 8.4; ASVS 6.5).

- 10 codes of 10 base32 characters each = 50 bits, drawn with `secrets` (ASVS 6.5: recovery
  codes need at least 20 bits; these must also survive an offline guess from a stolen database,
  which the keyed hash below already prevents).
- Stored only as keyed hashes (`keys.recovery_codes`, HMAC-SHA-256 under a key file outside the
  database), bound to the user id, so a dump alone yields no usable code (I7's reasoning).
- Single use: `used_at` is set by a conditional update, so a code cannot be spent twice, even by two
  concurrent requests. Regenerating deletes every earlier code, used or not.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from bastionpay.audit.events import SYSTEM_ORIGIN, Origin
from bastionpay.identity.keys import IdentityKeys
from bastionpay.identity.mfa.base import audit, ensure_active, fail
from bastionpay.identity.models import RecoveryCode, User

CODE_COUNT = 10
# Lower-case RFC 4648 base32: no 0/1/8/9, so no O-0 or l-1 confusion when typed from paper.
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
CODE_LENGTH = 10  # 10 × 5 bits = 50 bits of entropy per code
_GROUP = 5


def normalise(code: str) -> str:
    """`"ABCDE-FGHIJ"`, `" abcde fghij "` and `"abcdefghij"` are the same code."""
    return "".join(ch for ch in code.lower() if ch not in "- \t\r\n")


def _digest(keys: IdentityKeys, user: User, normalised: str) -> str:
    # Bound to the user: the same code under two accounts hashes differently, and a code hash copied
    # to another account's row does not match there.
    return keys.recovery_codes.hexdigest(f"{user.id}:{normalised}")


def generate(
    session: Session,
    keys: IdentityKeys,
    user: User,
    *,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> list[str]:
    """Replace all of the user's recovery codes with 10 new ones, returned once for display."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes: list[str] = []
    for _ in range(CODE_COUNT):
        raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        codes.append(f"{raw[:_GROUP]}-{raw[_GROUP:]}")
        session.add(RecoveryCode(user_id=user.id, code_hash=_digest(keys, user, raw), created=now))
    session.flush()
    audit(
        session,
        user,
        "identity.recovery_codes.generate",
        "success",
        origin=origin,
        count=CODE_COUNT,
    )
    return codes


def use(
    session: Session,
    keys: IdentityKeys,
    user: User,
    code: str,
    *,
    now: int,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Spend one recovery code as the second factor; raises `MfaFailed` (audited)."""
    ensure_active(session, user, "recovery_code", origin=origin)
    presented = normalise(code)
    if len(presented) != CODE_LENGTH or any(ch not in ALPHABET for ch in presented):
        raise fail(session, user, "recovery_code", "malformed", origin=origin)
    # Lookup by keyed hash: the database compares digests of a secret it never holds, so timing
    # says nothing about the code itself.
    spent = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _digest(keys, user, presented),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", spent).rowcount != 1:
        raise fail(session, user, "recovery_code", "unknown_or_used", origin=origin)
    audit(
        session,
        user,
        "identity.recovery_code.use",
        "success",
        origin=origin,
        remaining=remaining(session, user),
    )


def remaining(session: Session, user: User) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)

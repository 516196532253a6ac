"""What the grants store and revoke: codes, refresh-token families, issued access tokens (I6).

Plain functions over the caller's SQLAlchemy session (they never commit). Every secret is looked up
by its keyed hash; single use is enforced with a conditional UPDATE (`… WHERE used_at IS NULL`), so
two concurrent redemptions of one code or one refresh token cannot both succeed, on SQLite or
PostgreSQL.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bastionpay.identity.keys import IdentityKeys
from bastionpay.oauth.models import (
    OAuthAccessToken,
    OAuthAuthorizationCode,
    OAuthRefreshToken,
)

# The longest code or refresh token we issue is 48 characters; longer input is not hashed.
MAX_PRESENTED: Final = 256


def code_digest(keys: IdentityKeys, code: str) -> str:
    return keys.refresh_tokens.hexdigest("code:" + code)


def refresh_digest(keys: IdentityKeys, token: str) -> str:
    return keys.refresh_tokens.hexdigest("refresh:" + token)


def find_code(session: Session, keys: IdentityKeys, code: str) -> OAuthAuthorizationCode | None:
    if not code or len(code) > MAX_PRESENTED:
        return None
    return session.scalar(
        select(OAuthAuthorizationCode).where(
            OAuthAuthorizationCode.code_hash == code_digest(keys, code)
        )
    )


def find_refresh_token(
    session: Session, keys: IdentityKeys, token: str
) -> OAuthRefreshToken | None:
    if not token or len(token) > MAX_PRESENTED:
        return None
    return session.scalar(
        select(OAuthRefreshToken).where(OAuthRefreshToken.token_hash == refresh_digest(keys, token))
    )


def _rowcount(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def claim_code(session: Session, row: OAuthAuthorizationCode, *, now: int) -> bool:
    """Mark the code used; False if another redemption got there first."""
    result = session.execute(
        update(OAuthAuthorizationCode)
        .where(OAuthAuthorizationCode.pk == row.pk, OAuthAuthorizationCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = _rowcount(result) == 1
    if claimed:
        row.used_at = now
    return claimed


def claim_refresh_token(session: Session, row: OAuthRefreshToken, *, now: int) -> bool:
    """Mark the refresh token used (rotated); False if it already was."""
    result = session.execute(
        update(OAuthRefreshToken)
        .where(
            OAuthRefreshToken.pk == row.pk,
            OAuthRefreshToken.used_at.is_(None),
            OAuthRefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = _rowcount(result) == 1
    if claimed:
        row.used_at = now
    return claimed


def revoke_family(session: Session, family_id: str, *, now: int) -> None:
    """Revoke every refresh and access token of one grant (code or refresh-token reuse, RFC 7009
    revocation of a refresh token)."""
    session.execute(
        update(OAuthRefreshToken)
        .where(OAuthRefreshToken.family_id == family_id, OAuthRefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OAuthAccessToken)
        .where(OAuthAccessToken.family_id == family_id, OAuthAccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    # A code of the family still unredeemed can no longer be redeemed either.
    session.execute(
        update(OAuthAuthorizationCode)
        .where(
            OAuthAuthorizationCode.family_id == family_id, OAuthAuthorizationCode.used_at.is_(None)
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_access_token(session: Session, jti: str, *, now: int) -> None:
    session.execute(
        update(OAuthAccessToken)
        .where(OAuthAccessToken.jti == jti, OAuthAccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_client_tokens(session: Session, client_id: str, *, now: int) -> None:
    """Everything issued to a client (the client itself is revoked by the caller)."""
    for model in (OAuthRefreshToken, OAuthAccessToken):
        session.execute(
            update(model)
            .where(model.client_id == client_id, model.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )


def purge_expired(session: Session, *, now: int, refresh_seconds: int, margin: int = 86400) -> int:
    """Delete what can no longer be used (G1, storage limitation); for the worker's janitor.

    A redeemed code is kept as long as the family it started could live, so a late replay is still
    recognised and revokes the family (RFC 6749 §4.1.2). Returns the number of rows deleted."""
    deleted = 0
    for statement in (
        delete(OAuthAuthorizationCode).where(
            OAuthAuthorizationCode.expires_at < now - refresh_seconds - margin
        ),
        delete(OAuthRefreshToken).where(OAuthRefreshToken.expires_at < now - margin),
        delete(OAuthAccessToken).where(OAuthAccessToken.expires_at < now - margin),
    ):
        deleted += _rowcount(
            session.execute(statement.execution_options(synchronize_session=False))
        )
    return deleted

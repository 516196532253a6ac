"""Who is calling `/v1`, when it is not an API key: an operator's session or an OAuth access token.

One mechanism for every principal (SECURITY-REQUIREMENTS I5): each becomes a `Caller` holding a set
of permissions, and the pipeline checks the route's permission against it the same way.

- **Operators** (browser session, `__Host-bp_session` cookie): their role's permissions. A session
  counts only once the second factor is proven (stage `active`, I3). State-changing requests must
  carry the session's CSRF token in `X-CSRF-Token`. Merchant staff act on their own merchant;
  platform operators name the merchant with `Stripe-Account` (as Stripe Connect does). Test mode
  unless the request says `Bastionpay-Livemode: true`, so a click in the console never moves live
  money by default.
- **Third-party apps** (OAuth 2.0 JWT access token, I6): the scopes the user consented to, which the
  consent step already limited to the user's role; a revoked app or token fails authentication.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.identity import csrf
from bastionpay.identity import sessions as user_sessions
from bastionpay.identity.models import User, UserSession
from bastionpay.identity.roles import is_platform_role, permissions_for
from bastionpay.kernel.errors import AuthenticationError, PermissionDenied
from bastionpay.merchants.models import Merchant
from bastionpay.merchants.permissions import MERCHANT_ADMIN_PERMISSIONS, MERCHANT_PERMISSIONS
from bastionpay.merchants.service import Caller
from bastionpay.oauth.tokens import verify_access_token
from bastionpay.runtime import Runtime

SESSION_COOKIE = user_sessions.SESSION_COOKIE

SESSION_REQUIRED = "Your session has expired or is not valid. Log in again."


@dataclass(frozen=True)
class SessionCredentials:
    """What a browser presents: the session cookie and, on writes, the CSRF header."""

    token: str
    csrf_token: str | None
    account: str | None  # Stripe-Account: the merchant a platform operator acts on
    livemode: bool


class SessionRefused(PermissionDenied):
    """An operator's request refused after their session was recognised (CSRF): the audit
    record can name them (L1)."""

    def __init__(self, cause: PermissionDenied, user_id: str) -> None:
        super().__init__(cause.message, code=cause.code)
        self.user_id = user_id


def looks_like_jwt(presented: str) -> bool:
    """An OAuth access token (RFC 9068 JWT) rather than an API key (`sk_…`, `rk_…`, `pk_…`)."""
    return presented.startswith("eyJ") and presented.count(".") == 2


def _merchant_settings(session: Session, merchant_id: str) -> Merchant:
    merchant = session.scalar(select(Merchant).where(Merchant.id == merchant_id))
    if merchant is None:
        # Stripe's answer for an account the caller cannot reach; no oracle for which exist.
        raise PermissionDenied("You do not have access to this account.", code="account_invalid")
    return merchant


# The account of platform-wide operations (vault key management): no merchant's data.
PLATFORM_ACCOUNT = "platform"


def _caller(
    merchant: Merchant | None,
    *,
    livemode: bool,
    actor_type: str,
    actor_id: str,
    permissions: frozenset[str],
    mfa_at: int | None = None,
) -> Caller:
    if merchant is None:
        return Caller(
            merchant_id=PLATFORM_ACCOUNT,
            livemode=livemode,
            key_id=actor_id,
            kind=actor_type,
            permissions=permissions,
            actor_type=actor_type,
            mfa_at=mfa_at,
        )
    return Caller(
        merchant_id=merchant.id,
        livemode=livemode,
        key_id=actor_id,
        kind=actor_type,
        permissions=permissions,
        rate_limit_read=merchant.rate_limit_read,
        rate_limit_write=merchant.rate_limit_write,
        timezone=merchant.timezone,
        risk_failure_policy=merchant.risk_failure_policy,
        actor_type=actor_type,
        mfa_at=mfa_at,
    )


def session_caller(
    runtime: Runtime,
    session: Session,
    credentials: SessionCredentials,
    *,
    writes: bool,
    now: int,
    platform: bool = False,
) -> Caller | None:
    """The operator behind a live, fully authenticated session, or None (the caller answers 401
    after committing what `load` recorded about a dead session)."""
    loaded = user_sessions.load(
        session, runtime.identity_keys, credentials.token, now=now, settings=runtime.settings
    )
    if loaded is None:
        return None
    user, record = loaded
    if record.stage != "active" or user.status != "active":
        # A password-only session has not proven the second factor yet (I3).
        return None
    if writes:
        # A cookie rides along with cross-site requests; the token in a header cannot (CSRF).
        try:
            csrf.check(runtime.identity_keys, credentials.token, credentials.csrf_token)
        except PermissionDenied as exc:
            raise SessionRefused(exc, user.id) from None
    platform_call = platform and is_platform_role(user.role)
    return _caller(
        None if platform_call else _merchant_for(session, user, credentials.account),
        livemode=credentials.livemode,
        actor_type="user",
        actor_id=user.id,
        permissions=user_permissions(user),
        mfa_at=_mfa_at(record),
    )


def _mfa_at(record: UserSession) -> int | None:
    return record.mfa_at


def user_permissions(user: User) -> frozenset[str]:
    granted = permissions_for(user.role)
    if is_platform_role(user.role):
        return granted
    # Merchant staff never hold platform permissions, whatever the role table says (I5).
    return granted & (MERCHANT_PERMISSIONS | MERCHANT_ADMIN_PERMISSIONS)


def _merchant_for(session: Session, user: User, account: str | None) -> Merchant:
    if is_platform_role(user.role):
        if not account:
            raise PermissionDenied(
                "Platform operators must name the account with the Stripe-Account header.",
                code="account_required",
            )
        return _merchant_settings(session, account)
    if user.merchant_id is None or (account is not None and account != user.merchant_id):
        raise PermissionDenied("You do not have access to this account.", code="account_invalid")
    return _merchant_settings(session, user.merchant_id)


def token_caller(runtime: Runtime, session: Session, token: str, *, now: int) -> Caller:
    principal = verify_access_token(runtime, token, now=now)
    merchant = _merchant_settings(session, principal.merchant_id)
    if principal.user_id is not None:
        user = session.scalar(select(User).where(User.id == principal.user_id))
        if user is None or user.status != "active":
            # A disabled operator's apps stop at once, not when their tokens expire (I5, I7).
            raise AuthenticationError("Invalid access token.", code="invalid_token")
        allowed = user_permissions(user)
    else:
        allowed = MERCHANT_PERMISSIONS
    return _caller(
        merchant,
        livemode=principal.livemode,
        actor_type="oauth_client",
        actor_id=principal.client_id,
        # Scopes are permission names; what the user may no longer do, the app may not either.
        # Apps never manage keys, staff or other apps, nor act on the platform (I6, I7).
        permissions=frozenset(principal.scopes) & allowed & MERCHANT_PERMISSIONS,
    )

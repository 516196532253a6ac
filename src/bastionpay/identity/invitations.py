"""Invitations: a merchant's owner or admin adds staff (issue 5, item 1).

The token is 256 bits from `secrets`, shown once (in the acceptance link) and stored only as a
keyed hash (`runtime.identity_keys.invitations`), so a database dump yields no usable invitation
(same rule as API keys and session ids, I7/I4). It works once and expires after
`invitation_ttl_seconds`; inviting the same address to the same merchant again revokes the
earlier, unaccepted invitation. Accepting sets the password under the full policy (I1) and creates
the account; a weak password leaves the invitation usable (the caller's transaction rolls back).

Both functions audit themselves (`identity.invitation.create`, `identity.invitation.accept` and
`identity.user.create`), in the caller's unit of work: the `/v1` endpoint that calls `invite`
should not add its own `audit_action` for the same event.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastionpay.audit import events as audit
from bastionpay.config import Settings
from bastionpay.identity import accounts
from bastionpay.identity.keys import IdentityKeys
from bastionpay.identity.models import Invitation, User
from bastionpay.identity.passwords import Passwords
from bastionpay.identity.roles import MERCHANT_ROLES, permissions_for
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.merchants import permissions as perm
from bastionpay.merchants.models import Merchant

TOKEN_BYTES: Final = 32  # 256 bits
# The host operator running `bastionpay users invite`: shell access to the data dir and keys is
# already more than any role grants, so the CLI may invite any merchant role.
CLI_INVITER: Final = "cli"
_INVALID = "This invitation is not valid: it may have expired, been used or been replaced."


def acceptance_url(settings: Settings, token: str) -> str:
    """The link to send the invitee (the accept page is `/invitations/accept`)."""
    return f"{settings.public_url.rstrip('/')}/invitations/accept?token={quote(token, safe='')}"


def _check_inviter(
    session: Session, invited_by: str, *, merchant_id: str, role: str
) -> audit.ActorType:
    """Who may invite whom (I5): an active user holding `users:manage` on that merchant, or a
    platform operator holding `platform:users`; only an owner (or the platform) may invite an
    owner — an admin cannot mint the role above their own. Returns the audit actor type."""
    if invited_by == CLI_INVITER:
        return "system"
    inviter = session.scalar(select(User).where(User.id == invited_by))
    denied = PermissionDenied(
        "You are not allowed to invite users to this account.", code="invitation_forbidden"
    )
    if inviter is None or inviter.status != "active":
        raise denied
    granted = permissions_for(inviter.role)
    if perm.PLATFORM_USERS in granted:
        return "user"
    if perm.USERS_MANAGE not in granted or inviter.merchant_id != merchant_id:
        raise denied
    if role == "owner" and inviter.role != "owner":
        raise PermissionDenied(
            "Only an owner can invite another owner.", code="invitation_forbidden"
        )
    return "user"


def invite(
    session: Session,
    keys: IdentityKeys,
    *,
    merchant_id: str,
    email: str,
    role: str,
    invited_by: str,
    now: int,
    ttl: int,
) -> tuple[Invitation, str]:
    """A new invitation and its token (shown once: put it in the link, never store or log it)."""
    address = accounts.normalize_email(email)
    if role not in MERCHANT_ROLES:
        raise InvalidRequestError(
            f"Invitations are for merchant roles only: {', '.join(MERCHANT_ROLES)}.",
            param="role",
        )
    if session.scalar(select(Merchant.pk).where(Merchant.id == merchant_id)) is None:
        raise ResourceMissing("merchant", merchant_id, param="merchant")
    actor_type = _check_inviter(session, invited_by, merchant_id=merchant_id, role=role)
    if ttl <= 0:
        raise InvalidRequestError("An invitation must live a positive time.", param="ttl")
    # Whether the address already has an account is checked at acceptance, not here: telling an
    # admin of one merchant that an address is registered elsewhere would leak across tenants.
    session.execute(
        update(Invitation)
        .where(
            Invitation.merchant_id == merchant_id,
            Invitation.email == address,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = Invitation(
        id=new_id("inv"),
        merchant_id=merchant_id,
        email=address,
        role=role,
        token_hash=keys.invitations.hexdigest(token),
        invited_by=invited_by,
        created=now,
        expires_at=now + ttl,
        accepted_at=None,
        revoked_at=None,
    )
    session.add(invitation)
    session.flush()
    audit.record(
        session,
        audit.AuditEvent(
            actor_type=actor_type,
            actor_id=invited_by,
            action="identity.invitation.create",
            outcome="success",
            merchant_id=merchant_id,
            target_type="invitation",
            target_id=invitation.id,
            details={
                "role": role,
                "email": accounts.mask_email(address),
                "expires_at": invitation.expires_at,
            },
        ),
    )
    return invitation, token


def revoke_invitation(session: Session, invitation_id: str, *, now: int) -> Invitation:
    """Withdraw an unaccepted invitation (the caller audits `identity.invitation.revoke`)."""
    invitation = session.scalar(select(Invitation).where(Invitation.id == invitation_id))
    if invitation is None:
        raise ResourceMissing("invitation", invitation_id)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = now
        session.flush()
    return invitation


def accept_invitation(
    session: Session,
    keys: IdentityKeys,
    passwords: Passwords,
    *,
    token: str,
    password: str,
    now: int,
) -> User:
    """Create the invited account with `password` (policy applies) and spend the invitation.

    Unknown, used, revoked and expired tokens fail alike (InvalidRequestError, code
    `invitation_invalid`): the answer does not say which.
    """
    invalid = InvalidRequestError(_INVALID, param="token", code="invitation_invalid")
    if not token or len(token) > 128:
        raise invalid
    invitation = session.scalar(
        select(Invitation).where(Invitation.token_hash == keys.invitations.hexdigest(token))
    )
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= now
    ):
        raise invalid
    if invitation.invited_by != CLI_INVITER:
        # The link carries the inviter's authority, so it must still be theirs to give: an
        # inviter disabled or demoted since (fired, compromised) leaves no live backdoor account
        # for 7 days (I5). Same answer as any other dead link.
        try:
            _check_inviter(
                session,
                invitation.invited_by,
                merchant_id=invitation.merchant_id,
                role=invitation.role,
            )
        except PermissionDenied:
            raise invalid from None
    if accounts.find_user_by_email(session, invitation.email) is not None:
        # The invitee owns the address (the link reached them), so telling them leaks nothing.
        raise InvalidRequestError(
            "An account with this email address already exists; log in with it instead.",
            param="token",
            code="resource_already_exists",
        )
    user = accounts.create_user(
        session,
        passwords,
        email=invitation.email,
        role=invitation.role,
        merchant_id=invitation.merchant_id,
        password=password,
        now=now,
    )
    # Compare-and-set: two concurrent acceptances of one link cannot both succeed (single use).
    spent = session.execute(
        update(Invitation)
        .where(Invitation.pk == invitation.pk, Invitation.accepted_at.is_(None))
        .values(accepted_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise invalid
    session.refresh(invitation)
    audit.record(
        session,
        audit.AuditEvent(
            actor_type="user",
            actor_id=user.id,
            action="identity.invitation.accept",
            outcome="success",
            merchant_id=invitation.merchant_id,
            target_type="invitation",
            target_id=invitation.id,
            details={"role": invitation.role, "invited_by": invitation.invited_by},
        ),
    )
    audit.record(
        session,
        accounts.user_event(
            "identity.user.create",
            user,
            actor_type="user",
            actor_id=user.id,
            details={"via": "invitation", "invitation": invitation.id},
        ),
    )
    return user

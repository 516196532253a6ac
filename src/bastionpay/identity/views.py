"""Routes: a merchant's API keys and staff, for operators (BastionPay extensions to the Stripe API).

- `GET|POST /v1/api_keys`, `DELETE /v1/api_keys/{id}` (`keys:manage`): a secret key does not hold
  `keys:manage`, so a leaked key cannot mint more keys (I7); creating and revoking keys are
  sensitive actions that need a fresh second factor (step-up, I3).
- `GET /v1/users`, `POST /v1/users/{id}` (role change), `DELETE /v1/users/{id}` (disable),
  `POST /v1/invitations` (`users:manage`): role changes and disabling need step-up; nobody changes
  their own role, and only an owner makes or unmakes an owner (I5, least privilege).
- `GET|POST /v1/apps`, `DELETE /v1/apps/{id}` (`apps:manage`): the merchant's OAuth clients
  (third-party apps, I6). Registering one returns its secret once, so it needs step-up too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from bastionpay import bootstrap
from bastionpay.api.params import FormBool, FormStr, ListParams, Params
from bastionpay.api.routing import Call, Endpoint, Result, always
from bastionpay.identity import accounts, invitations
from bastionpay.identity.models import User
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied, ResourceMissing
from bastionpay.merchants import permissions as perm
from bastionpay.merchants import service as merchants
from bastionpay.merchants.models import ApiKey
from bastionpay.merchants.permissions import ALL_PERMISSIONS
from bastionpay.oauth import clients as oauth_clients


class NoParams(Params):
    pass


class CreateKey(Params):
    type: Literal["secret", "restricted", "publishable"]
    permissions: list[FormStr] | None = Field(default=None, max_length=20)


class ChangeRole(Params):
    role: Literal["owner", "admin", "developer", "analyst", "support_readonly"]


class RegisterApp(Params):
    name: FormStr = Field(max_length=100)
    redirect_uris: list[FormStr] = Field(min_length=1, max_length=10)
    scopes: list[FormStr] = Field(min_length=1, max_length=20)
    public: FormBool = False


class Invite(Params):
    email: FormStr = Field(max_length=254)
    role: Literal["owner", "admin", "developer", "analyst", "support_readonly"]


def render_key(key: ApiKey, plaintext: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key.id,
        "object": "api_key",
        "type": key.kind,
        "livemode": key.livemode,
        "created": key.created,
        "redacted": key.redacted,
        "permissions": key.permissions,
        "allowed_ips": key.allowed_ips,
        "last_used": key.last_used_at,
        "revoked": key.revoked_at,
    }
    if plaintext is not None:
        body["secret"] = plaintext  # shown once (I7); stored only as a keyed hash
    return body


def render_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "object": "user",
        "email": user.email,
        "role": user.role,
        "status": user.status,
        "mfa_enrolled": user.mfa_enrolled,
        "created": user.created,
        "last_login": user.last_login_at,
    }


def _own_key(call: Call) -> ApiKey:
    key = call.session.scalar(
        select(ApiKey).where(
            ApiKey.id == call.path["id"],
            ApiKey.merchant_id == call.caller.merchant_id,
            ApiKey.livemode == call.caller.livemode,
        )
    )
    if key is None:
        raise ResourceMissing("api_key", call.path["id"])  # another merchant's key is not found
    return key


def list_keys(call: Call) -> Result:
    keys = call.session.scalars(
        select(ApiKey)
        .where(
            ApiKey.merchant_id == call.caller.merchant_id,
            ApiKey.livemode == call.caller.livemode,
        )
        .order_by(ApiKey.pk.desc())
        .limit(100)
    ).all()
    data = [render_key(key) for key in keys]
    return Result({"object": "list", "url": "/v1/api_keys", "has_more": False, "data": data})


def create_key(call: Call) -> Result:
    p: CreateKey = call.params
    if p.permissions is not None and p.type != "restricted":
        raise InvalidRequestError(
            "Only restricted keys take a list of permissions.", param="permissions"
        )
    requested = frozenset(p.permissions or ())
    if p.type == "secret" and not call.caller.permissions >= ALL_PERMISSIONS:
        # A secret key holds every merchant permission: only someone who holds them all may
        # mint one; the others issue restricted keys within their role (I5, PCI DSS 10.3.1).
        raise PermissionDenied(
            "Your role cannot create a secret key; create a restricted key with the "
            "permissions you hold.",
            code="insufficient_permissions",
        )
    if not requested <= call.caller.permissions:
        # Nobody hands out more than they hold (I5).
        raise PermissionDenied(
            "You cannot grant permissions you do not hold.", code="insufficient_permissions"
        )
    issued = merchants.issue_key(
        call.session,
        call.platform().api_keys,
        merchant_id=call.caller.merchant_id,
        kind=p.type,
        livemode=call.caller.livemode,
        now=call.ctx.now,
        permissions=requested or None,
    )
    # A publishable key is registered with the vault's hosted fields in this unit of work: if the
    # vault refuses, the key is not issued (P3, issue 4).
    bootstrap.register_publishable_key(call.platform(), issued.record, issued.plaintext)
    return Result(render_key(issued.record, issued.plaintext))


def revoke_key(call: Call) -> Result:
    key = _own_key(call)
    revoked = merchants.revoke_key(call.session, key.id, call.ctx.now)
    bootstrap.revoke_publishable_key(call.platform(), revoked)
    return Result(render_key(revoked))


def _own_user(call: Call) -> User:
    user = call.session.scalar(
        select(User).where(User.id == call.path["id"], User.merchant_id == call.caller.merchant_id)
    )
    if user is None:
        raise ResourceMissing("user", call.path["id"])
    return user


def _guard_owner_changes(call: Call, target: User, new_role: str | None) -> None:
    if call.caller.actor_type == "user" and target.id == call.caller.key_id:
        raise PermissionDenied("You cannot change your own account here.", code="self_change")
    touches_owner = target.role == "owner" or new_role == "owner"
    if touches_owner and _caller_role(call) != "owner":
        raise PermissionDenied(
            "Only an owner can make or change an owner.", code="insufficient_permissions"
        )


def _caller_role(call: Call) -> str | None:
    if call.caller.actor_type != "user":
        return None
    return call.session.scalar(select(User.role).where(User.id == call.caller.key_id))


def list_staff(call: Call) -> Result:
    users = accounts.list_users(call.session, merchant_id=call.caller.merchant_id)
    data = [render_user(user) for user in users]
    return Result({"object": "list", "url": "/v1/users", "has_more": False, "data": data})


def change_role(call: Call) -> Result:
    p: ChangeRole = call.params
    target = _own_user(call)
    _guard_owner_changes(call, target, p.role)
    return Result(
        render_user(accounts.change_role(call.session, target.id, p.role, now=call.ctx.now))
    )


def disable_staff(call: Call) -> Result:
    target = _own_user(call)
    _guard_owner_changes(call, target, None)
    user = accounts.disable_user(call.session, target.id, now=call.ctx.now, reason="admin")
    return Result(render_user(user))


def invite(call: Call) -> Result:
    p: Invite = call.params
    # Who may invite whom (only an owner invites an owner) is the service's rule; it also
    # records the audit event.
    runtime = call.platform()
    invitation, token = invitations.invite(
        call.session,
        runtime.identity_keys,
        merchant_id=call.caller.merchant_id,
        email=p.email,
        role=p.role,
        invited_by=call.caller.key_id,
        now=call.ctx.now,
        ttl=runtime.settings.invitation_ttl_seconds,
    )
    return Result(
        {
            "id": invitation.id,
            "object": "invitation",
            "email": invitation.email,
            "role": invitation.role,
            "expires_at": invitation.expires_at,
            # The acceptance link is shown once, to the inviter, to pass on (never stored plain).
            "url": invitations.acceptance_url(runtime.settings, token),
        }
    )


def list_apps(call: Call) -> Result:
    apps = oauth_clients.list_clients(call.session, merchant_id=call.caller.merchant_id)
    data = [
        oauth_clients.render_client(app) for app in apps if app.livemode == call.caller.livemode
    ]
    return Result({"object": "list", "url": "/v1/apps", "has_more": False, "data": data})


def register_app(call: Call) -> Result:
    p: RegisterApp = call.params
    client, secret = oauth_clients.register_client(
        call.session,
        call.platform().identity_keys,
        merchant_id=call.caller.merchant_id,
        name=p.name,
        redirect_uris=list(p.redirect_uris),
        public=p.public,
        scopes=list(p.scopes),
        now=call.ctx.now,
        livemode=call.caller.livemode,
        actor_id=call.caller.key_id,
        # An app gets no scope its registrant does not hold (I5, I6).
        grantor_permissions=call.caller.permissions,
    )
    body = oauth_clients.render_client(client)
    if secret is not None:
        body["client_secret"] = secret  # shown once (I7); stored as a keyed hash
    return Result(body)


def revoke_app(call: Call) -> Result:
    client = oauth_clients.get_client(call.session, call.path["id"])
    if client.merchant_id != call.caller.merchant_id or client.livemode != call.caller.livemode:
        raise ResourceMissing("oauth_client", call.path["id"])  # another merchant's: not found
    oauth_clients.revoke_client(
        call.session, client.client_id, now=call.ctx.now, actor_id=call.caller.key_id
    )
    return Result(oauth_clients.render_client(client))


ENDPOINTS = [
    Endpoint("GET", "/v1/api_keys", perm.KEYS_MANAGE, ListParams, list_keys),
    Endpoint(
        "POST",
        "/v1/api_keys",
        perm.KEYS_MANAGE,
        CreateKey,
        create_key,
        audit_action="merchant.api_key.create",
        step_up=always,
        secret_fields=("secret",),
    ),
    Endpoint(
        "DELETE",
        "/v1/api_keys/{id}",
        perm.KEYS_MANAGE,
        NoParams,
        revoke_key,
        audit_action="merchant.api_key.revoke",
        step_up=always,
    ),
    Endpoint("GET", "/v1/users", perm.USERS_MANAGE, ListParams, list_staff),
    Endpoint(
        "POST",
        "/v1/users/{id}",
        perm.USERS_MANAGE,
        ChangeRole,
        change_role,
        audit_action="identity.user.role_change",
        step_up=always,
    ),
    Endpoint(
        "DELETE",
        "/v1/users/{id}",
        perm.USERS_MANAGE,
        NoParams,
        disable_staff,
        audit_action="identity.user.disable",
        step_up=always,
    ),
    Endpoint(
        "POST",
        "/v1/invitations",
        perm.USERS_MANAGE,
        Invite,
        invite,
        # Granting a role to a new address is as sensitive as changing one (I3).
        step_up=always,
        secret_fields=("url",),
    ),
    # OAuth clients audit their own creation and revocation (oauth.client.*).
    Endpoint("GET", "/v1/apps", perm.APPS_MANAGE, ListParams, list_apps),
    Endpoint(
        "POST",
        "/v1/apps",
        perm.APPS_MANAGE,
        RegisterApp,
        register_app,
        step_up=always,
        secret_fields=("client_secret",),
    ),
    Endpoint("DELETE", "/v1/apps/{id}", perm.APPS_MANAGE, NoParams, revoke_app, step_up=always),
]

"""Registering and revoking third-party applications (OAuth clients) for a merchant (I6, I7).

- Confidential clients get a secret, shown once and stored only as a keyed hash (I7); public clients
  (native and browser apps, RFC 8252) get none and must use PKCE like everyone else.
- Redirect URIs are registered exactly and compared exactly at authorization time (RFC 9700
  §4.1.3): https only, except the loopback interface for native apps (RFC 8252 §7.3); no fragment
  (RFC 6749 §3.1.2); no user-info part.
- Scopes are permission names from `merchants.permissions.MERCHANT_PERMISSIONS`: an app never gets
  the identity administration (keys, staff, apps) a human with MFA must do, nor platform powers.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastionpay.audit.events import AuditEvent, Origin, record
from bastionpay.identity.keys import IdentityKeys
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied, ResourceMissing
from bastionpay.kernel.ids import new_id
from bastionpay.merchants.models import Merchant
from bastionpay.merchants.permissions import MERCHANT_PERMISSIONS
from bastionpay.oauth.grants import revoke_client_tokens
from bastionpay.oauth.models import OAuthClient

SCOPES: Final = MERCHANT_PERMISSIONS
CONFIDENTIAL_AUTH: Final = "client_secret_basic"
PUBLIC_AUTH: Final = "none"
PUBLIC_GRANTS: Final = ("authorization_code", "refresh_token")
# Client credentials need a secret: only confidential clients may use them (RFC 6749 §4.4).
CONFIDENTIAL_GRANTS: Final = ("authorization_code", "refresh_token", "client_credentials")
SECRET_PREFIX: Final = "bpcs_"  # noqa: S105 - a prefix, not a secret
MAX_REDIRECT_URIS: Final = 10
MAX_URI_LENGTH: Final = 2048
MAX_NAME_LENGTH: Final = 100
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


def secret_digest(keys: IdentityKeys, secret: str) -> str:
    # One keyed hasher serves OAuth credentials; the prefix separates the kinds of value.
    return keys.refresh_tokens.hexdigest("client-secret:" + secret)


def check_redirect_uri(uri: str) -> str:
    """Return `uri` if it may be registered; raise InvalidRequestError otherwise."""

    def bad(reason: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"Invalid redirect URI: {reason}.", param="redirect_uris", code="invalid_redirect_uri"
        )

    if not uri or len(uri) > MAX_URI_LENGTH or any(ch.isspace() for ch in uri):
        raise bad("empty, too long, or containing spaces")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise bad("a fragment is not allowed (RFC 6749 section 3.1.2)")
    if parts.username is not None or parts.password is not None:
        raise bad("credentials in the URI are not allowed")
    if not parts.hostname:
        raise bad("a host is required")
    if parts.scheme == "https":
        return uri
    # RFC 8252 §7.3: native apps listen on the loopback interface over plain http.
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return uri
    raise bad("https is required (http only on the loopback interface for native apps)")


def register_client(
    session: Session,
    keys: IdentityKeys,
    *,
    merchant_id: str,
    name: str,
    redirect_uris: list[str],
    public: bool,
    scopes: list[str],
    now: int,
    livemode: bool = False,
    actor_id: str = "cli",
    origin: Origin | None = None,
    grantor_permissions: frozenset[str] | None = None,
) -> tuple[OAuthClient, str | None]:
    """Register an app for `merchant_id`; returns the client and its secret (None if public).

    `grantor_permissions` are the registering operator's permissions (the `/v1/apps` caller's):
    an app may not be given a scope its registrant lacks, since a confidential client's
    `client_credentials` token carries its registered scopes with no user to bound them (I5:
    nobody hands out more than they hold). None: the host's CLI, which may register any scope.

    The secret is returned once and never again (I7). Audited `oauth.client.create` (L1)."""
    if session.scalar(select(Merchant).where(Merchant.id == merchant_id)) is None:
        raise ResourceMissing("merchant", merchant_id, param="merchant")
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequestError(
            f"The name must be 1 to {MAX_NAME_LENGTH} characters.", param="name"
        )
    if not redirect_uris or len(redirect_uris) > MAX_REDIRECT_URIS:
        raise InvalidRequestError(
            f"Give 1 to {MAX_REDIRECT_URIS} redirect URIs.", param="redirect_uris"
        )
    uris = [check_redirect_uri(uri) for uri in dict.fromkeys(redirect_uris)]
    unknown = sorted(set(scopes) - SCOPES)
    if not scopes or unknown:
        raise InvalidRequestError(
            "Unknown or missing scopes: "
            + (", ".join(unknown) or "none given")
            + f". Allowed: {', '.join(sorted(SCOPES))}.",
            param="scopes",
            code="invalid_scope",
        )
    if grantor_permissions is not None and not set(scopes) <= grantor_permissions:
        raise PermissionDenied(
            "You cannot give an app permissions you do not hold.",
            code="insufficient_permissions",
        )
    secret = None if public else SECRET_PREFIX + secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id=new_id("app"),
        merchant_id=merchant_id,
        livemode=livemode,
        name=name,
        secret_hash=None if secret is None else secret_digest(keys, secret),
        token_endpoint_auth_method=PUBLIC_AUTH if public else CONFIDENTIAL_AUTH,
        redirect_uris=uris,
        scopes=sorted(set(scopes)),
        grant_types=list(PUBLIC_GRANTS if public else CONFIDENTIAL_GRANTS),
        created=now,
    )
    session.add(client)
    session.flush()
    record(
        session,
        AuditEvent(
            actor_type="user" if actor_id.startswith("usr_") else "system",
            actor_id=actor_id,
            action="oauth.client.create",
            outcome="success",
            merchant_id=merchant_id,
            livemode=livemode,
            target_type="oauth_client",
            target_id=client.client_id,
            origin=origin or Origin(),
            details={"name": name, "public": public, "scopes": client.scopes},
        ),
    )
    return client, secret


def get_client(session: Session, client_id: str) -> OAuthClient:
    client = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if client is None:
        raise ResourceMissing("oauth_client", client_id)
    return client


def list_clients(session: Session, *, merchant_id: str | None = None) -> list[OAuthClient]:
    query = select(OAuthClient).order_by(OAuthClient.pk)
    if merchant_id is not None:
        query = query.where(OAuthClient.merchant_id == merchant_id)
    return list(session.scalars(query))


def revoke_client(
    session: Session,
    client_id: str,
    *,
    now: int,
    actor_id: str = "cli",
    origin: Origin | None = None,
) -> None:
    """Revoke an app: its tokens stop working at once (verification checks the client), and its
    refresh tokens are revoked too. Audited `oauth.client.revoke` (L1)."""
    client = get_client(session, client_id)
    if client.revoked_at is None:
        client.revoked_at = now
        revoke_client_tokens(session, client_id, now=now)
    record(
        session,
        AuditEvent(
            actor_type="user" if actor_id.startswith("usr_") else "system",
            actor_id=actor_id,
            action="oauth.client.revoke",
            outcome="success",
            merchant_id=client.merchant_id,
            livemode=client.livemode,
            target_type="oauth_client",
            target_id=client.client_id,
            origin=origin or Origin(),
        ),
    )


def render_client(client: OAuthClient) -> dict[str, object]:
    """The JSON shape for the CLI and the API (never the secret's hash)."""
    return {
        "id": client.client_id,
        "object": "oauth_client",
        "merchant": client.merchant_id,
        "livemode": client.livemode,
        "name": client.name,
        "public": client.secret_hash is None,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": list(client.redirect_uris),
        "scopes": list(client.scopes),
        "grant_types": list(client.grant_types),
        "created": client.created,
        "revoked": client.revoked_at,
    }

"""The OAuth 2.0 authorization server end to end, driven by an independent client library
(Authlib's httpx `OAuth2Client`) over the ASGI app (issue 5 "Done when"; SECURITY-REQUIREMENTS I6,
I5, L1, L3, T3).

The operator's browser is a second client holding a real server-side session (Part C's
`identity.sessions.start`, stage "active") and posting the consent form with its CSRF token.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.conftest import make_runtime

from bastionpay import bootstrap
from bastionpay.api.app import create_app
from bastionpay.audit.models import AuditEntry, AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.identity import accounts, sessions
from bastionpay.identity.models import User
from bastionpay.identity.passwords import Passwords
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.errors import AuthenticationError
from bastionpay.oauth import clients, grants
from bastionpay.oauth.keys import signing_keys
from bastionpay.oauth.models import (
    OAuthAccessToken,
    OAuthAuthorizationCode,
    OAuthConsent,
    OAuthRefreshToken,
)
from bastionpay.oauth.tokens import verify_access_token
from bastionpay.oauth.web import routes
from bastionpay.runtime import Runtime

BASE = "https://localhost"
AUTHORIZE = f"{BASE}/oauth/authorize"
TOKEN = f"{BASE}/oauth/token"
INTROSPECT = f"{BASE}/oauth/introspect"
REVOKE = f"{BASE}/oauth/revoke"
REDIRECT = "https://app.example/callback"
OTHER_REDIRECT = "https://app.example/other"
PASSWORD = "correct horse battery 42"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass
class Env:
    runtime: Runtime
    clock: FrozenClock
    app: Any
    merchant_id: str
    other_merchant_id: str
    owner: User
    analyst: User
    outsider: User

    def transport(self) -> Any:
        """Starlette's in-process transport: the OAuth client talks HTTP to the ASGI app."""
        return TestClient(self.app, base_url=BASE)._transport

    def browser(self, user: User) -> TestClient:
        """A logged-in operator's browser: a fresh active session cookie."""
        with unit_of_work(self.runtime.db, write=True) as session:
            issued = sessions.start(
                session,
                self.runtime.identity_keys,
                session.merge(user),
                stage=sessions.STAGE_ACTIVE,
                now=self.clock.now(),
                settings=self.runtime.settings,
                ip="127.0.0.1",
                user_agent="pytest",
            )
        browser = TestClient(self.app, base_url=BASE, follow_redirects=False)
        browser.cookies.set(sessions.SESSION_COOKIE, issued.token)
        return browser

    def register(
        self, *, public: bool = False, scopes: tuple[str, ...] = ("payments:read", "customers:read")
    ) -> tuple[str, str | None]:
        with unit_of_work(self.runtime.db, write=True) as session:
            client, secret = clients.register_client(
                session,
                self.runtime.identity_keys,
                merchant_id=self.merchant_id,
                name="Books <b>app</b>",
                redirect_uris=[REDIRECT, OTHER_REDIRECT],
                public=public,
                scopes=list(scopes),
                now=self.clock.now(),
            )
            return client.client_id, secret

    def audit(self, action: str) -> list[Any]:
        with unit_of_work(self.runtime.db, write=False) as session:
            rows: list[Any] = []
            for model in (AuditStaged, AuditEntry):
                rows += session.scalars(select(model).where(model.action == action)).all()
            return rows


@pytest.fixture(scope="module")
def env(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    clock = FrozenClock(int(time.time()))
    runtime = make_runtime(
        db_url,
        tmp_path_factory.mktemp("oauth"),
        clock=clock,
        public_url=BASE,
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "OAuth merchant")["id"]
    other = bootstrap.create_merchant_with_keys(runtime, "Other merchant")["id"]
    passwords = Passwords(runtime.settings)
    users: dict[str, User] = {}
    with unit_of_work(runtime.db, write=True) as session:
        for name, role, merchant_id in (
            ("owner", "owner", merchant),
            ("analyst", "analyst", merchant),
            ("outsider", "owner", other),
        ):
            users[name] = accounts.create_user(
                session,
                passwords,
                email=f"{name}-{generate_token(8)}@example.com",
                role=role,
                merchant_id=merchant_id,
                password=PASSWORD,
                now=clock.now(),
            )
    app = SecurityHeaders(Starlette(routes=routes(runtime)))
    yield Env(runtime, clock, app, merchant, other, **users)
    runtime.db.dispose()


def oauth_client(env: Env, client_id: str, secret: str | None, **kwargs: Any) -> OAuth2Client:
    kwargs.setdefault("code_challenge_method", "S256")
    return OAuth2Client(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=REDIRECT,
        token_endpoint_auth_method="none" if secret is None else "client_secret_basic",
        transport=env.transport(),
        **kwargs,
    )


def consent(env: Env, browser: TestClient, url: str, decision: str = "allow") -> Any:
    page = browser.get(url)
    assert page.status_code == 200, page.text
    csrf = _CSRF.search(page.text)
    action = _ACTION.search(page.text)
    assert csrf and action
    return browser.post(
        action.group(1).replace("&amp;", "&"),
        data={"csrf_token": csrf.group(1), "decision": decision},
    )


def authorize(
    env: Env, client: OAuth2Client, user: User | None = None, **extra: Any
) -> tuple[str, str]:
    """Run the browser part; returns (the callback URL the app receives, the PKCE verifier)."""
    verifier = generate_token(64)
    url, _state = client.create_authorization_url(AUTHORIZE, code_verifier=verifier, **extra)
    response = consent(env, env.browser(user or env.owner), url)
    assert response.status_code == 302, response.text
    return response.headers["location"], verifier


def full_flow(env: Env, **kwargs: Any) -> tuple[OAuth2Client, dict[str, Any]]:
    client_id, secret = env.register(**kwargs)
    client = oauth_client(env, client_id, secret, scope="payments:read customers:read")
    callback, verifier = authorize(env, client)
    token = client.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    return client, dict(token)


def introspect(client: OAuth2Client, token: str, hint: str = "access_token") -> dict[str, Any]:
    response = client.introspect_token(INTROSPECT, token=token, token_type_hint=hint)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_authorization_code_with_pkce_consent_and_token(env: Env) -> None:
    client, token = full_flow(env)
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "payments:read customers:read"
    assert token["expires_in"] == env.runtime.settings.oauth_access_token_seconds
    assert token["refresh_token"]
    principal = verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    assert principal.merchant_id == env.merchant_id
    assert principal.user_id == env.owner.id
    assert principal.client_id == client.client_id
    assert principal.scopes == {"payments:read", "customers:read"}
    assert principal.livemode is False
    body = introspect(client, token["access_token"])
    assert body["active"] is True
    assert body["client_id"] == client.client_id and body["sub"] == env.owner.id
    # L1: consent and issuance are audited; L3: no secret in any audit detail.
    grants = [e for e in env.audit("oauth.consent.grant") if e.target_id == client.client_id]
    assert grants and grants[-1].actor_id == env.owner.id
    issued = [e for e in env.audit("oauth.token.issue") if e.actor_id == client.client_id]
    assert issued and issued[-1].details["grant_type"] == "authorization_code"
    dump = repr([(e.details, e.target_id) for e in env.audit("oauth.token.issue")])
    assert token["access_token"] not in dump and token["refresh_token"] not in dump


def test_consent_page_is_strict_and_escaped(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret, scope="payments:read")
    url, _ = client.create_authorization_url(AUTHORIZE, code_verifier=generate_token(64))
    page = env.browser(env.owner).get(url)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "<script" not in page.text
    assert "form-action 'self' https://app.example" in csp
    assert "Books &lt;b&gt;app&lt;/b&gt;" in page.text  # autoescaped (T3)
    assert "See your payments" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_not_logged_in_redirects_to_login(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    url, _ = client.create_authorization_url(AUTHORIZE, code_verifier=generate_token(64))
    anonymous = TestClient(env.app, base_url=BASE, follow_redirects=False)
    response = anonymous.get(url)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/login?next=%2Foauth%2Fauthorize%3F")
    assert parse_qs(urlsplit(location).query)["next"][0] == url.removeprefix(BASE)


def test_consent_post_without_csrf_token_is_refused(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    url, _ = client.create_authorization_url(AUTHORIZE, code_verifier=generate_token(64))
    browser = env.browser(env.owner)
    response = browser.post(url, data={"decision": "allow", "csrf_token": "0" * 64})
    assert response.status_code == 403
    assert "location" not in response.headers
    # The right token from a cross-site page is refused too (Origin checked, defence in depth).
    token = _CSRF.search(browser.get(url).text)
    assert token
    response = browser.post(
        url,
        data={"decision": "allow", "csrf_token": token.group(1)},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403 and "location" not in response.headers


def test_deny_redirects_with_access_denied(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    url, state = client.create_authorization_url(AUTHORIZE, code_verifier=generate_token(64))
    response = consent(env, env.browser(env.owner), url, decision="deny")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == [state]
    assert "code" not in query
    assert [e for e in env.audit("oauth.consent.deny") if e.target_id == client_id]


def test_user_grants_only_scopes_their_role_holds(env: Env) -> None:
    """I5: an analyst cannot hand an app `payments:write`, whatever the app asks for."""
    client_id, secret = env.register(scopes=("payments:read", "payments:write"))
    client = oauth_client(env, client_id, secret, scope="payments:read payments:write")
    verifier = generate_token(64)
    url, _ = client.create_authorization_url(AUTHORIZE, code_verifier=verifier)
    browser = env.browser(env.analyst)
    page = browser.get(url)
    assert "which your role does not allow" in page.text and "payments:write" in page.text
    response = consent(env, browser, url)
    token = client.fetch_token(
        TOKEN, authorization_response=response.headers["location"], code_verifier=verifier
    )
    assert token["scope"] == "payments:read"
    principal = verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    assert principal.scopes == {"payments:read"}


def test_user_of_another_merchant_cannot_consent(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    url, _ = client.create_authorization_url(AUTHORIZE, code_verifier=generate_token(64))
    response = env.browser(env.outsider).get(url)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["access_denied"]


def test_refresh_rotation_and_reuse_revokes_the_family(env: Env) -> None:
    client, first = full_flow(env)
    second = dict(client.refresh_token(TOKEN, refresh_token=first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert introspect(client, second["access_token"])["active"] is True
    assert introspect(client, first["refresh_token"], "refresh_token")["active"] is False
    # The rotated-out token comes back (stolen): refused, and the whole family dies (RFC 9700).
    with pytest.raises(OAuthError) as reuse:
        client.refresh_token(TOKEN, refresh_token=first["refresh_token"])
    assert reuse.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as after:
        client.refresh_token(TOKEN, refresh_token=second["refresh_token"])
    assert after.value.error == "invalid_grant"
    assert introspect(client, second["access_token"])["active"] is False
    with pytest.raises(AuthenticationError):
        verify_access_token(env.runtime, second["access_token"], now=env.clock.now())
    detected = [
        e for e in env.audit("oauth.token.reuse_detected") if e.actor_id == client.client_id
    ]
    assert detected and detected[-1].details["credential"] == "refresh_token"


def test_public_client_flow_and_refresh(env: Env) -> None:
    client, token = full_flow(env, public=True)
    assert verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]


def test_code_reuse_is_rejected_and_revokes_what_it_issued(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    callback, verifier = authorize(env, client)
    token = client.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    again = oauth_client(env, client_id, secret)
    with pytest.raises(OAuthError) as reuse:
        again.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    assert reuse.value.error == "invalid_grant"
    # RFC 6749 §4.1.2: tokens issued from that code are revoked.
    assert introspect(client, token["access_token"])["active"] is False
    with pytest.raises(OAuthError):
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    detected = [e for e in env.audit("oauth.token.reuse_detected") if e.actor_id == client_id]
    assert detected and detected[0].details["credential"] == "authorization_code"


def test_code_expires_after_sixty_seconds(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    callback, verifier = authorize(env, client)
    env.clock.advance(env.runtime.settings.oauth_code_seconds + 1)
    with pytest.raises(OAuthError) as expired:
        client.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    assert expired.value.error == "invalid_grant"


def test_wrong_redirect_uri_is_rejected(env: Env) -> None:
    client_id, secret = env.register()
    # Not registered: refused on our own page, never redirected there (no open redirector).
    client = oauth_client(env, client_id, secret)
    url, _ = client.create_authorization_url(
        AUTHORIZE, code_verifier=generate_token(64), redirect_uri="https://evil.example/callback"
    )
    response = env.browser(env.owner).get(url)
    assert response.status_code == 400 and "location" not in response.headers
    # Registered, but not the one the code was issued for: the exchange fails.
    callback, verifier = authorize(env, client)
    other = oauth_client(env, client_id, secret)
    other.redirect_uri = OTHER_REDIRECT
    with pytest.raises(OAuthError) as mismatch:
        other.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    assert mismatch.value.error == "invalid_grant"
    # Prefix tricks do not match either: comparison is exact (RFC 9700 §4.1.3).
    url, _ = client.create_authorization_url(
        AUTHORIZE, code_verifier=generate_token(64), redirect_uri=REDIRECT + "/../x"
    )
    assert env.browser(env.owner).get(url).status_code == 400
    assert [e for e in env.audit("oauth.authorization.fail") if e.actor_id == client_id]


@pytest.mark.parametrize("method", ["plain", None])
def test_plain_or_missing_pkce_is_rejected(env: Env, method: str | None) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret, code_challenge_method=method)
    extra = {"code_verifier": generate_token(64)} if method else {}
    url, _ = client.create_authorization_url(AUTHORIZE, **extra)
    response = env.browser(env.owner).get(url)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "code" not in query


def test_wrong_code_verifier_is_rejected(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    callback, _verifier = authorize(env, client)
    with pytest.raises(OAuthError) as wrong:
        client.fetch_token(TOKEN, authorization_response=callback, code_verifier=generate_token(64))
    assert wrong.value.error == "invalid_grant"


def test_client_credentials(env: Env) -> None:
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret, scope="payments:read")
    token = client.fetch_token(TOKEN, grant_type="client_credentials")
    assert "refresh_token" not in token
    principal = verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    assert principal.user_id is None and principal.client_id == client_id
    assert principal.scopes == {"payments:read"}
    # A wrong secret is refused.
    bad = oauth_client(env, client_id, "bpcs_" + generate_token(43))
    with pytest.raises(OAuthError) as refused:
        bad.fetch_token(TOKEN, grant_type="client_credentials")
    assert refused.value.error == "invalid_client"
    # Public clients have no credentials to present (RFC 6749 §4.4).
    public_id, _ = env.register(public=True)
    public = oauth_client(env, public_id, None)
    with pytest.raises(OAuthError):
        public.fetch_token(TOKEN, grant_type="client_credentials")


def test_introspection_only_for_the_owning_client(env: Env) -> None:
    client, token = full_flow(env)
    stranger_id, stranger_secret = env.register()
    stranger = oauth_client(env, stranger_id, stranger_secret)
    assert introspect(stranger, token["access_token"]) == {"active": False}
    assert introspect(client, "not-a-token") == {"active": False}
    body = introspect(client, token["refresh_token"], "refresh_token")
    assert body["active"] is True and body["token_type"] == "refresh_token"


def test_revocation(env: Env) -> None:
    client, token = full_flow(env)
    response = client.revoke_token(
        REVOKE, token=token["access_token"], token_type_hint="access_token"
    )
    assert response.status_code == 200
    assert introspect(client, token["access_token"])["active"] is False
    with pytest.raises(AuthenticationError):
        verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    # Revoking the refresh token ends the grant.
    response = client.revoke_token(
        REVOKE, token=token["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    with pytest.raises(OAuthError):
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    # An unknown token: 200 all the same (RFC 7009 §2.2).
    assert client.revoke_token(REVOKE, token="nothing").status_code == 200
    assert [e for e in env.audit("oauth.token.revoke") if e.actor_id == client.client_id]


def test_revoked_client_tokens_stop_working(env: Env) -> None:
    client, token = full_flow(env)
    with unit_of_work(env.runtime.db, write=True) as session:
        clients.revoke_client(session, client.client_id, now=env.clock.now())
    with pytest.raises(AuthenticationError):
        verify_access_token(env.runtime, token["access_token"], now=env.clock.now())
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_client"


def test_metadata_and_jwks_shape(env: Env) -> None:
    http = TestClient(env.app, base_url=BASE)
    metadata = http.get("/.well-known/oauth-authorization-server").json()
    AuthorizationServerMetadata(metadata).validate()  # RFC 8414, checked by Authlib
    assert metadata["issuer"] == BASE
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "implicit" not in metadata["grant_types_supported"]
    assert "password" not in metadata["grant_types_supported"]
    full_flow(env)  # at least one key exists
    jwks = http.get("/oauth/jwks.json").json()
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert key["kty"] == "EC" and key["crv"] == "P-256" and key["kid"]
        assert "d" not in key  # public keys only


def test_token_verifies_with_joserfc_against_published_jwks(env: Env) -> None:
    _client, token = full_flow(env)
    http = TestClient(env.app, base_url=BASE)
    keys = KeySet.import_key_set(http.get("/oauth/jwks.json").json())
    decoded = jwt.decode(token["access_token"], keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    claims = decoded.claims
    jwt.JWTClaimsRegistry(
        now=env.clock.now(),
        iss={"essential": True, "value": BASE},
        aud={"essential": True, "value": f"{BASE}/v1"},
        exp={"essential": True},
    ).validate(claims)
    assert claims["merchant"] == env.merchant_id and claims["livemode"] is False
    assert claims["sub"] == env.owner.id and claims["client_id"] == _client.client_id
    assert claims["exp"] - claims["iat"] == env.runtime.settings.oauth_access_token_seconds


def test_forged_and_altered_tokens_are_rejected(env: Env) -> None:
    _client, token = full_flow(env)
    header, payload, signature = token["access_token"].split(".")
    for forged in (
        f"{header}.{payload}.{signature[:-4]}AAAA",
        f"eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.{payload}.",  # alg none
        "",
    ):
        with pytest.raises(AuthenticationError) as refused:
            verify_access_token(env.runtime, forged, now=env.clock.now())
        assert refused.value.message == "Invalid access token."


def test_expired_token_is_rejected(env: Env) -> None:
    client, token = full_flow(env)
    lifetime = env.runtime.settings.oauth_access_token_seconds
    with pytest.raises(AuthenticationError):
        verify_access_token(env.runtime, token["access_token"], now=env.clock.now() + lifetime + 60)
    env.clock.advance(lifetime + 60)
    assert introspect(client, token["access_token"])["active"] is False
    # The refresh token still works and gives a fresh access token.
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert verify_access_token(env.runtime, refreshed["access_token"], now=env.clock.now())


def test_signing_key_rotation_keeps_old_tokens_valid(env: Env) -> None:
    """A new key every `oauth_signing_key_rotation_days`; the previous one stays published until
    its last token has expired, so rotation never breaks a live token (I6)."""
    settings = env.runtime.settings
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret, scope="payments:read")
    current, _ = signing_keys(settings).current(env.clock.now())
    due = current.created + settings.oauth_signing_key_rotation_days * 86400
    env.clock.advance(due - 10 - env.clock.now())
    before = client.fetch_token(TOKEN, grant_type="client_credentials")["access_token"]
    env.clock.advance(20)
    after = client.fetch_token(TOKEN, grant_type="client_credentials")["access_token"]
    http = TestClient(env.app, base_url=BASE)
    jwks = http.get("/oauth/jwks.json").json()
    keys = KeySet.import_key_set(jwks)
    old_kid = jwt.decode(before, keys, algorithms=["ES256"]).header["kid"]
    new_kid = jwt.decode(after, keys, algorithms=["ES256"]).header["kid"]
    assert old_kid == current.kid and new_kid != old_kid
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    assert verify_access_token(env.runtime, before, now=env.clock.now())
    assert [e for e in env.audit("oauth.signing_key.rotate") if e.outcome == "success"]
    # Once every token of the old key has expired, the old key is no longer published or trusted.
    env.clock.advance(settings.oauth_access_token_seconds + 120)
    jwks = http.get("/oauth/jwks.json").json()
    assert {k["kid"] for k in jwks["keys"]} == {new_kid}


def test_through_the_api_app_a_token_reads_v1_within_its_scopes(env: Env) -> None:
    """The routes as the api mounts them; the `/v1` pipeline accepts the token with its scopes."""
    api = TestClient(create_app(env.runtime), base_url=BASE, client=("127.0.0.1", 50000))
    assert api.get("/.well-known/oauth-authorization-server").json()["issuer"] == BASE
    client_id, secret = env.register(scopes=("payments:read",))
    client = oauth_client(env, client_id, secret, scope="payments:read")
    token = client.fetch_token(TOKEN, grant_type="client_credentials")["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    listed = api.get("/v1/payment_intents", headers=headers)
    assert listed.status_code == 200, listed.text
    denied = api.get("/v1/customers", headers=headers)
    assert denied.status_code == 403, denied.text
    with unit_of_work(env.runtime.db, write=True) as session:
        clients.revoke_client(session, client_id, now=env.clock.now())
    assert api.get("/v1/payment_intents", headers=headers).status_code == 401


def test_no_token_or_code_reaches_the_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """L3: Authlib logs issued tokens at DEBUG; its logger is held at WARNING."""
    caplog.set_level(logging.DEBUG)
    client_id, secret = env.register()
    client = oauth_client(env, client_id, secret)
    callback, verifier = authorize(env, client)
    token = client.fetch_token(TOKEN, authorization_response=callback, code_verifier=verifier)
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    for value in (code, token["access_token"], token["refresh_token"], refreshed["access_token"]):
        assert value not in caplog.text
    assert secret and secret not in caplog.text


def test_consent_is_recorded_and_expired_rows_are_purged(env: Env) -> None:
    client, _token = full_flow(env)
    with unit_of_work(env.runtime.db, write=False) as session:
        consent_row = session.scalars(
            select(OAuthConsent).where(OAuthConsent.client_id == client.client_id)
        ).one()
        assert consent_row.user_id == env.owner.id
        assert consent_row.scopes == ["customers:read", "payments:read"]
    settings = env.runtime.settings
    later = env.clock.now() + settings.oauth_refresh_token_seconds + 2 * 86400 + 1
    with unit_of_work(env.runtime.db, write=True) as session:
        assert grants.purge_expired(
            session, now=later, refresh_seconds=settings.oauth_refresh_token_seconds
        )
        for model in (OAuthAccessToken, OAuthRefreshToken):
            assert not session.scalars(
                select(model).where(model.client_id == client.client_id)
            ).all()
        assert not session.scalars(
            select(OAuthAuthorizationCode).where(
                OAuthAuthorizationCode.client_id == client.client_id
            )
        ).all()

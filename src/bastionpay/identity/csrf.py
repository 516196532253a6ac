"""CSRF tokens for cookie-authenticated forms (SECURITY-REQUIREMENTS T3; ASVS V3.5; OWASP CSRF
Prevention Cheat Sheet).

Inside a session: the synchroniser token is a keyed hash (`identity_keys.csrf`) of the session id.
Nothing is stored; a page gets the token in its forms (and the WebAuthn script sends it in the
`X-CSRF-Token` header); a POST must present it, compared in constant time. An attacker's page can
make the browser send the cookie (SameSite=Strict already stops that in current browsers; this is
the second layer) but cannot read the token, and cannot compute it without the session id and the
key. A new session id (login, rotation) means a new token.

Before a session exists (the login and invitation forms) there is no session id to bind to, yet
login CSRF matters: an attacker who logs a victim into the attacker's account can watch what the
victim then types. So those forms use a *signed double-submit cookie*: the server sets a random
nonce in the `__Host-bp_csrf` cookie (Secure, HttpOnly, SameSite=Strict, Path=/) and puts
HMAC(key, "pre-session:" + nonce) in the form. The POST must carry both and they must match. A
cross-site attacker can neither read the cookie nor the page; and because the form value is keyed,
even an attacker able to plant a cookie (the `__Host-` prefix already forbids a sibling domain from
doing it) cannot forge the matching form value without the server's key. The "pre-session:" prefix
separates these values from session-bound tokens (session ids never contain a colon).

`Origin` / `Sec-Fetch-Site` are checked by the web layer too when a browser sends them (defence in
depth; they are absent from old browsers, so they cannot be the only check).
"""

from __future__ import annotations

import secrets
from typing import Final

from bastionpay.identity.keys import IdentityKeys
from bastionpay.kernel.errors import PermissionDenied

CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
PRESESSION_COOKIE: Final = "__Host-bp_csrf"
_PRESESSION_PREFIX: Final = "pre-session:"
# A token is 64 hex characters; a much longer value is not one and is not hashed.
_MAX_PRESENTED: Final = 128
_MAX_NONCE: Final = 64


def _failed() -> PermissionDenied:
    # One message for every failure; it says nothing about which part was wrong.
    return PermissionDenied(
        "This form has expired or did not come from this site. Reload the page and try again.",
        code="csrf_failed",
    )


def token_for(keys: IdentityKeys, session_token: str) -> str:
    """The synchroniser token for the session whose id is `session_token`."""
    return keys.csrf.hexdigest(session_token)


def check(keys: IdentityKeys, session_token: str, presented: str | None) -> None:
    """Raise PermissionDenied(code="csrf_failed") unless `presented` is the session's token."""
    if not session_token or not presented or len(presented) > _MAX_PRESENTED:
        raise _failed()
    # KeyedHasher.matches compares with hmac.compare_digest: constant time.
    if not keys.csrf.matches(session_token, presented):
        raise _failed()


def new_presession_nonce() -> str:
    """A fresh random value for the pre-session cookie (256 bits)."""
    return secrets.token_urlsafe(32)


def presession_token(keys: IdentityKeys, nonce: str) -> str:
    """The form value that goes with the pre-session cookie `nonce`."""
    return keys.csrf.hexdigest(_PRESESSION_PREFIX + nonce)


def check_presession(keys: IdentityKeys, nonce: str | None, presented: str | None) -> None:
    """Raise PermissionDenied(code="csrf_failed") unless the form value matches the cookie."""
    if not nonce or len(nonce) > _MAX_NONCE:
        raise _failed()
    if not presented or len(presented) > _MAX_PRESENTED:
        raise _failed()
    if not keys.csrf.matches(_PRESESSION_PREFIX + nonce, presented):
        raise _failed()

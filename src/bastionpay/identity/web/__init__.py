"""The identity pages: login, MFA, enrollment, account security, logout, invitations (issue 5,
items 4 and 7; SECURITY-REQUIREMENTS I3, I4, T3; docs/identity.md "Sessions and pages").

Server-rendered Jinja2 with auto-escaping, no inline script or style, a strict
Content-Security-Policy on every page, no third-party assets, `Cache-Control: no-store`. Every POST
checks a CSRF token; login and MFA attempts are rate limited with the fail-closed `LOGIN_*`
categories. The api mounts `routes(runtime)`; other parts (the OAuth consent page) ask
`current_user(runtime, request)` who is logged in.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from bastionpay.db.uow import unit_of_work
from bastionpay.identity import sessions
from bastionpay.identity.models import User, UserSession
from bastionpay.identity.web.account import AccountPages
from bastionpay.identity.web.core import Core
from bastionpay.identity.web.enroll import EnrollPages
from bastionpay.identity.web.login import LoginPages
from bastionpay.identity.web.render import STATIC_PREFIX
from bastionpay.runtime import Runtime


def routes(runtime: Runtime) -> list[BaseRoute]:
    """Every identity page, its JSON helpers (WebAuthn) and its static files."""
    core = Core(runtime)
    return [
        *LoginPages(core).routes(),
        *EnrollPages(core).routes(),
        *AccountPages(core).routes(),
        Route(STATIC_PREFIX + "{name}", core.renderer.serve_static, methods=["GET"]),
    ]


def current_user(runtime: Runtime, request: Request) -> tuple[User, UserSession] | None:
    """The fully authenticated user of this request's session cookie, or None.

    Only "active" sessions count (password and second factor proven, I3); a password-stage
    session is None here. Blocking (database): call it from a worker thread. It may write (the
    once-a-minute `last_seen` touch, an expiry), so it runs its own short write unit of work.
    State-changing callers must still check CSRF (`identity.csrf.check`) themselves.
    """
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        return None
    with unit_of_work(runtime.db, write=True) as session:
        loaded = sessions.load(
            session,
            runtime.identity_keys,
            token,
            now=runtime.clock.now(),
            settings=runtime.settings,
        )
    if loaded is None or loaded[1].stage != sessions.STAGE_ACTIVE:
        return None
    return loaded

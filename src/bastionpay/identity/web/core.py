"""What every identity page handler shares: the runtime, the session at hand, errors, threads.

Handlers are thin async functions that read the body and then run one synchronous function in a
worker thread (`anyio.to_thread.run_sync`): the database, argon2 (I2: hashing never on the event
loop, so logins cannot stall payments) and template rendering all happen there.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastionpay.audit.events import record
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.networks import parse_networks
from bastionpay.edge.ratelimit import LOGIN_ACCOUNT, LOGIN_IP
from bastionpay.identity import csrf, sessions
from bastionpay.identity.accounts import user_event
from bastionpay.identity.mfa.base import Factor, fail
from bastionpay.identity.mfa.stepup import require_step_up
from bastionpay.identity.models import User, UserSession
from bastionpay.identity.web.http import PAGE_HEADERS, Client, client_of
from bastionpay.identity.web.render import Renderer
from bastionpay.kernel.errors import (
    BastionPayError,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
)
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.identity.web")

# Second-factor attempts per user (I3, T4): a 6-digit TOTP code with ±1 step has 3 chances in a
# million per guess; 5 guesses per 5 minutes keeps a day's guessing near 0.4 %, while password
# guessing is limited separately by `identity.login` (account, IP, global). Every attempt counts,
# successful or not (the limiter cannot count failures alone), which a person never reaches.
MFA_USER_LIMIT: Final = "5/5minute"

P = ParamSpec("P")
R = TypeVar("R")
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Current:
    """The session a request carries, once `sessions.load` accepted it."""

    user: User
    record: UserSession
    token: str

    @property
    def active(self) -> bool:
        return self.record.stage == sessions.STAGE_ACTIVE

    def __repr__(self) -> str:  # the token is a secret (L3)
        return f"Current(user={self.user.id!r}, stage={self.record.stage!r})"


class Core:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.keys = runtime.identity_keys
        self.proxies = parse_networks(runtime.settings.trusted_proxies)
        self.renderer = Renderer()

    # --- plumbing -------------------------------------------------------------------------------

    def now(self) -> int:
        return self.runtime.clock.now()

    def client(self, request: Request) -> Client:
        return client_of(request, self.proxies)

    def write(self) -> AbstractContextManager[Session]:
        return unit_of_work(self.runtime.db, write=True)

    @staticmethod
    async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def current(self, session: Session, request: Request) -> Current | None:
        token = request.cookies.get(sessions.SESSION_COOKIE)
        loaded = sessions.load(session, self.keys, token, now=self.now(), settings=self.settings)
        if loaded is None or token is None:
            return None
        return Current(user=loaded[0], record=loaded[1], token=token)

    @staticmethod
    def presession_nonce(request: Request) -> tuple[str, bool]:
        """The pre-session CSRF nonce (identity.csrf) and whether it is new and must be set.
        An existing one is kept, so two open login tabs both work."""
        nonce = request.cookies.get(csrf.PRESESSION_COOKIE)
        if nonce is not None and 20 <= len(nonce) <= 64:
            return nonce, False
        return csrf.new_presession_nonce(), True

    def csrf_token(self, current: Current) -> str:
        return csrf.token_for(self.keys, current.token)

    def step_up_fresh(self, current: Current) -> bool:
        try:
            require_step_up(
                current.record, now=self.now(), max_age=self.settings.step_up_max_age_seconds
            )
        except StepUpRequired:
            return False
        return True

    def limit_mfa(self, user_id: str, ip: str | None) -> None:
        """Count one second-factor attempt (fails closed if the counter store is down, T4)."""
        limits = self.runtime.rate_limits
        limits.hit(LOGIN_IP, self.settings.rate_limit_login_ip, "mfa", ip or "unknown")
        limits.hit(LOGIN_ACCOUNT, MFA_USER_LIMIT, f"mfa:{user_id}")

    def refuse_if_locked(
        self, session: Session, current: Current, factor: Factor, client: Client
    ) -> None:
        """A locked account proves nothing (I2): raise `MfaFailed` (audited, reason `locked`)
        before any code is checked, so guessing cannot go on during the lock."""
        user = current.user
        if user.locked_until is not None and user.locked_until > self.now():
            raise fail(session, user, factor, "locked", origin=client.origin())

    def second_factor_failed(self, session: Session, current: Current, client: Client) -> None:
        """Count one failed second-factor proof toward the account's lockout (I2, PCI DSS 8.3.4).

        The per-user attempt limit alone (`MFA_USER_LIMIT`) still lets someone who holds the
        password guess ~1,440 codes a day, and logging in again with the password resets the
        password-failure counter, so second-factor failures are counted apart, per user in the
        fail-closed LOGIN_ACCOUNT store: the `lockout_threshold`th failure within
        `lockout_seconds` locks the account for `lockout_seconds`, audited as
        `identity.login.locked`, and a half-finished login ends. The counter is a sliding window
        (it cannot be reset on success), so old mistakes age out rather than being forgiven.
        """
        user = current.user
        now = self.now()
        if user.locked_until is not None and user.locked_until > now:
            return  # already locked: not extended (as identity.login does for passwords)
        settings = self.settings
        limit = f"{settings.lockout_threshold - 1}/{settings.lockout_seconds} second"
        try:
            self.runtime.rate_limits.hit(LOGIN_ACCOUNT, limit, f"mfa-failures:{user.id}")
        except RateLimited:
            user.locked_until = now + settings.lockout_seconds
            record(
                session,
                user_event(
                    "identity.login.locked",
                    user,
                    actor_type="user",
                    actor_id=user.id,
                    outcome="denied",
                    origin=client.origin(),
                    details={
                        "second_factor_failures": settings.lockout_threshold,
                        "locked_until": user.locked_until,
                    },
                ),
            )
            if not current.active:
                sessions.revoke(session, current.record, now=now)

    def limit_ip(self, purpose: str, ip: str | None) -> None:
        self.runtime.rate_limits.hit(
            LOGIN_IP, self.settings.rate_limit_login_ip, purpose, ip or "unknown"
        )

    def finish_login(
        self,
        session: Session,
        current: Current,
        *,
        factor: str,
        client: Client,
        first_enrollment: bool = False,
    ) -> sessions.IssuedSession:
        """Password and second factor proven: a new session id (I4, no fixation), stage "active",
        `mfa_at` now, and the login audited (L1) — the one `identity.login.success` event."""
        now = self.now()
        issued = sessions.rotate(
            session,
            self.keys,
            current.record,
            stage=sessions.STAGE_ACTIVE,
            now=now,
            settings=self.settings,
        )
        sessions.record_mfa(session, issued.record, now=now)
        # A login is complete only with the second factor: a password alone must not keep a
        # leaked, dormant account from the 90-day inactivity disable (I7).
        session.execute(update(User).where(User.id == current.user.id).values(last_login_at=now))
        record(
            session,
            user_event(
                "identity.login.success",
                current.user,
                actor_type="user",
                actor_id=current.user.id,
                origin=client.origin(),
                details={"factor": factor, "first_enrollment": first_enrollment},
            ),
        )
        return issued

    # --- errors ---------------------------------------------------------------------------------

    def error_page(self, exc: BastionPayError) -> Response:
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited | ServiceUnavailable):
            headers["retry-after"] = str(exc.retry_after)
        return self.renderer.page(
            "error.html",
            status=exc.http_status,
            headers=headers,
            title="Something went wrong",
            error=exc.message,
        )

    @staticmethod
    def error_json(exc: BastionPayError) -> Response:
        headers = dict(PAGE_HEADERS)
        if isinstance(exc, RateLimited | ServiceUnavailable):
            headers["retry-after"] = str(exc.retry_after)
        body = {"error": {"message": exc.message, "code": exc.code}}
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    def guarded(self, handler: Handler, *, as_json: bool = False) -> Handler:
        """Errors become an HTML page (or a JSON error for the WebAuthn calls); anything
        unexpected fails closed with a generic message (P3) and goes to the log, not the page."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except BastionPayError as exc:
                return self.error_json(exc) if as_json else self.error_page(exc)
            except Exception:
                log.exception("identity page failed: %s %s", request.method, request.url.path)
                failure = BastionPayError("An unexpected error occurred. Try again.")
                return self.error_json(failure) if as_json else self.error_page(failure)

        return endpoint


def json_ok(body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        media_type="application/json",
        headers=dict(PAGE_HEADERS),
    )

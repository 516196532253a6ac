"""Logging in: password, then the second factor; step-up; WebAuthn assertions (I2, I3, I4).

    GET  /login                              the form (pre-session CSRF cookie, see identity.csrf)
    POST /login                              password → a "password"-stage session → MFA or enroll
    GET  /login/mfa, POST /login/mfa         TOTP or recovery code → rotated "active" session
    GET  /account/step-up, POST …            re-prove a factor: `mfa_at` = now (I3 step-up)
    POST /mfa/webauthn/authenticate/options  a WebAuthn challenge (JSON, CSRF header)
    POST /mfa/webauthn/authenticate          the assertion: login or step-up, by session stage

A session that has proven only the password can do nothing but finish MFA (or enroll its first
factor, identity.web.enroll) and log out: `current_user` and the `/v1` pipeline accept only
"active" sessions (I3: no bypass).
"""

from __future__ import annotations

import json
from typing import Final

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastionpay.identity import csrf, sessions
from bastionpay.identity.login import password_login
from bastionpay.identity.mfa import factors, recovery, totp
from bastionpay.identity.mfa import webauthn as mfa_webauthn
from bastionpay.identity.mfa.base import MfaFailed
from bastionpay.identity.web.core import Core, Current, json_ok
from bastionpay.identity.web.http import (
    Client,
    check_same_origin,
    clear_host_cookie,
    read_form,
    read_json,
    redirect,
    safe_next,
    set_host_cookie,
    with_next,
)
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)

WELCOME: Final = "Your account is ready. Log in with your new password."
_MAX_EMAIL: Final = 320
_MAX_PASSWORD: Final = 1024
_MAX_CODE: Final = 64


class LoginPages:
    def __init__(self, core: Core) -> None:
        self.core = core

    def routes(self) -> list[BaseRoute]:
        g = self.core.guarded
        return [
            Route("/login", g(self.login_page), methods=["GET"]),
            Route("/login", g(self.login_submit), methods=["POST"]),
            Route("/login/mfa", g(self.mfa_page), methods=["GET"]),
            Route("/login/mfa", g(self.mfa_submit), methods=["POST"]),
            Route("/account/step-up", g(self.step_up_page), methods=["GET"]),
            Route("/account/step-up", g(self.step_up_submit), methods=["POST"]),
            Route(
                "/mfa/webauthn/authenticate/options",
                g(self.webauthn_options, as_json=True),
                methods=["POST"],
            ),
            Route(
                "/mfa/webauthn/authenticate",
                g(self.webauthn_finish, as_json=True),
                methods=["POST"],
            ),
        ]

    # --- password ---------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._login_page, request)

    def _login_page(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        current = None
        if request.cookies.get(sessions.SESSION_COOKIE):
            # Only a browser with a session cookie costs a database transaction here.
            with self.core.write() as s:
                current = self.core.current(s, request)
        if current is not None:
            if current.active:
                return redirect(next_path)
            return redirect(with_next(_second_step(current), next_path))
        notice = WELCOME if request.query_params.get("welcome") == "1" else None
        return self.login_form(request, next_path, notice=notice)

    def login_form(
        self,
        request: Request,
        next_path: str,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
        email: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response:
        nonce, fresh = self.core.presession_nonce(request)
        response = self.core.renderer.page(
            "login.html",
            status=status,
            headers=headers,
            title="Log in",
            csrf=csrf.presession_token(self.core.keys, nonce),
            next=next_path,
            email=email,
            error=error,
            notice=notice,
        )
        if fresh:
            set_host_cookie(response, csrf.PRESESSION_COOKIE, nonce)
        return response

    async def login_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._login_submit, request, form)

    def _login_submit(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        next_path = safe_next(form.get("next"))
        try:
            check_same_origin(request, core.settings)
            csrf.check_presession(
                core.keys, request.cookies.get(csrf.PRESESSION_COOKIE), form.get(csrf.CSRF_FIELD)
            )
        except PermissionDenied as exc:
            return self.login_form(request, next_path, error=exc.message, status=403)
        email = form.get("email", "")[:_MAX_EMAIL]
        password = form.get("password", "")[:_MAX_PASSWORD]
        client = core.client(request)
        try:
            # Limits (global, IP, account) before any hash; argon2 in this worker thread (I2).
            user = password_login(
                core.runtime, email=email, password=password, origin=client.origin()
            )
        except (RateLimited, ServiceUnavailable) as exc:
            return self.login_form(
                request,
                next_path,
                error=exc.message,
                status=exc.http_status,
                email=email,
                headers={"retry-after": str(exc.retry_after)},
            )
        except AuthenticationError as exc:
            return self.login_form(
                request, next_path, error=exc.message, status=exc.http_status, email=email
            )
        now = core.now()
        with core.write() as s:
            # Whatever session this browser had ends: a login always starts a fresh one (I4).
            previous = core.current(s, request)
            if previous is not None:
                sessions.revoke(s, previous.record, now=now)
            issued = sessions.start(
                s,
                core.keys,
                user,
                stage=sessions.STAGE_PASSWORD,
                now=now,
                settings=core.settings,
                ip=client.ip,
                user_agent=client.user_agent,
            )
        # I3: no factor yet → enrollment is forced before anything else is reachable.
        target = "/login/mfa" if user.mfa_enrolled else "/mfa/enroll"
        response = redirect(with_next(target, next_path))
        set_host_cookie(response, sessions.SESSION_COOKIE, issued.token)
        clear_host_cookie(response, csrf.PRESESSION_COOKIE)
        return response

    # --- second factor: login and step-up ---------------------------------------------------

    async def mfa_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._challenge_page, request, step_up=False)

    async def step_up_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._challenge_page, request, step_up=True)

    def _challenge_page(self, request: Request, *, step_up: bool) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        with self.core.write() as s:
            current = self.core.current(s, request)
            moved = _misplaced(current, next_path, step_up=step_up)
            if moved is not None or current is None:
                return moved or redirect(with_next("/login", next_path))
            return self.challenge_form(s, current, next_path, step_up=step_up)

    def challenge_form(
        self,
        s: Session,
        current: Current,
        next_path: str,
        *,
        step_up: bool,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        available = factors(s, current.user)
        return self.core.renderer.page(
            "challenge.html",
            status=status,
            title="Confirm it is you" if step_up else "Second factor",
            action="/account/step-up" if step_up else "/login/mfa",
            step_up=step_up,
            user=current.user if step_up else None,
            csrf=self.core.csrf_token(current),
            next=next_path,
            has_totp=available.totp,
            has_webauthn=available.webauthn > 0,
            recovery_left=available.recovery_left,
            webauthn=available.webauthn > 0,
            error=error,
        )

    async def mfa_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._prove, request, form, step_up=False)

    async def step_up_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._prove, request, form, step_up=True)

    def _prove(self, request: Request, form: dict[str, str], *, step_up: bool) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        next_path = safe_next(form.get("next"))
        client = core.client(request)
        factor = form.get("factor", "")
        code = form.get("code", "")[:_MAX_CODE]
        issued: sessions.IssuedSession | None = None
        with core.write() as s:
            current = core.current(s, request)
            moved = _misplaced(current, next_path, step_up=step_up)
            if moved is not None or current is None:
                return moved or redirect(with_next("/login", next_path))
            csrf.check(core.keys, current.token, form.get(csrf.CSRF_FIELD))
            core.limit_mfa(current.user.id, client.ip)
            try:
                _verify_code(s, core, current, factor, code, client)
            except MfaFailed as exc:
                # Counted toward the lockout (I2); may lock the account and end this login.
                core.second_factor_failed(s, current, client)
                # The failure's audit row commits with this unit of work (L1): not re-raised.
                return self.challenge_form(
                    s, current, next_path, step_up=step_up, error=exc.message, status=401
                )
            if step_up:
                sessions.record_mfa(s, current.record, now=core.now())
            else:
                issued = core.finish_login(s, current, factor=factor, client=client)
        response = redirect(next_path)
        if issued is not None:
            set_host_cookie(response, sessions.SESSION_COOKIE, issued.token)
        return response

    # --- WebAuthn assertions ----------------------------------------------------------------

    async def webauthn_options(self, request: Request) -> Response:
        return await self.core.in_thread(self._webauthn_options, request)

    def _webauthn_options(self, request: Request) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        client = core.client(request)
        with core.write() as s:
            current = _authenticating(core, s, request)
            core.limit_ip("webauthn-options", client.ip)
            challenge_id, options = mfa_webauthn.authentication_options(
                s, core.settings, current.user, now=core.now()
            )
        return json_ok({"challenge_id": challenge_id, "publicKey": json.loads(options)})

    async def webauthn_finish(self, request: Request) -> Response:
        body = await read_json(request)
        return await self.core.in_thread(self._webauthn_finish, request, body)

    def _webauthn_finish(self, request: Request, body: dict[str, object]) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        client = core.client(request)
        next_path = safe_next(_text(body.get("next")))
        challenge_id = _text(body.get("challenge_id"))
        credential = body.get("credential")
        if not challenge_id or not isinstance(credential, dict):
            raise InvalidRequestError("A WebAuthn credential and its challenge are required.")
        issued: sessions.IssuedSession | None = None
        failure: BastionPayError | None = None
        with core.write() as s:
            current = _authenticating(core, s, request)
            core.limit_mfa(current.user.id, client.ip)
            try:
                core.refuse_if_locked(s, current, "webauthn", client)
                mfa_webauthn.verify_authentication(
                    s,
                    core.settings,
                    current.user,
                    challenge_id=challenge_id,
                    credential_json=json.dumps(credential),
                    now=core.now(),
                    origin=client.origin(),
                )
            except MfaFailed as exc:
                core.second_factor_failed(s, current, client)  # toward the lockout (I2)
                failure = exc  # committed with its audit row (L1), answered below
            else:
                if current.active:
                    sessions.record_mfa(s, current.record, now=core.now())
                else:
                    issued = core.finish_login(s, current, factor="webauthn", client=client)
        if failure is not None:
            return core.error_json(failure)
        response = json_ok({"redirect": next_path})
        if issued is not None:
            set_host_cookie(response, sessions.SESSION_COOKIE, issued.token)
        return response


def _second_step(current: Current) -> str:
    return "/login/mfa" if current.user.mfa_enrolled else "/mfa/enroll"


def _misplaced(current: Current | None, next_path: str, *, step_up: bool) -> Response | None:
    """Where a request for the login-MFA or step-up page belongs instead, if not there."""
    if current is None:
        return redirect(with_next("/login", next_path))
    if step_up and not current.active:
        return redirect(with_next(_second_step(current), next_path))
    if not step_up and current.active:
        return redirect(next_path)
    if not step_up and not current.user.mfa_enrolled:
        return redirect(with_next("/mfa/enroll", next_path))
    return None


def _authenticating(core: Core, s: Session, request: Request) -> Current:
    """The session a WebAuthn assertion is for: finishing a login, or a step-up; CSRF checked."""
    current = core.current(s, request)
    if current is None:
        raise AuthenticationError("Your session has expired. Log in again.", code="session_invalid")
    if not current.active and not current.user.mfa_enrolled:
        raise PermissionDenied("Enroll a second factor first.", code="mfa_enrollment_required")
    csrf.check(core.keys, current.token, request.headers.get(csrf.CSRF_HEADER))
    return current


def _verify_code(
    s: Session, core: Core, current: Current, factor: str, code: str, client: Client
) -> None:
    now = core.now()
    if factor == "totp":
        core.refuse_if_locked(s, current, "totp", client)
        totp.verify(s, core.keys, current.user, code, now=now, origin=client.origin())
    elif factor == "recovery_code":
        core.refuse_if_locked(s, current, "recovery_code", client)
        recovery.use(s, core.keys, current.user, code, now=now, origin=client.origin())
    else:
        raise InvalidRequestError("Choose a second factor.", param="factor")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= 2048 else None

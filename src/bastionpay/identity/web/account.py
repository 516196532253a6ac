"""Account security, logout and invitation acceptance (I3, I4, L1).

    GET  /account                        who you are, your factors and devices, your sessions
    POST /account/sessions/revoke        end one of your sessions
    POST /account/logout-everywhere      end all of them (and every refresh token: generation bump)
    POST /account/factors/remove         remove a security key or the authenticator app (step-up)
    GET  /logout, POST /logout           end this session
    GET  /invitations/accept?token=…     set a password for an invited account
    POST /invitations/accept

Every POST checks the CSRF token (session-bound, or the pre-session pair for the invitation form)
and is audited. Sessions are listed by row number: the page never shows a session id or its hash,
and `sessions.find_owned` makes another user's row number simply not found (I5 object level).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastionpay.audit.events import record
from bastionpay.identity import csrf, sessions
from bastionpay.identity.accounts import user_event
from bastionpay.identity.invitations import accept_invitation
from bastionpay.identity.mfa import factors, remove_totp, remove_webauthn
from bastionpay.identity.mfa.webauthn import list_credentials
from bastionpay.identity.passwords import passwords_for
from bastionpay.identity.web.core import Core, Current
from bastionpay.identity.web.http import (
    check_same_origin,
    clear_host_cookie,
    read_form,
    redirect,
    set_host_cookie,
    with_next,
)
from bastionpay.kernel.errors import InvalidRequestError, PermissionDenied

_MAX_TOKEN: Final = 128
_MAX_PASSWORD: Final = 1024


def when(ts: int | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class AccountPages:
    def __init__(self, core: Core) -> None:
        self.core = core

    def routes(self) -> list[BaseRoute]:
        g = self.core.guarded
        return [
            Route("/account", g(self.account_page), methods=["GET"]),
            Route("/account/sessions/revoke", g(self.revoke_session), methods=["POST"]),
            Route("/account/logout-everywhere", g(self.logout_everywhere), methods=["POST"]),
            Route("/account/factors/remove", g(self.remove_factor), methods=["POST"]),
            Route("/logout", g(self.logout_page), methods=["GET"]),
            Route("/logout", g(self.logout_submit), methods=["POST"]),
            Route("/invitations/accept", g(self.invitation_page), methods=["GET"]),
            Route("/invitations/accept", g(self.invitation_submit), methods=["POST"]),
        ]

    def _active(self, s: Session, request: Request) -> Current | Response:
        current = self.core.current(s, request)
        if current is None:
            return redirect(with_next("/login", "/account"))
        if not current.active:
            return redirect("/login/mfa" if current.user.mfa_enrolled else "/mfa/enroll")
        return current

    def _checked(self, s: Session, request: Request, form: dict[str, str]) -> Current | Response:
        check_same_origin(request, self.core.settings)
        current = self._active(s, request)
        if isinstance(current, Current):
            csrf.check(self.core.keys, current.token, form.get(csrf.CSRF_FIELD))
        return current

    # --- the account page -----------------------------------------------------------------------

    async def account_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._account_page, request)

    def _account_page(self, request: Request) -> Response:
        core = self.core
        with core.write() as s:
            current = self._active(s, request)
            if not isinstance(current, Current):
                return current
            available = factors(s, current.user)
            devices = [
                {
                    "id": d.id,
                    "name": d.name,
                    "created": when(d.created),
                    "used": when(d.last_used_at),
                }
                for d in list_credentials(s, current.user)
            ]
            live = [
                {
                    "pk": row.pk,
                    "ip": row.ip or "unknown",
                    "user_agent": row.user_agent or "unknown",
                    "created": when(row.created),
                    "last_seen": when(row.last_seen),
                    "current": row.pk == current.record.pk,
                }
                for row in sessions.list_live(
                    s, current.user.id, now=core.now(), settings=core.settings
                )
            ]
        return core.renderer.page(
            "account.html",
            title="Account security",
            user=current.user,
            csrf=core.csrf_token(current),
            factors=available,
            devices=devices,
            sessions=live,
            step_up_fresh=core.step_up_fresh(current),
            notice=_NOTICES.get(request.query_params.get("done", "")),
        )

    async def revoke_session(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._revoke_session, request, form)

    def _revoke_session(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        raw = form.get("session", "")
        client = core.client(request)
        with core.write() as s:
            current = self._checked(s, request, form)
            if not isinstance(current, Current):
                return current
            row = sessions.find_owned(s, current.user.id, int(raw)) if raw.isdigit() else None
            if row is None or row.revoked_at is not None:
                raise InvalidRequestError("No such session.", param="session")
            sessions.revoke(s, row, now=core.now())
            record(
                s,
                user_event(
                    "identity.session.revoke",
                    current.user,
                    actor_type="user",
                    actor_id=current.user.id,
                    origin=client.origin(),
                    details={"session": row.pk, "own": row.pk == current.record.pk},
                ),
            )
            own = row.pk == current.record.pk
        if own:
            response = redirect("/login")
            clear_host_cookie(response, sessions.SESSION_COOKIE)
            return response
        return redirect("/account?done=revoked")

    async def logout_everywhere(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._logout_everywhere, request, form)

    def _logout_everywhere(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        client = core.client(request)
        with core.write() as s:
            current = self._checked(s, request, form)
            if not isinstance(current, Current):
                return current
            ended = sessions.revoke_all(s, current.user.id, now=core.now())
            # The generation bump also ends OAuth refresh tokens issued to this user's consents
            # (identity.models.User.security_generation): "everywhere" means everywhere (I4).
            current.user.security_generation += 1
            record(
                s,
                user_event(
                    "identity.logout_everywhere",
                    current.user,
                    actor_type="user",
                    actor_id=current.user.id,
                    origin=client.origin(),
                    details={"sessions_ended": ended},
                ),
            )
        response = redirect("/login")
        clear_host_cookie(response, sessions.SESSION_COOKIE)
        return response

    async def remove_factor(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._remove_factor, request, form)

    def _remove_factor(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        client = core.client(request)
        with core.write() as s:
            current = self._checked(s, request, form)
            if not isinstance(current, Current):
                return current
            if not core.step_up_fresh(current):
                # Removing a factor weakens the account: prove one first (I3 step-up).
                return redirect(with_next("/account/step-up", "/account"))
            kind, credential = form.get("factor", ""), form.get("credential", "")[:64]
            if kind == "totp":
                remove_totp(s, current.user, origin=client.origin())
            elif kind == "webauthn":
                remove_webauthn(s, current.user, credential, origin=client.origin())
            else:
                raise InvalidRequestError("Choose a factor to remove.", param="factor")
        return redirect("/account?done=removed")

    # --- logout ---------------------------------------------------------------------------------

    async def logout_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._logout_page, request)

    def _logout_page(self, request: Request) -> Response:
        with self.core.write() as s:
            current = self.core.current(s, request)
        if current is None:
            return redirect("/login")
        # Logging out changes state, so it is a POST with a CSRF token; this page holds the button.
        return self.core.renderer.page(
            "logout.html",
            title="Log out",
            user=current.user if current.active else None,
            csrf=self.core.csrf_token(current),
        )

    async def logout_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._logout_submit, request, form)

    def _logout_submit(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        client = core.client(request)
        with core.write() as s:
            current = core.current(s, request)
            if current is not None:
                csrf.check(core.keys, current.token, form.get(csrf.CSRF_FIELD))
                sessions.revoke(s, current.record, now=core.now())
                record(
                    s,
                    user_event(
                        "identity.logout",
                        current.user,
                        actor_type="user",
                        actor_id=current.user.id,
                        origin=client.origin(),
                        details={"stage": current.record.stage},
                    ),
                )
        response = redirect("/login")
        clear_host_cookie(response, sessions.SESSION_COOKIE)
        return response

    # --- invitations ----------------------------------------------------------------------------

    async def invitation_page(self, request: Request) -> Response:
        return await self.core.in_thread(
            self._invitation_form, request, request.query_params.get("token", "")[:_MAX_TOKEN]
        )

    def _invitation_form(
        self, request: Request, token: str, *, error: str | None = None, status: int = 200
    ) -> Response:
        nonce, fresh = self.core.presession_nonce(request)
        response = self.core.renderer.page(
            "invitation.html",
            status=status,
            title="Accept your invitation",
            csrf=csrf.presession_token(self.core.keys, nonce),
            token=token,
            error=error,
            min_length=self.core.settings.password_min_length,
        )
        if fresh:
            set_host_cookie(response, csrf.PRESESSION_COOKIE, nonce)
        return response

    async def invitation_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._invitation_submit, request, form)

    def _invitation_submit(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        token = form.get("token", "")[:_MAX_TOKEN]
        try:
            check_same_origin(request, core.settings)
            csrf.check_presession(
                core.keys, request.cookies.get(csrf.PRESESSION_COOKIE), form.get(csrf.CSRF_FIELD)
            )
        except PermissionDenied as exc:
            return self._invitation_form(request, token, error=exc.message, status=403)
        # Accepting hashes a password (argon2): limited per address like a login (T4, fail closed).
        core.limit_ip("invitation", core.client(request).ip)
        password = form.get("password", "")[:_MAX_PASSWORD]
        if password != form.get("password_confirm", "")[:_MAX_PASSWORD]:
            return self._invitation_form(
                request, token, error="The two passwords do not match.", status=400
            )
        try:
            # argon2 runs here, in this worker thread, never on the event loop (I2).
            with core.write() as s:
                accept_invitation(
                    s,
                    core.keys,
                    passwords_for(core.settings),
                    token=token,
                    password=password,
                    now=core.now(),
                )
        except InvalidRequestError as exc:
            return self._invitation_form(request, token, error=exc.message, status=400)
        # The new account logs in like any other, and enrolls its first factor there (I3).
        return redirect("/login?welcome=1")


_NOTICES: Final = {
    "revoked": "The session has been ended.",
    "removed": "The factor has been removed.",
}

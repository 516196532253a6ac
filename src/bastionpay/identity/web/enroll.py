"""Enrolling second factors and recovery codes (I3: MFA mandatory, first login forces enrollment).

    GET  /mfa/enroll                         a new TOTP seed as a QR code (inline SVG) + WebAuthn
    POST /mfa/enroll                         confirm the TOTP code
    POST /mfa/webauthn/register/options      a registration challenge (JSON, CSRF header)
    POST /mfa/webauthn/register              the new credential
    GET  /account/recovery-codes, POST …     (re)generate recovery codes, shown once (step-up)

Who may enroll:
- a "password"-stage session whose user has no factor yet (first login): enrolling proves the new
  factor, so the session then becomes "active" under a new id and the login is audited; the TOTP
  path shows the first recovery codes right away (once: they are in that response only);
- an "active" session with a fresh step-up (a new factor is a security change: proving an
  existing factor first keeps a stolen session from adding the attacker's authenticator).
A "password"-stage session of a user who already has a factor may not enroll: that would be an
MFA bypass (I3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastionpay.identity import csrf, sessions
from bastionpay.identity.mfa import factors, recovery, totp
from bastionpay.identity.mfa import webauthn as mfa_webauthn
from bastionpay.identity.mfa.base import MfaFailed
from bastionpay.identity.web.core import Core, Current, json_ok
from bastionpay.identity.web.http import (
    check_same_origin,
    read_form,
    read_json,
    redirect,
    safe_next,
    set_host_cookie,
    with_next,
)
from bastionpay.identity.web.render import qr_data_uri
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    PermissionDenied,
)

_MAX_CODE: Final = 64
_MAX_NAME: Final = 64
DEFAULT_KEY_NAME: Final = "Security key"


@dataclass(frozen=True)
class _Gate:
    """Either the session may enroll (`current`), or where to send it instead (`elsewhere`)."""

    current: Current | None
    elsewhere: Response | None


class EnrollPages:
    def __init__(self, core: Core) -> None:
        self.core = core

    def routes(self) -> list[BaseRoute]:
        g = self.core.guarded
        return [
            Route("/mfa/enroll", g(self.enroll_page), methods=["GET"]),
            Route("/mfa/enroll", g(self.enroll_submit), methods=["POST"]),
            Route(
                "/mfa/webauthn/register/options",
                g(self.register_options, as_json=True),
                methods=["POST"],
            ),
            Route(
                "/mfa/webauthn/register", g(self.register_finish, as_json=True), methods=["POST"]
            ),
            Route("/account/recovery-codes", g(self.codes_page), methods=["GET"]),
            Route("/account/recovery-codes", g(self.codes_submit), methods=["POST"]),
        ]

    def _gate(self, s: Session, request: Request, next_path: str) -> _Gate:
        current = self.core.current(s, request)
        if current is None:
            return _Gate(None, redirect(with_next("/login", next_path)))
        if not current.active:
            if current.user.mfa_enrolled:
                return _Gate(None, redirect(with_next("/login/mfa", next_path)))
            return _Gate(current, None)
        if not self.core.step_up_fresh(current):
            back = with_next("/mfa/enroll", next_path)
            return _Gate(None, redirect(with_next("/account/step-up", back)))
        return _Gate(current, None)

    # --- TOTP -----------------------------------------------------------------------------------

    async def enroll_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._enroll_page, request)

    def _enroll_page(self, request: Request) -> Response:
        core = self.core
        next_path = safe_next(request.query_params.get("next"))
        with core.write() as s:
            gate = self._gate(s, request, next_path)
            if gate.current is None:
                return gate.elsewhere or redirect("/login")
            current = gate.current
            enrollment = totp.begin_enrollment(
                s, core.keys, current.user, now=core.now(), issuer=core.settings.webauthn_rp_name
            )
        secret = enrollment.secret_b32
        return core.renderer.page(
            "enroll.html",
            title="Set up a second factor",
            first=not current.active,
            user=current.user if current.active else None,
            csrf=core.csrf_token(current),
            next=next_path,
            qr=qr_data_uri(enrollment.provisioning_uri),
            secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            credential_id=enrollment.credential_id,
            webauthn=True,
        )

    async def enroll_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._enroll_submit, request, form)

    def _enroll_submit(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        next_path = safe_next(form.get("next"))
        client = core.client(request)
        credential_id = form.get("credential_id", "")[:_MAX_CODE]
        issued: sessions.IssuedSession | None = None
        codes: list[str] | None = None
        with core.write() as s:
            gate = self._gate(s, request, next_path)
            if gate.current is None:
                return gate.elsewhere or redirect("/login")
            current = gate.current
            csrf.check(core.keys, current.token, form.get(csrf.CSRF_FIELD))
            core.limit_mfa(current.user.id, client.ip)
            first = not current.active
            try:
                totp.confirm_enrollment(
                    s,
                    core.keys,
                    current.user,
                    credential_id,
                    form.get("code", "")[:_MAX_CODE],
                    now=core.now(),
                    origin=client.origin(),
                )
            except MfaFailed as exc:
                # Same seed, same QR already scanned: ask for the code again (the audit row of the
                # failure commits with this unit of work, L1).
                return core.renderer.page(
                    "enroll.html",
                    status=401,
                    title="Set up a second factor",
                    first=first,
                    user=current.user if current.active else None,
                    csrf=core.csrf_token(current),
                    next=next_path,
                    qr=None,
                    secret=None,
                    credential_id=credential_id,
                    webauthn=False,
                    error=exc.message,
                )
            if first:
                issued = core.finish_login(
                    s, current, factor="totp", client=client, first_enrollment=True
                )
                codes = recovery.generate(
                    s, core.keys, current.user, now=core.now(), origin=client.origin()
                )
            else:
                sessions.record_mfa(s, current.record, now=core.now())
        if codes is None:
            return redirect("/account")
        response = core.renderer.page(
            "recovery_codes.html",
            title="Your recovery codes",
            user=current.user,
            csrf=csrf.token_for(core.keys, issued.token) if issued else core.csrf_token(current),
            codes=codes,
            remaining=len(codes),
            next=next_path,
        )
        if issued is not None:
            set_host_cookie(response, sessions.SESSION_COOKIE, issued.token)
        return response

    # --- WebAuthn registration ------------------------------------------------------------------

    async def register_options(self, request: Request) -> Response:
        return await self.core.in_thread(self._register_options, request)

    def _gate_json(self, s: Session, request: Request) -> Current:
        gate = self._gate(s, request, "/account")
        current = gate.current
        if current is None:
            # The page would redirect; a script gets an error it can show.
            if self.core.current(s, request) is None:
                raise AuthenticationError(
                    "Your session has expired. Log in again.", code="session_invalid"
                )
            raise PermissionDenied(
                "Confirm it is you (step-up) before adding a factor.", code="step_up_required"
            )
        csrf.check(self.core.keys, current.token, request.headers.get(csrf.CSRF_HEADER))
        return current

    def _register_options(self, request: Request) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        client = core.client(request)
        with core.write() as s:
            current = self._gate_json(s, request)
            core.limit_ip("webauthn-options", client.ip)
            challenge_id, options = mfa_webauthn.registration_options(
                s, core.settings, current.user, now=core.now()
            )
        return json_ok({"challenge_id": challenge_id, "publicKey": json.loads(options)})

    async def register_finish(self, request: Request) -> Response:
        body = await read_json(request)
        return await self.core.in_thread(self._register_finish, request, body)

    def _register_finish(self, request: Request, body: dict[str, object]) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        client = core.client(request)
        raw_next = body.get("next")
        next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
        challenge_id = body.get("challenge_id")
        credential = body.get("credential")
        raw_name = body.get("name")
        name = raw_name.strip()[:_MAX_NAME] if isinstance(raw_name, str) else ""
        if not isinstance(challenge_id, str) or not isinstance(credential, dict):
            raise InvalidRequestError("A WebAuthn credential and its challenge are required.")
        issued: sessions.IssuedSession | None = None
        failure: BastionPayError | None = None
        with core.write() as s:
            current = self._gate_json(s, request)
            core.limit_mfa(current.user.id, client.ip)
            first = not current.active
            try:
                mfa_webauthn.complete_registration(
                    s,
                    core.settings,
                    current.user,
                    challenge_id=challenge_id[:_MAX_CODE],
                    credential_json=json.dumps(credential),
                    name=name or DEFAULT_KEY_NAME,
                    now=core.now(),
                    origin=client.origin(),
                )
            except MfaFailed as exc:
                failure = exc  # its audit row commits with this unit of work (L1)
            else:
                if first:
                    issued = core.finish_login(
                        s, current, factor="webauthn", client=client, first_enrollment=True
                    )
                else:
                    sessions.record_mfa(s, current.record, now=core.now())
        if failure is not None:
            return core.error_json(failure)
        # First factor: the recovery-codes page comes next (a fresh step-up lets it generate them).
        target = with_next("/account/recovery-codes", next_path) if first else "/account"
        response = json_ok({"redirect": target})
        if issued is not None:
            set_host_cookie(response, sessions.SESSION_COOKIE, issued.token)
        return response

    # --- recovery codes -------------------------------------------------------------------------

    async def codes_page(self, request: Request) -> Response:
        return await self.core.in_thread(self._codes_page, request)

    def _codes_page(self, request: Request) -> Response:
        core = self.core
        next_path = safe_next(request.query_params.get("next"))
        with core.write() as s:
            current = core.current(s, request)
            if current is None or not current.active:
                return redirect(with_next("/login", "/account/recovery-codes"))
            remaining = factors(s, current.user).recovery_left
        return core.renderer.page(
            "recovery_codes.html",
            title="Recovery codes",
            user=current.user,
            csrf=core.csrf_token(current),
            codes=None,
            remaining=remaining,
            next=next_path,
        )

    async def codes_submit(self, request: Request) -> Response:
        form = await read_form(request)
        return await self.core.in_thread(self._codes_submit, request, form)

    def _codes_submit(self, request: Request, form: dict[str, str]) -> Response:
        core = self.core
        check_same_origin(request, core.settings)
        next_path = safe_next(form.get("next"))
        client = core.client(request)
        with core.write() as s:
            current = core.current(s, request)
            if current is None or not current.active:
                return redirect(with_next("/login", "/account/recovery-codes"))
            csrf.check(core.keys, current.token, form.get(csrf.CSRF_FIELD))
            if not core.step_up_fresh(current):
                # Regenerating replaces every code: a sensitive action (I3 step-up).
                back = with_next("/account/recovery-codes", next_path)
                return redirect(with_next("/account/step-up", back))
            codes = recovery.generate(
                s, core.keys, current.user, now=core.now(), origin=client.origin()
            )
        return core.renderer.page(
            "recovery_codes.html",
            title="Your recovery codes",
            user=current.user,
            csrf=core.csrf_token(current),
            codes=codes,
            remaining=len(codes),
            next=next_path,
        )

"""The identity pages through ASGI (issue 5 items 4 and 7; I3, I4, T3, L1).

The app is the pages' own routes behind the api's SecurityHeaders middleware, driven by
starlette's TestClient over https://localhost (the session cookie is Secure). Users are created
with real argon2 parameters, so the module creates only a handful.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from sqlalchemy import select
from starlette.requests import Request
from starlette.testclient import TestClient
from tests.conftest import make_runtime
from tests.support.soft_authenticator import SoftAuthenticator

from bastionpay import bootstrap
from bastionpay.api.app import create_app
from bastionpay.audit.models import AuditStaged
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.identity import accounts, sessions, web
from bastionpay.identity.invitations import invite
from bastionpay.identity.mfa import recovery, totp
from bastionpay.identity.models import User, UserSession
from bastionpay.identity.passwords import passwords_for
from bastionpay.identity.web.http import PAGE_CSP, safe_next
from bastionpay.kernel.clock import FrozenClock
from bastionpay.kernel.ids import new_id
from bastionpay.runtime import Runtime

T0 = 1_800_000_000
PASSWORD = "correct horse 42 battery"
COOKIE = sessions.SESSION_COOKIE


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture(scope="module")
def rt(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, clock: FrozenClock
) -> Iterator[Runtime]:
    runtime = make_runtime(
        db_url,
        tmp_path_factory.mktemp("identity-web"),
        clock=clock,
        public_url="https://localhost",
        # The module logs in many times from one test address; the per-user MFA limit and the
        # lockout are what these tests exercise, not the per-IP login limit.
        rate_limit_login_ip="10000/minute",
    )
    yield runtime
    runtime.db.dispose()


@pytest.fixture(scope="module")
def app(rt: Runtime) -> SecurityHeaders:
    # The whole api app: the pages as mounted in production, behind the edge's filter and headers.
    mounted = create_app(rt)
    assert isinstance(mounted, SecurityHeaders)
    return mounted


def browser(app: SecurityHeaders) -> TestClient:
    return TestClient(app, base_url="https://localhost", follow_redirects=False)


@dataclass
class Person:
    id: str
    email: str
    secret: str | None = None  # TOTP seed, once enrolled
    codes: list[str] = field(default_factory=list)


def make_user(rt: Runtime, *, email: str | None = None, enroll: bool = True) -> Person:
    """A platform user; with `enroll`, a confirmed TOTP factor set up directly (Part B's API)."""
    address = email or f"{new_id('u').lower()}@example.test"
    now = rt.clock.now()
    with unit_of_work(rt.db, write=True) as s:
        user = accounts.create_user(
            s,
            passwords_for(rt.settings),
            email=address,
            role="platform_admin",
            merchant_id=None,
            password=PASSWORD,
            now=now,
        )
        person = Person(id=user.id, email=user.email)
        if enroll:
            started = totp.begin_enrollment(s, rt.identity_keys, user, now=now, issuer="test")
            code = pyotp.TOTP(started.secret_b32).at(now)
            totp.confirm_enrollment(s, rt.identity_keys, user, started.credential_id, code, now=now)
            person.secret = started.secret_b32
    return person


def next_code(clock: FrozenClock, secret: str) -> str:
    # A TOTP code works once per time step (I3): move to the next step before each use.
    clock.advance(30)
    return pyotp.TOTP(secret).at(clock.now())


class Page(HTMLParser):
    """What the tests need from a page: forms and their inputs, scripts, styles, handlers."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.style_elements = 0
        self.style_attributes = 0
        self.event_handlers: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.meta: dict[str, str] = {}
        self.ids: dict[str, dict[str, str | None]] = {}
        self._in_script = False
        self.texts: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        element_id = a.get("id")
        if element_id:
            self.ids[element_id] = a
        for name, _ in attrs:
            if name.startswith("on"):
                self.event_handlers.append(name)
            if name == "style":
                self.style_attributes += 1
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        elif tag == "style":
            self.style_elements += 1
        elif tag == "link":
            self.links.append(a.get("href") or "")
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "meta" and a.get("name"):
            self.meta[str(a["name"])] = a.get("content") or ""
        elif tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True
        self.texts.append(data)

    def form(self, action: str, **match: str) -> dict[str, str]:
        for form in self.forms:
            fields: dict[str, str] = form["fields"]
            if form["action"] == action and all(fields.get(k) == v for k, v in match.items()):
                return dict(fields)
        raise AssertionError(f"no form posting to {action} with {match}")

    @property
    def text(self) -> str:
        return " ".join(self.texts)


def get_page(client: TestClient, path: str) -> Page:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return Page(response.text)


def location(response: Any) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    return str(response.headers["location"])


def password_step(client: TestClient, email: str, *, next_path: str | None = None) -> str:
    form = get_page(client, "/login" + (f"?next={next_path}" if next_path else "")).form("/login")
    form.update(email=email, password=PASSWORD)
    return location(client.post("/login", data=form))


def log_in(client: TestClient, clock: FrozenClock, person: Person) -> None:
    assert person.secret is not None
    assert password_step(client, person.email) == "/login/mfa"
    form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
    form["code"] = next_code(clock, person.secret)
    assert location(client.post("/login/mfa", data=form)) == "/account"


def session_row(rt: Runtime, token: str) -> UserSession | None:
    with unit_of_work(rt.db, write=False) as s:
        return s.scalars(
            select(UserSession).where(
                UserSession.id_hash == rt.identity_keys.sessions.hexdigest(token)
            )
        ).one_or_none()


def audit_actions(rt: Runtime, user_id: str) -> list[str]:
    with unit_of_work(rt.db, write=False) as s:
        rows = s.scalars(
            select(AuditStaged)
            .where(AuditStaged.actor_id == user_id)
            .order_by(AuditStaged.occurred_us, AuditStaged.event_id)
        ).all()
    return [row.action for row in rows]


# --- login, MFA, rotation -------------------------------------------------------------------------


def test_full_login_with_totp_rotates_the_session_and_is_audited(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I3 + I4: password → "password"-stage session → TOTP → a new id, stage "active", mfa_at."""
    person = make_user(rt)
    assert person.secret is not None
    with browser(app) as client:
        assert password_step(client, person.email) == "/login/mfa"
        pending = client.cookies[COOKIE]
        row = session_row(rt, pending)
        assert row is not None and row.stage == "password" and row.mfa_at is None
        # Only the password is proven: the account page and current_user refuse the session.
        assert location(client.get("/account")) == "/login/mfa"
        page = get_page(client, "/login/mfa")
        form = page.form("/login/mfa", factor="totp")
        form["code"] = next_code(clock, person.secret)
        assert location(client.post("/login/mfa", data=form)) == "/account"
        active = client.cookies[COOKIE]
        assert active != pending  # rotated at login: a fixated id is worthless (I4)
        old = session_row(rt, pending)
        assert old is not None and old.revoked_at == clock.now()
        new = session_row(rt, active)
        assert new is not None and new.stage == "active" and new.mfa_at == clock.now()
        account = get_page(client, "/account")
        assert person.email in account.text
        # The old id no longer opens anything.
        with browser(app) as replay:
            replay.cookies.set(COOKIE, pending)
            assert location(replay.get("/account")) == "/login"
    actions = audit_actions(rt, person.id)
    assert "identity.mfa.verify" in actions and "identity.login.success" in actions


def test_first_login_forces_enrollment_and_shows_recovery_codes_once(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I3: MFA is mandatory; a user without a factor can reach nothing but enrollment."""
    person = make_user(rt, enroll=False)
    with browser(app) as client:
        assert password_step(client, person.email, next_path="/account/recovery-codes") == (
            "/mfa/enroll?next=%2Faccount%2Frecovery-codes"
        )
        pending = client.cookies[COOKIE]
        # No bypass: the challenge page and the account page send the user back to enrollment.
        assert location(client.get("/login/mfa")) == "/mfa/enroll"
        assert location(client.get("/account")) == "/mfa/enroll"
        enroll = client.get("/mfa/enroll?next=/account/recovery-codes")
        assert enroll.status_code == 200
        page = Page(enroll.text)
        # The QR code is an inline SVG data URI made on the server (no third-party service).
        (qr,) = page.images
        assert qr.startswith("data:image/svg+xml;base64,")
        assert base64.b64decode(qr.split(",", 1)[1]).lstrip().startswith(b"<svg")
        shown = re.search(r'<code class="bp-secret">([A-Z2-7 ]+)</code>', enroll.text)
        assert shown is not None  # the key, for apps that cannot scan
        seed = shown[1].replace(" ", "")
        form = page.form("/mfa/enroll")
        form["code"] = "000000" if pyotp.TOTP(seed).at(clock.now()) != "000000" else "111111"
        wrong = client.post("/mfa/enroll", data=form)
        assert wrong.status_code == 401 and "verification failed" in wrong.text
        form["code"] = pyotp.TOTP(seed).at(clock.now())
        done = client.post("/mfa/enroll", data=form)
        assert done.status_code == 200
        codes_page = Page(done.text)
        codes = re.findall(r"\b[a-z0-9]{5}-[a-z0-9]{5}\b", done.text)
        assert len(codes) == 10, codes_page.text
        assert done.headers["cache-control"] == "no-store"
        assert client.cookies[COOKIE] != pending  # enrollment completed the login: new id
        with unit_of_work(rt.db, write=False) as s:
            user = s.scalars(select(User).where(User.id == person.id)).one()
            assert user.mfa_enrolled
        # Shown once: the recovery-codes page afterwards shows a count, not the codes.
        later = client.get("/account/recovery-codes")
        assert later.status_code == 200 and codes[0] not in later.text
        assert "10 unused recovery codes" in later.text
    actions = audit_actions(rt, person.id)
    assert "identity.mfa.enroll" in actions
    assert "identity.recovery_codes.generate" in actions
    assert "identity.login.success" in actions


def test_recovery_code_login_burns_the_code(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    with unit_of_work(rt.db, write=True) as s:
        user = s.scalars(select(User).where(User.id == person.id)).one()
        codes = recovery.generate(s, rt.identity_keys, user, now=clock.now())
    for attempt, expected in ((codes[0], 303), (codes[0], 401)):
        with browser(app) as client:
            password_step(client, person.email)
            form = get_page(client, "/login/mfa").form("/login/mfa", factor="recovery_code")
            form["code"] = attempt
            answer = client.post("/login/mfa", data=form)
            assert answer.status_code == expected
    assert "identity.recovery_code.use" in audit_actions(rt, person.id)


def test_mfa_attempts_are_rate_limited_per_user(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I3/T4: 5 second-factor attempts per user per 5 minutes, then 429 (LOGIN_ACCOUNT)."""
    person = make_user(rt)
    with browser(app) as client:
        password_step(client, person.email)
        form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        form["code"] = "not-a-code"
        for _ in range(5):
            assert client.post("/login/mfa", data=form).status_code == 401
        refused = client.post("/login/mfa", data=form)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert audit_actions(rt, person.id).count("identity.mfa.fail") == 5


def test_wrong_password_shows_the_generic_message(app: SecurityHeaders) -> None:
    with browser(app) as client:
        form = get_page(client, "/login").form("/login")
        form.update(email="nobody@example.test", password="wrong password 1")
        answer = client.post("/login", data=form)
        assert answer.status_code == 401
        assert "Incorrect email or password." in answer.text
        assert COOKIE not in client.cookies


# --- cookies, CSRF, origin ------------------------------------------------------------------------


def test_cookie_attributes(rt: Runtime, app: SecurityHeaders, clock: FrozenClock) -> None:
    """I4: `__Host-bp_session` is Secure, HttpOnly, SameSite=Strict, Path=/, no Domain."""
    person = make_user(rt)
    assert person.secret is not None
    with browser(app) as client:
        login_page = client.get("/login")
        (pre,) = login_page.headers.get_list("set-cookie")
        form = Page(login_page.text).form("/login")
        form.update(email=person.email, password=PASSWORD)
        answer = client.post("/login", data=form)
        cookies = answer.headers.get_list("set-cookie")
        mfa_form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        mfa_form["code"] = next_code(clock, person.secret)
        final = client.post("/login/mfa", data=mfa_form).headers.get_list("set-cookie")
    for header in [pre, *cookies, *final]:
        name = header.split("=", 1)[0]
        assert name in (COOKIE, "__Host-bp_csrf")
        attributes = {part.strip().split("=")[0].lower(): part for part in header.split(";")[1:]}
        assert {"secure", "httponly", "samesite", "path"} <= attributes.keys(), header
        assert "domain" not in attributes
        assert attributes["samesite"].strip().lower() == "samesite=strict"
        assert attributes["path"].strip() == "Path=/"
    session_cookie = next(c for c in final if c.startswith(COOKIE + "="))
    token = session_cookie.split("=", 1)[1].split(";", 1)[0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits (I4)


def test_csrf_missing_or_wrong_is_refused(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """T3: every state-changing form carries a token; missing or wrong → 403, nothing done."""
    person = make_user(rt)
    with browser(app) as client:
        # The login form (pre-session double submit).
        form = get_page(client, "/login").form("/login")
        form.update(email=person.email, password=PASSWORD)
        for bad in ({**form, "csrf_token": ""}, {**form, "csrf_token": "0" * 64}):
            answer = client.post("/login", data=bad)
            assert answer.status_code == 403 and COOKIE not in client.cookies
        without_cookie = TestClient(app, base_url="https://localhost", follow_redirects=False)
        assert without_cookie.post("/login", data=form).status_code == 403
        log_in(client, clock, person)
        account = get_page(client, "/account")
        everywhere = account.form("/account/logout-everywhere")
        for bad_token in ("", "f" * 64, account.meta["bp-csrf"][:-1]):
            refused = client.post("/account/logout-everywhere", data={"csrf_token": bad_token})
            assert refused.status_code == 403
            assert "did not come from this site" in refused.text
        # A cross-site Origin or Sec-Fetch-Site is refused even with the right token.
        for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
            refused = client.post("/account/logout-everywhere", data=everywhere, headers=headers)
            assert refused.status_code == 403
        assert client.get("/account").status_code == 200  # still logged in: nothing happened
        # The WebAuthn JSON calls want the token in the header.
        no_header = client.post("/mfa/webauthn/authenticate/options", json={})
        assert no_header.status_code == 403
        assert no_header.json()["error"]["code"] == "csrf_failed"
        same_origin = {"origin": "https://localhost", "sec-fetch-site": "same-origin"}
        ok = client.post("/account/logout-everywhere", data=everywhere, headers=same_origin)
        assert location(ok) == "/login"


# --- timeouts and revocation ----------------------------------------------------------------------


def test_idle_timeout_ends_the_session(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I4 / PCI 8.2.8: 15 minutes idle → logged out; activity keeps the session alive."""
    person = make_user(rt)
    with browser(app) as client:
        log_in(client, clock, person)
        clock.advance(14 * 60)
        assert client.get("/account").status_code == 200
        clock.advance(14 * 60)
        assert client.get("/account").status_code == 200
        clock.advance(15 * 60)
        assert location(client.get("/account")).startswith("/login")
    assert "identity.session.expire" in audit_actions(rt, person.id)


def test_absolute_lifetime_ends_a_busy_session(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    with browser(app) as client:
        log_in(client, clock, person)
        started = clock.now()
        while clock.now() + 600 < started + rt.settings.session_absolute_seconds:
            clock.advance(600)
            assert client.get("/account").status_code == 200
        clock.advance(started + rt.settings.session_absolute_seconds - clock.now())
        assert location(client.get("/account")).startswith("/login")


def test_role_change_ends_the_session(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I4: privilege change → the session's generation no longer matches → it is dead."""
    person = make_user(rt)
    with browser(app) as client:
        log_in(client, clock, person)
        assert client.get("/account").status_code == 200
        with unit_of_work(rt.db, write=True) as s:
            accounts.change_role(s, person.id, "security_officer", now=clock.now())
        assert location(client.get("/account")).startswith("/login")
        assert web.current_user(rt, _starlette_request(client.build_request("GET", "/"))) is None
        # Logging in again issues a session under the new generation (a new id again).
        log_in(client, clock, person)
        assert "security_officer" in get_page(client, "/account").text


def test_logout_everywhere_ends_every_session(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    with browser(app) as laptop, browser(app) as phone:
        log_in(laptop, clock, person)
        log_in(phone, clock, person)
        page = get_page(laptop, "/account")
        assert len(page.forms) >= 2
        listed = [f for f in page.forms if f["action"] == "/account/sessions/revoke"]
        assert len(listed) == 2  # both browsers are listed with a revoke button
        answer = laptop.post(
            "/account/logout-everywhere", data=page.form("/account/logout-everywhere")
        )
        assert location(answer) == "/login"
        assert location(laptop.get("/account")).startswith("/login")
        assert location(phone.get("/account")).startswith("/login")
    assert "identity.logout_everywhere" in audit_actions(rt, person.id)


def test_revoke_one_session_and_logout(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    with browser(app) as laptop, browser(app) as phone:
        log_in(laptop, clock, person)
        log_in(phone, clock, person)
        phone_row = session_row(rt, phone.cookies[COOKIE])
        assert phone_row is not None
        page = get_page(laptop, "/account")
        form = page.form("/account/sessions/revoke", session=str(phone_row.pk))
        assert location(laptop.post("/account/sessions/revoke", data=form)) == (
            "/account?done=revoked"
        )
        assert location(phone.get("/account")).startswith("/login")
        assert laptop.get("/account").status_code == 200
        # Another user's session number is not found (object-level check).
        other = make_user(rt)
        with browser(app) as theirs:
            log_in(theirs, clock, other)
            their_row = session_row(rt, theirs.cookies[COOKIE])
            assert their_row is not None
            form["session"] = str(their_row.pk)
            assert laptop.post("/account/sessions/revoke", data=form).status_code == 400
            assert theirs.get("/account").status_code == 200
        logout = get_page(laptop, "/logout").form("/logout")
        answer = laptop.post("/logout", data=logout)
        assert location(answer) == "/login"
        assert (
            "Max-Age=0" in answer.headers["set-cookie"]
            or "expires=" in answer.headers["set-cookie"].lower()
        )
        assert location(laptop.get("/account")).startswith("/login")
    actions = audit_actions(rt, person.id)
    assert "identity.session.revoke" in actions and "identity.logout" in actions


# --- step-up --------------------------------------------------------------------------------------


def test_step_up_page_sets_mfa_at(rt: Runtime, app: SecurityHeaders, clock: FrozenClock) -> None:
    """I3: after 5 minutes a sensitive action (regenerating recovery codes) demands a fresh
    factor; the step-up page proves one, sets mfa_at, and returns to `next`."""
    person = make_user(rt)
    assert person.secret is not None
    with browser(app) as client:
        log_in(client, clock, person)
        clock.advance(rt.settings.step_up_max_age_seconds + 1)
        page = get_page(client, "/account/recovery-codes")
        form = page.form("/account/recovery-codes")
        sent_back = location(client.post("/account/recovery-codes", data=form))
        assert sent_back == "/account/step-up?next=%2Faccount%2Frecovery-codes"
        challenge = get_page(client, sent_back)
        step = challenge.form("/account/step-up", factor="totp")
        assert step["next"] == "/account/recovery-codes"
        step["code"] = next_code(clock, person.secret)
        assert location(client.post("/account/step-up", data=step)) == "/account/recovery-codes"
        row = session_row(rt, client.cookies[COOKIE])
        assert row is not None and row.mfa_at == clock.now()
        codes = client.post("/account/recovery-codes", data=form)
        assert codes.status_code == 200
        assert len(re.findall(r"\b[a-z0-9]{5}-[a-z0-9]{5}\b", codes.text)) == 10


# --- pages: CSP, escaping, redirects, static files ------------------------------------------------


def _assert_strict_page(response: Any) -> None:
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-type"].startswith("text/html")
    page = Page(response.text)
    assert not page.inline_script, "inline script"
    assert page.style_elements == 0 and page.style_attributes == 0, "inline style"
    assert page.event_handlers == [], "inline event handlers"
    for script in page.scripts:
        assert str(script.get("src", "")).startswith("/static/identity/")
    for href in page.links:
        assert href.startswith("/static/identity/")  # no third-party assets
    for src in page.images:
        assert src.startswith("data:image/svg+xml;base64,")


def test_every_page_has_the_strict_csp_and_no_inline_script(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """T3: strict CSP, no inline script or style, no third-party asset — on every page."""
    person = make_user(rt)
    with browser(app) as client:
        _assert_strict_page(client.get("/login"))
        _assert_strict_page(client.get("/invitations/accept?token=abc"))
        form = get_page(client, "/login").form("/login")
        form.update(email=person.email, password="wrong password 1")
        _assert_strict_page(client.post("/login", data=form))  # an error page
        assert password_step(client, person.email) == "/login/mfa"
        challenge = client.get("/login/mfa")
        _assert_strict_page(challenge)
        assert person.secret is not None
        mfa = Page(challenge.text).form("/login/mfa", factor="totp")
        mfa["code"] = next_code(clock, person.secret)
        assert location(client.post("/login/mfa", data=mfa)) == "/account"
        for path in (
            "/account",
            "/account/step-up",
            "/account/recovery-codes",
            "/logout",
            "/mfa/enroll",  # mfa_at is fresh: an active user may add a factor
        ):
            _assert_strict_page(client.get(path))
        refused = client.post("/account/logout-everywhere", data={"csrf_token": "x"})
        _assert_strict_page(refused)
        redirect = client.get("/login")
        assert redirect.status_code == 303
        assert redirect.headers["content-security-policy"] == PAGE_CSP
    with browser(app) as fresh:
        password_step(fresh, make_user(rt, enroll=False).email)
        _assert_strict_page(fresh.get("/mfa/enroll"))


def test_static_files_have_their_content_types(app: SecurityHeaders) -> None:
    with browser(app) as client:
        js = client.get("/static/identity/webauthn.js")
        css = client.get("/static/identity/identity.css")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "navigator.credentials.create" in js.text
        assert "navigator.credentials.get" in js.text
        assert "X-CSRF-Token" in js.text
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert client.get("/static/identity/../web/__init__.py").status_code == 404
        assert client.get("/static/identity/nothing.js").status_code == 404


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/%0a/evil",  # stays a path on this host: allowed, but never leaves it
    ],
)
def test_next_only_accepts_same_origin_paths(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result
    assert urlsplit(result).netloc == ""


def test_open_redirect_is_refused_at_login(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    assert person.secret is not None
    with browser(app) as client:
        page = get_page(client, "/login?next=https://evil.example/steal")
        form = page.form("/login")
        assert form["next"] == "/account"  # replaced on the way in
        form.update(email=person.email, password=PASSWORD, next="//evil.example/steal")
        assert location(client.post("/login", data=form)) == "/login/mfa"
        mfa = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        mfa.update(code=next_code(clock, person.secret), next="https://evil.example/")
        assert location(client.post("/login/mfa", data=mfa)) == "/account"
        # A legitimate same-origin target survives the whole flow.
        assert location(client.get("/login?next=/account/recovery-codes")) == (
            "/account/recovery-codes"
        )


def test_templates_escape_user_controlled_text(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """T3: an email and a user agent carrying markup are shown as text, never as markup."""
    hostile = f"<script>alert(1)</script>{new_id('x').lower()}@example.test"
    person = make_user(rt, email=hostile)
    assert person.secret is not None
    agent = '<img src=x onerror="alert(2)">'
    with browser(app) as client:
        client.headers["user-agent"] = agent
        log_in(client, clock, person)
        response = client.get("/account")
        assert "<script>alert(1)</script>" not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
        assert agent not in response.text and "&lt;img src=x onerror=" in response.text
        page = Page(response.text)
        assert not page.inline_script and page.event_handlers == []
        # The login form echoes the email typed on failure: escaped too.
        form = get_page(client, "/logout").form("/logout")
        client.post("/logout", data=form)
        login = get_page(client, "/login").form("/login")
        login.update(email='"><script>alert(3)</script>', password="wrong password 1")
        echoed = client.post("/login", data=login)
        assert "<script>alert(3)</script>" not in echoed.text
        assert not Page(echoed.text).inline_script


# --- invitations and WebAuthn ---------------------------------------------------------------------


def test_invitation_acceptance_then_forced_enrollment(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    merchant = bootstrap.create_merchant_with_keys(rt, "Invite Co")
    address = f"{new_id('inv').lower()}@example.test"
    with unit_of_work(rt.db, write=True) as s:
        _, token = invite(
            s,
            rt.identity_keys,
            merchant_id=merchant["id"],
            email=address,
            role="developer",
            invited_by="cli",
            now=clock.now(),
            ttl=3600,
        )
    with browser(app) as client:
        page = get_page(client, f"/invitations/accept?token={token}")
        form = page.form("/invitations/accept")
        assert form["token"] == token
        mismatch = client.post(
            "/invitations/accept", data={**form, "password": PASSWORD, "password_confirm": "x"}
        )
        assert mismatch.status_code == 400
        weak = client.post(
            "/invitations/accept", data={**form, "password": "short", "password_confirm": "short"}
        )
        assert weak.status_code == 400
        form.update(password=PASSWORD, password_confirm=PASSWORD)
        assert location(client.post("/invitations/accept", data=form)) == "/login?welcome=1"
        assert "Your account is ready" in get_page(client, "/login?welcome=1").text
        assert password_step(client, address) == "/mfa/enroll"
        # The link works once.
        form["csrf_token"] = get_page(client, f"/invitations/accept?token={token}").form(
            "/invitations/accept"
        )["csrf_token"]
        again = client.post("/invitations/accept", data=form)
        assert again.status_code == 400 and "not valid" in again.text


def test_webauthn_registration_and_login_through_the_pages(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """I3: a security key registered at first login, then used to log in (software authenticator
    through the same JSON calls the page's script makes)."""
    person = make_user(rt, enroll=False)
    key = SoftAuthenticator(origin="https://localhost", rp_id=rt.settings.webauthn_rp_id)
    with browser(app) as client:
        assert password_step(client, person.email) == "/mfa/enroll"
        page = get_page(client, "/mfa/enroll")
        assert "/static/identity/webauthn.js" in [s.get("src") for s in page.scripts]
        headers = {"x-csrf-token": page.meta["bp-csrf"]}
        start = client.post("/mfa/webauthn/register/options", json={}, headers=headers)
        assert start.status_code == 200, start.text
        body = start.json()
        credential = json.loads(key.register(json.dumps(body["publicKey"])))
        pending = client.cookies[COOKIE]
        done = client.post(
            "/mfa/webauthn/register",
            json={"challenge_id": body["challenge_id"], "credential": credential, "name": "Key"},
            headers=headers,
        )
        assert done.status_code == 200, done.text
        assert done.json()["redirect"] == "/account/recovery-codes"
        assert client.cookies[COOKIE] != pending
        assert client.get("/account").status_code == 200
    with browser(app) as client:
        assert password_step(client, person.email, next_path="/account") == "/login/mfa"
        page = get_page(client, "/login/mfa")
        button = page.ids["bp-webauthn-authenticate"]
        assert button["data-options"] == "/mfa/webauthn/authenticate/options"
        headers = {"x-csrf-token": page.meta["bp-csrf"]}
        start = client.post(str(button["data-options"]), json={}, headers=headers)
        assert start.status_code == 200, start.text
        body = start.json()
        forged = json.loads(key.assertion(json.dumps(body["publicKey"]), tamper_signature=True))
        refused = client.post(
            str(button["data-finish"]),
            json={"challenge_id": body["challenge_id"], "credential": forged},
            headers=headers,
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "mfa_failed"
        assert client.get("/account").status_code == 303  # still only the password
        start = client.post(str(button["data-options"]), json={}, headers=headers)
        body = start.json()
        assertion = json.loads(key.assertion(json.dumps(body["publicKey"])))
        finish = client.post(
            str(button["data-finish"]),
            json={
                "challenge_id": body["challenge_id"],
                "credential": assertion,
                "next": "https://evil.example/",
            },
            headers=headers,
        )
        assert finish.status_code == 200, finish.text
        assert finish.json() == {"redirect": "/account"}
        assert client.get("/account").status_code == 200
    actions = audit_actions(rt, person.id)
    assert actions.count("identity.login.success") == 2


def test_current_user_sees_only_active_sessions(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    person = make_user(rt)
    with browser(app) as client:
        password_step(client, person.email)
        request = client.build_request("GET", "/")
        assert web.current_user(rt, _starlette_request(request)) is None
        log_in_again = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        assert person.secret is not None
        log_in_again["code"] = next_code(clock, person.secret)
        client.post("/login/mfa", data=log_in_again)
        found = web.current_user(rt, _starlette_request(client.build_request("GET", "/")))
        assert found is not None and found[0].id == person.id and found[1].stage == "active"


def _starlette_request(request: Any) -> Request:
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_a_logged_in_operator_uses_v1_with_the_page_csrf_token(
    rt: Runtime, app: SecurityHeaders, clock: FrozenClock
) -> None:
    """The pages and /v1 are one app: a real login (password + TOTP) opens /v1 for the role's
    permissions (I5), writes need the CSRF token the pages carry, logout closes /v1 too."""
    shop = bootstrap.create_merchant_with_keys(rt, "Console shop")
    now = rt.clock.now()
    with unit_of_work(rt.db, write=True) as s:
        user = accounts.create_user(
            s,
            passwords_for(rt.settings),
            email=f"{new_id('dev').lower()}@example.test",
            role="developer",
            merchant_id=shop["id"],
            password=PASSWORD,
            now=now,
        )
        started = totp.begin_enrollment(s, rt.identity_keys, user, now=now, issuer="test")
        code = pyotp.TOTP(started.secret_b32).at(now)
        totp.confirm_enrollment(s, rt.identity_keys, user, started.credential_id, code, now=now)
        person = Person(id=user.id, email=user.email, secret=started.secret_b32)
    with browser(app) as client:
        assert password_step(client, person.email) == "/login/mfa"
        with unit_of_work(rt.db, write=False) as s:
            assert s.get(User, user.pk) is not None
            # The password alone is not a login (I7: it must not keep an account "active").
            assert s.scalar(select(User.last_login_at).where(User.id == person.id)) is None
        form = get_page(client, "/login/mfa").form("/login/mfa", factor="totp")
        form["code"] = next_code(clock, started.secret_b32)
        assert location(client.post("/login/mfa", data=form)) == "/account"
        with unit_of_work(rt.db, write=False) as s:
            last = s.scalar(select(User.last_login_at).where(User.id == person.id))
        assert last == clock.now()
        token = get_page(client, "/account").form("/logout")["csrf_token"]
        created = client.post(
            "/v1/customers", data={"email": "buyer@example.test"}, headers={"X-CSRF-Token": token}
        )
        assert created.status_code == 200, created.text
        assert client.get(f"/v1/customers/{created.json()['id']}").status_code == 200
        # Without the token, the cookie alone changes nothing (CSRF).
        refused = client.post("/v1/customers", data={"email": "x@example.test"})
        assert refused.status_code == 403
        # A developer may not refund (refunds:write is not in the role).
        denied = client.post(
            "/v1/refunds", data={"charge": "ch_x"}, headers={"X-CSRF-Token": token}
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_permissions"
        client.post("/logout", data={"csrf_token": token})
        assert client.get("/v1/customers").status_code == 401
    actions = audit_actions(rt, person.id)
    assert "identity.login.success" in actions
    assert "identity.authorization.deny" in actions

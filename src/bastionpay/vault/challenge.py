"""The 3-D Secure challenge page on the public listener (issue 4, item 7; T3).

    GET  /3ds/challenge/{challenge}    the page: amount, card brand and last 4, two buttons
    POST /3ds/challenge/{challenge}    result=complete | fail → 303 to the merchant's return_url

Like Stripe's test page it offers "Complete authentication" and "Fail authentication": the
simulated issuer asks nothing else of the cardholder. What makes it safe:

- **Unguessable, single-use, short-lived**: the challenge id is 256 bits (`threeds.challenge_id`),
  answers are accepted once (one conditional UPDATE) and until `three_ds_challenge_ttl_seconds`;
  a replayed or late POST changes nothing and is audited (`vault.three_d_secure.reject`).
- **CSRF**: the capability is the id in the path, which a cross-site attacker does not know; on
  top, a POST whose `Origin` is another site, `null`, or whose `Sec-Fetch-Site` is not
  same-origin is refused before anything is read.
- **Strict CSP**: server-rendered HTML, no script at all, the style sheet from this origin only,
  `form-action` limited to this origin and the return URL's (browsers check redirects after a
  form submission against it), `frame-ancestors 'none'`, `Referrer-Policy: no-referrer` (the
  challenge URL never leaks to the merchant in a Referer), `Cache-Control: no-store`. Values are
  HTML-escaped.
- Nothing on the page is card data beyond brand and last 4 (C2); the challenge id is never logged
  or audited.
"""

from __future__ import annotations

import html
from typing import Final
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastionpay.kernel import money
from bastionpay.kernel.errors import BastionPayError
from bastionpay.vault import threeds
from bastionpay.vault.auditlog import Origin
from bastionpay.vault.http import FORM_TYPE, form_fields, media_type, read_body, request_id
from bastionpay.vault.models import Authentication, Card
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.settings import normalise_origin
from bastionpay.vault.tokens import Actor

MAX_BODY: Final = 256
RESULTS: Final = {"complete": True, "fail": False}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>3D Secure authentication</title>
<link rel="stylesheet" href="/static/challenge.css">
</head>
<body>
<main>
<h1>3D Secure authentication</h1>
<p>Confirm this payment with your card issuer.</p>
<dl>
<dt>Amount</dt><dd>{amount}</dd>
<dt>Card</dt><dd>{brand} ending in {last4}</dd>
</dl>
<form method="post" action="{action}">
<button type="submit" name="result" value="complete" class="bp-complete">
Complete authentication</button>
<button type="submit" name="result" value="fail">Fail authentication</button>
</form>
<p class="bp-note">BastionPay's simulated issuer: this page stands in for your bank's.</p>
</main>
</body>
</html>
"""
MESSAGE_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>3D Secure authentication</title>
<link rel="stylesheet" href="/static/challenge.css"></head>
<body><main><h1>3D Secure authentication</h1><p>{message}</p></main></body>
</html>
"""
MESSAGES: Final = {
    "unknown_challenge": (404, "This authentication link is not valid."),
    "expired": (410, "This authentication link has expired. Return to the shop and try again."),
    "already_completed": (410, "This authentication has already been completed."),
    "cross_site": (403, "This form must be submitted from its own page."),
    "bad_form": (400, "The form could not be read."),
    "succeeded": (200, "Authentication complete. You can return to the shop."),
    "failed": (200, "Authentication failed. You can return to the shop."),
}


def page_policy(return_url: str | None) -> str:
    targets = ["'self'"]
    if return_url is not None:
        parts = urlsplit(return_url)
        # Normalised, not the raw netloc: header text is built only from a checked origin (L1).
        targets.append(normalise_origin(f"{parts.scheme}://{parts.netloc}"))
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {' '.join(targets)}; frame-ancestors 'none'; base-uri 'none'"
    )


def _headers(return_url: str | None) -> dict[str, str]:
    return {
        "content-security-policy": page_policy(return_url),
        "x-frame-options": "DENY",
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
    }


def _message(reason: str, return_url: str | None = None) -> Response:
    status, text = MESSAGES[reason]
    return Response(
        MESSAGE_PAGE.format(message=html.escape(text)),
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=_headers(return_url),
    )


def _amount(row: Authentication) -> str:
    try:
        return money.Money(row.amount, row.currency).format()
    except (ValueError, money.UnknownCurrency):
        return f"{row.amount} {row.currency.upper()}"


def render(row: Authentication, card: Card, challenge: str) -> Response:
    body = PAGE.format(
        amount=html.escape(_amount(row)),
        brand=html.escape(card.brand.title()),
        last4=html.escape(card.last4),
        action=html.escape(f"{threeds.CHALLENGE_PATH}{challenge}", quote=True),
    )
    return Response(body, media_type="text/html; charset=utf-8", headers=_headers(row.return_url))


def cross_site(request: Request, public_url: str | None = None) -> bool:
    """A browser's cross-site POST (CSRF), judged by `Origin` and `Sec-Fetch-Site`.

    Our own origin is the one the browser used (`Host`) or, behind the WAF, `PUBLIC_URL`'s.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not a browser form (browsers send Origin on every POST)
    host = request.headers.get("host", "")
    try:
        own = {normalise_origin(f"https://{host}")}
        if public_url is not None:
            own.add(
                normalise_origin(f"{urlsplit(public_url).scheme}://{urlsplit(public_url).netloc}")
            )
        return normalise_origin(origin) not in own
    except ValueError:
        return True  # `null`, or not an origin at all


class ChallengePages:
    """The two handlers; the public app rate-limits and resolves the client address first."""

    def __init__(self, runtime: VaultRuntime) -> None:
        self.runtime = runtime

    @staticmethod
    def actor(request: Request, ip: str) -> Actor:
        agent = request.headers.get("user-agent")
        origin = Origin(ip=ip, user_agent=agent, request_id=request_id())
        return Actor("anonymous", "cardholder", origin)

    async def show(self, request: Request, ip: str) -> Response:
        challenge = str(request.path_params["challenge"])
        found = await run_in_threadpool(threeds.find_challenge, self.runtime, challenge)
        if found is None:
            return _message("unknown_challenge")
        row, card = found
        status = threeds.status_of(row, self.runtime.clock.now())
        if status != "requires_action":
            reason = "expired" if status == "expired" else "already_completed"
            return _message(reason, row.return_url)
        await run_in_threadpool(threeds.viewed, self.runtime, row, self.actor(request, ip))
        return render(row, card, challenge)

    async def answer(self, request: Request, ip: str) -> Response:
        challenge = str(request.path_params["challenge"])
        actor = self.actor(request, ip)
        if cross_site(request, self.runtime.settings.public_url):
            found = await run_in_threadpool(threeds.find_challenge, self.runtime, challenge)
            await run_in_threadpool(
                threeds.reject, self.runtime, found[0] if found else None, actor, "cross_site"
            )
            return _message("cross_site")
        try:
            if media_type(request) != FORM_TYPE:
                return _message("bad_form")
            fields = form_fields(await read_body(request, MAX_BODY))
        except BastionPayError:
            return _message("bad_form")
        if set(fields) != {"result"} or fields["result"] not in RESULTS:
            return _message("bad_form")
        try:
            row = await run_in_threadpool(
                lambda: threeds.complete(
                    self.runtime, challenge, succeeded=RESULTS[fields["result"]], actor=actor
                )
            )
        except threeds.ChallengeRefused as refused:
            return _message(refused.reason)
        target = threeds.return_to(row)
        if target is None:
            return _message(row.status, None)
        response = RedirectResponse(target, status_code=303)
        for name, value in _headers(row.return_url).items():
            response.headers[name] = value
        return response

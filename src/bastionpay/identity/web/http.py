"""Request plumbing for the identity pages: bodies, same-origin checks, redirects, cookies.

Kept apart from the page handlers so each rule lives in one place and has one test:
- bodies are bounded in size and time (OWASP API4) and parsed without a multipart parser;
- state-changing requests must look same-origin when the browser says where they come from
  (`Origin`, `Sec-Fetch-Site`) — a second layer under the CSRF tokens (T3);
- `next=` accepts only a same-origin relative path (no open redirect, ASVS V5 / OWASP
  "Unvalidated Redirects");
- cookies are `__Host-` cookies: Secure, Path=/, no Domain, HttpOnly, SameSite=Strict (I4).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import Response

from bastionpay.audit.events import Origin
from bastionpay.config import Settings
from bastionpay.edge.networks import Network, client_address
from bastionpay.kernel.errors import (
    InvalidRequestError,
    PermissionDenied,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedMediaType,
)

# The pages' own policy (T3): scripts and styles only from this origin, never inline; images from
# this origin or data: URIs (the TOTP QR code is an inline SVG data URI); forms post only here;
# fetch() only here (WebAuthn ceremonies); never framed (clickjacking on a login page).
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)
# Pages hold CSRF tokens, recovery codes and TOTP seeds: never cached anywhere.
PAGE_HEADERS: Final = {"content-security-policy": PAGE_CSP, "cache-control": "no-store"}
FORM_TYPE: Final = "application/x-www-form-urlencoded"
MAX_FORM_BYTES: Final = 16 * 1024
MAX_JSON_BYTES: Final = 64 * 1024  # a WebAuthn attestation with a certificate chain fits
MAX_FIELDS: Final = 32
BODY_TIMEOUT_SECONDS: Final = 10.0
MAX_NEXT_LENGTH: Final = 2048
DEFAULT_NEXT: Final = "/account"


def _origin_error() -> PermissionDenied:
    return PermissionDenied(
        "This form has expired or did not come from this site. Reload the page and try again.",
        code="csrf_failed",
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge("Request body too large.", code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(BODY_TIMEOUT_SECONDS) as scope:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge("Request body too large.", code="request_too_large")
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise RequestTimeout("The request body did not arrive in time.", code="request_timeout")
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form as a dict (the first value of a repeated field wins)."""
    if _media_type(request) != FORM_TYPE:
        raise UnsupportedMediaType("Forms must be sent as " + FORM_TYPE + ".")
    raw = await read_body(request, MAX_FORM_BYTES)
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("The form could not be read.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


async def read_json(request: Request) -> dict[str, Any]:
    if _media_type(request) != "application/json":
        raise UnsupportedMediaType("Send application/json.")
    raw = await read_body(request, MAX_JSON_BYTES)
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def _allowed_origins(request: Request, settings: Settings) -> set[str]:
    public = urlsplit(settings.public_url)
    allowed = {f"{public.scheme}://{public.netloc}".lower()}
    host = request.headers.get("host")
    if host:
        # The host the browser addressed: RequestFilter already limits it to `allowed_hosts`.
        allowed.add(f"https://{host}".lower())
    return allowed


def check_same_origin(request: Request, settings: Settings) -> None:
    """Refuse a state-changing request a browser says came from elsewhere (T3, defence in depth).

    Absent headers pass (older browsers, non-browser clients): the CSRF token is the main check.
    `Sec-Fetch-Site: none` is a user typing the URL or a bookmark, not another site.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in _allowed_origins(request, settings):
        raise _origin_error()
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        raise _origin_error()


def safe_next(raw: str | None, default: str = DEFAULT_NEXT) -> str:
    """`raw` if it is a relative path on this origin, else `default` (no open redirect).

    Refused: absolute URLs (`https://evil`), scheme-relative ones (`//evil`), backslashes (browsers
    read `/\\evil` as `//evil`), control characters and whitespace (`/\\t/evil`), anything not
    starting with one `/`.
    """
    if not raw or len(raw) > MAX_NEXT_LENGTH or not raw.startswith("/"):
        return default
    if raw.startswith("//") or "\\" in raw:
        return default
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in raw):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return default
    return raw


def with_next(path: str, next_path: str | None) -> str:
    """`path?next=…` when there is a non-default place to return to."""
    if not next_path or next_path == DEFAULT_NEXT:
        return path
    return f"{path}?{urlencode({'next': next_path})}"


def redirect(location: str) -> Response:
    # 303: the browser follows with GET whatever the method was (POST/redirect/GET).
    return Response(status_code=303, headers={"location": location, **PAGE_HEADERS})


def set_host_cookie(response: Response, name: str, value: str) -> None:
    # `__Host-` prefix: the browser accepts it only with Secure, Path=/ and no Domain, so neither a
    # sibling subdomain nor a plain-HTTP response can set or overwrite it (I4).
    response.set_cookie(
        name, value, path="/", secure=True, httponly=True, samesite="strict", max_age=None
    )


def clear_host_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


@dataclass(frozen=True)
class Client:
    """Where a request comes from, for sessions, rate limits and the audit log."""

    ip: str | None
    user_agent: str | None

    def origin(self) -> Origin:
        return Origin(ip=self.ip, user_agent=self.user_agent)


def client_of(request: Request, proxies: tuple[Network, ...]) -> Client:
    peer = request.client.host if request.client else None
    ip = client_address(peer, request.headers.get("x-forwarded-for"), proxies)
    agent = request.headers.get("user-agent")
    return Client(ip=ip, user_agent=agent[:256] if agent else None)

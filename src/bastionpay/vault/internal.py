"""The internal listener's API: JSON over mutual TLS, for the api only (T2).

Every path is under `/internal/v1`. Each request must come over a connection whose client
certificate `mtls.MutualTlsProtocol` checked; a request without one (a listener misconfigured to
run without the protocol) is refused with 403 and audited — fail closed. The api names the
merchant in every call; the vault checks that the objects named belong to it (404 otherwise, and
an audited denial when they belong to someone else, L1).

Request and response shapes are listed in docs/vault.md. Bodies are JSON objects with known
fields only (`parameter_unknown` otherwise), so an integration mistake fails loudly. No response
ever carries a card number or a CVC (C1, C2): cards are described by `tokens.card_payload`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bastionpay.crypto.kek import KekError
from bastionpay.edge.filtering import RequestFilter
from bastionpay.edge.headers import SecurityHeaders
from bastionpay.edge.respond import error_response
from bastionpay.kernel.errors import (
    InvalidRequestError,
    MethodNotAllowed,
    PermissionDenied,
    UnrecognizedUrl,
)
from bastionpay.vault import auditlog, followups, keys, payments, threeds, tokens
from bastionpay.vault.auditlog import Origin, VaultEvent
from bastionpay.vault.http import answer, json_object, read_body, request_id
from bastionpay.vault.keyring import KeyringError
from bastionpay.vault.mtls import client_of
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.tokens import Actor

PREFIX: Final = "/internal/v1"
# Operators are the api's user ids (`usr_…`).
_OPERATOR: Final = re.compile(r"usr_[A-Za-z0-9]{1,60}")
MAX_ID: Final = 64

Body = dict[str, Any]
Work = Callable[[VaultRuntime, Body, Request, Actor], Any]


class Fields:
    """Typed access to a JSON body whose field names are known up front (others are refused)."""

    def __init__(self, body: Body, *allowed: str) -> None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise InvalidRequestError(
                f"Received unknown parameter: {unknown[0][:40]}",
                code="parameter_unknown",
                param=unknown[0][:40],
            )
        self._body = body

    def text(self, name: str, *, required: bool = True, limit: int = MAX_ID) -> str:
        value = self._body.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
            raise InvalidRequestError(f"Missing or invalid parameter: {name}.", param=name)
        return value

    def integer(self, name: str, *, required: bool = True) -> int | None:
        value = self._body.get(name)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError(f"Missing or invalid parameter: {name}.", param=name)
        return value

    def flag(self, name: str) -> bool:
        value = self._body.get(name)
        if not isinstance(value, bool):
            raise InvalidRequestError(f"Missing or invalid parameter: {name}.", param=name)
        return value

    def raw(self, name: str) -> Any:
        return self._body.get(name)


def _query(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise InvalidRequestError(f"Missing or invalid parameter: {name}.", param=name)
    return value


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])[:MAX_ID]


# --- Operations ----------------------------------------------------------------------------------


def _health(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    return {"status": "ok", "kek_active_version": runtime.kek.active_version}


def _register_key(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "id", "key", "merchant_id", "livemode", "allowed_origins")
    key_id = fields.text("id")
    key = fields.text("key", limit=255)
    merchant_id = fields.text("merchant_id")
    livemode = fields.flag("livemode")
    origins = fields.raw("allowed_origins")
    return tokens.register_publishable_key(
        runtime,
        key_id=key_id,
        key=key,
        merchant_id=merchant_id,
        livemode=livemode,
        allowed_origins=origins,
        actor=actor,
    )


def _revoke_key(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id")
    merchant_id = fields.text("merchant_id")
    return tokens.revoke_publishable_key(
        runtime, _path(request, "key_id"), merchant_id, actor=actor
    )


def _test_card(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id", "test_card")
    merchant_id = fields.text("merchant_id")
    test_card = fields.text("test_card")
    return tokens.create_test_card(runtime, merchant_id, test_card, actor=actor)


def _card(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    return tokens.card_metadata(
        runtime, _query(request, "merchant_id"), _path(request, "payment_method"), actor=actor
    )


def _authorize(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(
        body,
        "merchant_id",
        "payment_method",
        "livemode",
        "amount",
        "currency",
        "reference",
        "authentication",
        "request_three_d_secure",
        "return_url",
    )
    mode = fields.text("request_three_d_secure", required=False) or "automatic"
    if mode not in threeds.REQUEST_MODES:
        raise InvalidRequestError(
            "request_three_d_secure must be automatic or any.", param="request_three_d_secure"
        )
    authorize = payments.AuthorizeRequest(
        merchant_id=fields.text("merchant_id"),
        payment_method=fields.text("payment_method"),
        livemode=fields.flag("livemode"),
        amount=fields.integer("amount") or 0,
        currency=fields.text("currency", limit=3),
        reference=fields.text("reference", limit=255),
        authentication=fields.text("authentication", required=False) or None,
        request_three_d_secure="any" if mode == "any" else "automatic",
        return_url=fields.text("return_url", required=False, limit=threeds.MAX_RETURN_URL) or None,
    )
    return payments.authorize(runtime, authorize, actor=actor)


def _authentication(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    row = threeds.load(
        runtime, _query(request, "merchant_id"), _path(request, "authentication"), actor=actor
    )
    return threeds.payload(runtime, row)


def _authorization(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    row = payments.load_authorization(
        runtime, _query(request, "merchant_id"), _path(request, "authorization"), actor=actor
    )
    return payments.authorization_payload(row)


def _capture(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id", "amount")
    merchant_id = fields.text("merchant_id")
    amount = fields.integer("amount", required=False)
    return followups.capture(
        runtime, merchant_id, _path(request, "authorization"), amount, actor=actor
    )


def _void(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id")
    merchant_id = fields.text("merchant_id")
    return followups.void(runtime, merchant_id, _path(request, "authorization"), actor=actor)


def _reverse(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id")
    merchant_id = fields.text("merchant_id")
    return followups.reverse(runtime, merchant_id, _path(request, "authorization"), actor=actor)


def _refund(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "merchant_id", "amount", "reference")
    merchant_id = fields.text("merchant_id")
    amount = fields.integer("amount")
    reference = fields.text("reference", limit=255)
    return followups.refund(
        runtime, merchant_id, _path(request, "authorization"), amount, reference, actor=actor
    )


def _key_status(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    merchant_id = request.query_params.get("merchant_id") or None
    if merchant_id is not None:
        merchant_id = _query(request, "merchant_id")
    if request.query_params.get("operator"):
        actor = _operator(_query(request, "operator"), actor)
    return keys.status(runtime, merchant_id, actor=actor)


def _operator(operator: str, via: Actor) -> Actor:
    """The operator the api vouches for (C4: key operations name a person). The api checked the
    operator's `vault:keys` permission and a fresh second factor (I3, I5) before calling; the
    vault trusts that claim only from the api's client certificate (T2) and records both."""
    if not _OPERATOR.fullmatch(operator):
        raise InvalidRequestError("Missing or invalid parameter: operator.", param="operator")
    return Actor("operator", operator, via.origin)


def _refused(exc: KeyringError | KekError) -> InvalidRequestError:
    # The keyring's refusals name versions and counts, never key material (C4); already audited.
    return InvalidRequestError(
        f"Key operation refused: {str(exc)[:200]}", code="key_operation_refused"
    )


def _key_rotate(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "operator", "kind", "merchant_id", "complete")
    operator = _operator(fields.text("operator"), actor)
    kind = fields.text("kind")
    complete = fields.flag("complete")
    try:
        if kind == "kek":
            return keys.rotate_kek(runtime, actor=operator, rewrap=complete)
        if kind == "dek":
            merchant_id = fields.text("merchant_id")
            return keys.rotate_dek(runtime, merchant_id, actor=operator, reencrypt=complete)
    except (KeyringError, KekError) as exc:
        raise _refused(exc) from None
    raise InvalidRequestError("kind must be kek or dek.", param="kind")


def _key_retire(runtime: VaultRuntime, body: Body, request: Request, actor: Actor) -> Any:
    fields = Fields(body, "operator", "kek_version", "merchant_id")
    operator = _operator(fields.text("operator"), actor)
    version = fields.integer("kek_version", required=False)
    merchant_id = fields.text("merchant_id", required=False)
    if (version is None) == (not merchant_id):
        raise InvalidRequestError(
            "Give exactly one of kek_version or merchant_id.", param="kek_version"
        )
    try:
        if version is not None:
            return keys.retire_kek(runtime, version, actor=operator)
        return keys.destroy_retired_deks(runtime, merchant_id, actor=operator)
    except (KeyringError, KekError) as exc:
        raise _refused(exc) from None


# --- Plumbing ------------------------------------------------------------------------------------


async def _refuse_unchecked(runtime: VaultRuntime, request: Request, rid: str) -> Response:
    """No checked client certificate on this connection: refuse and audit (T2, L1)."""
    peer = request.client.host if request.client else None
    await run_in_threadpool(
        auditlog.record_now,
        runtime.db,
        VaultEvent(
            actor_type="anonymous",
            actor_id="unknown",
            action="vault.mtls.reject",
            outcome="denied",
            target_type="listener",
            target_id="internal",
            origin=Origin(ip=peer, request_id=rid),
            details={"reason": "no_checked_client_certificate", "path": request.url.path[:200]},
        ),
    )
    return error_response(
        PermissionDenied("A client certificate is required.", code="client_certificate_required"),
        rid,
    )


def _endpoint(runtime: VaultRuntime, work: Work) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rid = request_id()
        client = client_of(request.scope)
        if client is None:
            return await _refuse_unchecked(runtime, request, rid)
        body: Body = {}
        if request.method == "POST":
            try:
                raw = await read_body(request, runtime.settings.max_internal_body_bytes)
                body = json_object(raw) if raw else {}
            except InvalidRequestError as exc:
                return error_response(exc, rid)
        peer = request.client.host if request.client else None
        actor = Actor("service", client, Origin(ip=peer, request_id=rid))
        return await answer(rid, lambda: work(runtime, body, request, actor))

    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(UnrecognizedUrl(request.method, request.url.path), request_id())


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(MethodNotAllowed(request.method, request.url.path), request_id())


def create_internal_app(runtime: VaultRuntime) -> ASGIApp:
    routes: list[tuple[str, str, Work]] = [
        ("GET", "/health", _health),
        ("POST", "/publishable_keys", _register_key),
        ("POST", "/publishable_keys/{key_id}/revoke", _revoke_key),
        ("POST", "/test_cards", _test_card),
        ("GET", "/payment_methods/{payment_method}", _card),
        ("POST", "/authorizations", _authorize),
        ("GET", "/authorizations/{authorization}", _authorization),
        ("GET", "/authentications/{authentication}", _authentication),
        ("POST", "/authorizations/{authorization}/capture", _capture),
        ("POST", "/authorizations/{authorization}/void", _void),
        ("POST", "/authorizations/{authorization}/reverse", _reverse),
        ("POST", "/authorizations/{authorization}/refunds", _refund),
        ("GET", "/keys/status", _key_status),
        ("POST", "/keys/rotate", _key_rotate),
        ("POST", "/keys/retire", _key_retire),
    ]
    app = Starlette(
        routes=[
            Route(PREFIX + path, _endpoint(runtime, work), methods=[method])
            for method, path, work in routes
        ],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    settings = runtime.settings
    filtered = RequestFilter(
        app,
        allowed_hosts=settings.allowed_hosts,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
    )
    return SecurityHeaders(filtered)

"""The api's side of the card vault: a `ProcessorConnector` and a small client over mutual TLS.

The api never sees a card number (ARCHITECTURE, issue 4 item 4): it talks to the vault's internal
listener (`/internal/v1`, docs/vault.md) with httpx, presenting the api's client certificate and
trusting only the platform CA (SECURITY-REQUIREMENTS T2). Nothing here imports `bastionpay.vault`
(an import-linter contract): the vault is reached over HTTPS only.

References, and why they look the way they do:

- **Authorization reference** sent to the vault = the api's charge id (`ch_…`). A charge is one
  confirmation attempt, so the reference is stable for the attempt and unique across attempts: a
  retry of the same HTTP call (a transport error after the request was sent) replays the vault's
  stored answer instead of sending a second `0100`, and a new attempt after a decline gets a new
  reference, as the vault requires.
- **Processor reference** stored on the charge = `<merchant_id>/<vauth_…>`. The vault scopes every
  call by merchant, while the `ProcessorConnector` contract passes follow-ups (capture, void,
  refund) only the reference; carrying the merchant inside it keeps the contract unchanged.
- **Refund reference** = the api's refund id (`re_…`), so a retried refund is the same refund.
- **PaymentMethod token** (`PaymentMethod.processor_token`) = `vault:<pm_…>`, or
  `vault:<pm_…>:<pm_card_name>` for a card minted from one of Stripe's test PaymentMethods (the
  name only drives the test-mode Radar cards, `test_cards.minted_from`).

Failures fail closed (P3): a vault that cannot be reached, answers 5xx or something unexpected is
a `ProcessorError` (502) and the caller's unit of work rolls back. An authorization whose acquirer
did not answer and whose reversal was not acknowledged (`reversal_pending`) is a *pending* result:
the PaymentIntent shows `processing` — never succeeded — while the vault's worker keeps sending
the reversal and the api worker's janitor settles it once acknowledged (`settle_pending`;
docs/vault.md, "How the api integrates"). 3-D Secure: an answer of `object:
"vault.authentication"` means nothing was sent to the acquirer and the cardholder must
authenticate first (`AuthenticationRequired`; `authentication` reports how it ended).
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from bastionpay.kernel.errors import InvalidRequestError, ProcessorError, ResourceMissing
from bastionpay.payments.interfaces import (
    AuthenticationRequired,
    AuthenticationStatus,
    AuthorizationRequest,
    AuthorizationResult,
    Decline,
    OperationResult,
)

log = logging.getLogger("bastionpay.payments.vault")

VAULT_TOKEN_PREFIX: Final = "vault:"  # noqa: S105 - a token-type prefix, not a secret
API_PREFIX: Final = "/internal/v1"
_PM_ID = re.compile(r"pm_[0-9A-Za-z]{24}")
_OBJECT_ID = re.compile(r"[a-z]{2,8}_[0-9A-Za-z]{8,64}")
# A transport error or a 409 (the same reference still in flight) is retried this often, with the
# same body: the vault replays answers by reference, so a retry never authorizes twice.
# Test cards remembered per (merchant, test card) in one api process: a bound, not a target.
MAX_REMEMBERED_TEST_CARDS: Final = 4096
ATTEMPTS: Final = 3
RETRY_PAUSE_SECONDS: Final = 0.25
_UNAVAILABLE = "The card vault could not be reached; the payment was not processed. Try again."


@dataclass(frozen=True)
class VaultCard:
    """What the vault tells the api about a card (docs/vault.md, PaymentMethod) — never the PAN."""

    id: str
    livemode: bool
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    country: str | None
    fingerprint: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> VaultCard:
        card = payload.get("card")
        pm = payload.get("id")
        if not isinstance(card, dict) or not isinstance(pm, str) or not _PM_ID.fullmatch(pm):
            raise ProcessorError("The card vault sent an unexpected PaymentMethod.")
        try:
            return cls(
                id=pm,
                livemode=bool(payload["livemode"]),
                brand=str(card["brand"])[:32],
                last4=str(card["last4"])[:4],
                exp_month=int(card["exp_month"]),
                exp_year=int(card["exp_year"]),
                funding=str(card.get("funding") or "unknown")[:16],
                country=str(card["country"])[:2] if card.get("country") else None,
                fingerprint=str(card["fingerprint"])[:64],
            )
        except (KeyError, TypeError, ValueError):
            raise ProcessorError("The card vault sent an unexpected PaymentMethod.") from None


class VaultError(Exception):
    """The vault answered with an error object (4xx); `code` is the vault's error code."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"vault error {status} {error.get('code')}")
        self.status = status
        self.error = error

    @property
    def code(self) -> str | None:
        code = self.error.get("code")
        return str(code) if code is not None else None


def mtls_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Trust only the platform CA (no system store) and present the api's client certificate."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # T1
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class VaultClient:
    """JSON over mutual TLS to the vault's internal listener. Thread-safe (one pooled client)."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._context = mtls_context(ca_file, cert_file, key_file)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._transport = transport
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._test_cards: OrderedDict[tuple[str, str], VaultCard] = OrderedDict()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            verify=self._context,
            timeout=self._timeout,
            # Nagle off: a request written in two parts must not wait for a delayed ACK (~40 ms).
            transport=self._transport
            or httpx.HTTPTransport(
                verify=self._context,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            headers={"User-Agent": "bastionpay-api"},
        )

    def _client(self) -> httpx.Client:
        # Created on first use: processes that never pay (the worker, admin commands) never
        # connect, and a forked process never shares a parent's connections.
        with self._lock:
            if self._http is None:
                self._http = self._new_client()
            return self._http

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        pooled: bool,
    ) -> httpx.Response:
        if pooled:
            return self._client().request(method, API_PREFIX + path, json=body, params=params)
        # Rare calls (key registration from a CLI command) leave no connection open behind them.
        with self._new_client() as http:
            return http.request(method, API_PREFIX + path, json=body, params=params)

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        retry: bool = True,
        pooled: bool = True,
    ) -> dict[str, Any]:
        """One vault call; 2xx → the JSON object, 4xx → `VaultError`, else `ProcessorError`.

        With `retry`, a transport error, a 409 (in flight) or a 503 is retried with the same body.
        Only idempotent operations ask for it — every vault operation is, by id or by reference.
        """
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                response = self._send(method, path, body, params, pooled)
            except httpx.HTTPError as exc:
                log.warning(
                    "vault call failed: %s %s (%s), attempt %d/%d",
                    method,
                    _template(path),
                    type(exc).__name__,
                    attempt,
                    attempts,
                )
                if attempt < attempts:
                    time.sleep(RETRY_PAUSE_SECONDS * attempt)
                    continue
                raise ProcessorError(_UNAVAILABLE, code="processing_error") from None
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            log.debug(
                "vault call %s %s -> %d in %s ms (request %s)",
                method,
                _template(path),
                response.status_code,
                elapsed_ms,
                response.headers.get("request-id", "-"),
            )
            if response.status_code in (409, 503) and attempt < attempts:
                time.sleep(RETRY_PAUSE_SECONDS * attempt)
                continue
            return _decode(method, path, response)
        raise ProcessorError(_UNAVAILABLE, code="processing_error")  # pragma: no cover

    # --- Cards and keys ---------------------------------------------------------------------

    def create_test_card(self, merchant_id: str, test_card: str) -> VaultCard:
        """A vault record made from one of Stripe's public test cards, named, never numbered."""
        try:
            payload = self.call(
                "POST",
                "/test_cards",
                body={"merchant_id": merchant_id, "test_card": test_card},
                retry=False,  # each call creates a card: no blind retry
            )
        except VaultError as exc:
            raise _unexpected(exc) from None
        return VaultCard.from_payload(payload)

    def test_card(self, merchant_id: str, test_card: str) -> tuple[VaultCard, bool]:
        """The merchant's vault record of a Stripe test card, and whether this call created it.

        One record per merchant and test card (issue 4, item 4: test PaymentMethods are vault
        records made from Stripe's public numbers, as if at merchant creation), created on first
        use and remembered by this process; every use still gets its own api PaymentMethod. Minting
        one per use put a vault write and a round trip inside every test payment's transaction.
        A restarted process mints again, once per card: harmless test-mode records.
        """
        key = (merchant_id, test_card)
        with self._lock:
            known = self._test_cards.get(key)
            if known is not None:
                self._test_cards.move_to_end(key)
                return known, False
        card = self.create_test_card(merchant_id, test_card)
        with self._lock:
            self._test_cards[key] = card
            while len(self._test_cards) > MAX_REMEMBERED_TEST_CARDS:
                self._test_cards.popitem(last=False)
        return card, True

    def payment_method(self, merchant_id: str, payment_method: str) -> VaultCard | None:
        """A card's metadata, or None when the vault has no such card for this merchant."""
        if not _PM_ID.fullmatch(payment_method):
            return None
        try:
            payload = self.call(
                "GET",
                f"/payment_methods/{payment_method}",
                params={"merchant_id": merchant_id},
            )
        except VaultError as exc:
            if exc.status == 404:
                return None
            raise _unexpected(exc) from None
        return VaultCard.from_payload(payload)

    def register_publishable_key(
        self,
        *,
        key_id: str,
        key: str,
        merchant_id: str,
        livemode: bool,
        allowed_origins: list[str] | None = None,
    ) -> None:
        """Let the hosted fields accept `key` for `merchant_id` (idempotent)."""
        body = {
            "id": key_id,
            "key": key,
            "merchant_id": merchant_id,
            "livemode": livemode,
            "allowed_origins": list(allowed_origins or []),
        }
        try:
            self.call("POST", "/publishable_keys", body=body, pooled=False)
        except VaultError as exc:
            raise _unexpected(exc) from None

    def revoke_publishable_key(self, key_id: str, merchant_id: str) -> None:
        try:
            self.call(
                "POST",
                f"/publishable_keys/{key_id}/revoke",
                body={"merchant_id": merchant_id},
                pooled=False,
            )
        except VaultError as exc:
            if exc.status != 404:
                raise _unexpected(exc) from None

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")


def _template(path: str) -> str:
    """The path with ids replaced, for logs (ids are not secret, but keep lines comparable)."""
    return _OBJECT_ID.sub("{id}", path)


def _decode(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        log.error(
            "vault answered %d without a JSON object: %s %s",
            response.status_code,
            method,
            _template(path),
        )
        raise ProcessorError(_UNAVAILABLE, code="processing_error")
    if 200 <= response.status_code < 300:
        return payload
    error = payload.get("error")
    if 400 <= response.status_code < 500 and isinstance(error, dict):
        raise VaultError(response.status_code, error)
    log.error(
        "vault answered %d (%s) to %s %s",
        response.status_code,
        error.get("code") if isinstance(error, dict) else None,
        method,
        _template(path),
    )
    raise ProcessorError(_UNAVAILABLE, code="processing_error")


def _unexpected(exc: VaultError) -> ProcessorError:
    # An answer the api does not expect is an integration fault, not the merchant's: 502, logged.
    log.error("unexpected vault error %d (%s)", exc.status, exc.code)
    return ProcessorError(
        "The card vault refused the operation; the payment was not processed.",
        code="processing_error",
    )


# --- Tokens and references ------------------------------------------------------------------


def vault_token(payment_method: str, test_card: str | None = None) -> str:
    """The `processor_token` of a PaymentMethod held by the vault."""
    suffix = f":{test_card}" if test_card else ""
    return f"{VAULT_TOKEN_PREFIX}{payment_method}{suffix}"


def vault_payment_method(processor_token: str) -> str | None:
    """The vault's `pm_…` inside a processor token, or None if the token is not the vault's."""
    if not processor_token.startswith(VAULT_TOKEN_PREFIX):
        return None
    pm = processor_token.removeprefix(VAULT_TOKEN_PREFIX).split(":", 1)[0]
    return pm if _PM_ID.fullmatch(pm) else None


def processor_reference(merchant_id: str, authorization_id: str) -> str:
    return f"{merchant_id}/{authorization_id}"


def split_reference(reference: str) -> tuple[str, str]:
    merchant_id, _, authorization_id = reference.partition("/")
    if not (_OBJECT_ID.fullmatch(merchant_id) and _OBJECT_ID.fullmatch(authorization_id)):
        raise ProcessorError("The charge's processor reference is not the card vault's.")
    return merchant_id, authorization_id


# --- The connector ----------------------------------------------------------------------------


class VaultConnector:
    """`ProcessorConnector` over the vault: api → vault (mTLS) → acquirer (ISO 8583)."""

    # The vault decides whether a card needs 3-D Secure and serves the challenge (issue 4, item 7).
    supports_three_d_secure = True

    def __init__(self, client: VaultClient) -> None:
        self.client = client

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        pm = vault_payment_method(request.processor_token)
        if pm is None:
            # E.g. a PaymentMethod minted by the sandbox connector before the vault was enabled.
            raise InvalidRequestError(
                "This PaymentMethod is not held by the card vault and cannot be charged; "
                "create a new one.",
                code="payment_method_unexpected_state",
                param="payment_method",
            )
        body = {
            "merchant_id": request.merchant_id,
            "payment_method": pm,
            "livemode": request.livemode,
            "amount": request.amount,
            "currency": request.currency,
            "reference": request.charge_id,  # per attempt: a retried call replays (module doc)
        }
        if request.authentication is not None:
            body["authentication"] = request.authentication
        if request.request_three_d_secure != "automatic":
            body["request_three_d_secure"] = request.request_three_d_secure
        if request.return_url is not None:
            body["return_url"] = request.return_url
        try:
            answer = self.client.call("POST", "/authorizations", body=body)
        except VaultError as exc:
            if exc.status == 404:
                raise ResourceMissing("PaymentMethod", pm, param="payment_method") from None
            raise _unexpected(exc) from None
        return self._authorization_result(request.merchant_id, answer)

    @staticmethod
    def _authorization_result(merchant_id: str, answer: dict[str, Any]) -> AuthorizationResult:
        if answer.get("object") == "vault.authentication":
            return _authentication_required(answer)
        status = answer.get("status")
        authorization_id = str(answer.get("id", ""))
        if status == "approved":
            return AuthorizationResult(
                approved=True,
                reference=processor_reference(merchant_id, authorization_id),
                authorization_code=answer.get("approval_code"),
            )
        if status == "declined":
            decline = answer.get("decline") or {}
            return AuthorizationResult(
                approved=False,
                reference=processor_reference(merchant_id, authorization_id),
                decline=Decline(
                    code=str(decline.get("code") or "card_declined"),
                    decline_code=str(decline.get("decline_code") or "generic_decline"),
                    message=str(decline.get("message") or "Your card was declined."),
                ),
            )
        if status == "reversal_pending":
            # The acquirer did not answer and did not acknowledge the reversal either: whether the
            # issuer holds the money is unknown until the reversal gets through. Never
            # "succeeded": the PaymentIntent shows `processing` until the worker's janitor sees
            # the reversal acknowledged (issue 4, item 6; jobs/janitor.py).
            log.warning(
                "authorization %s is reversal_pending (%s); the vault keeps reversing it",
                authorization_id,
                answer.get("fault"),
            )
            return AuthorizationResult(
                approved=False,
                pending=True,
                reference=processor_reference(merchant_id, authorization_id),
            )
        log.error("vault authorization %s in unexpected status %s", authorization_id, status)
        raise ProcessorError(
            "The card vault could not process the payment.", code="processing_error"
        )

    def authentication(self, merchant_id: str, authentication_id: str) -> AuthenticationStatus:
        """Where the cardholder's 3-D Secure stands (the vault knows; the api asks)."""
        if not _OBJECT_ID.fullmatch(authentication_id):
            raise ResourceMissing("authentication", authentication_id[:64])
        try:
            answer = self.client.call(
                "GET",
                f"/authentications/{authentication_id}",
                params={"merchant_id": merchant_id},
            )
        except VaultError as exc:
            if exc.status == 404:
                raise ResourceMissing("authentication", authentication_id) from None
            raise _unexpected(exc) from None
        status = answer.get("status")
        if answer.get("id") != authentication_id or status not in _AUTHENTICATION_STATUSES:
            log.error("vault authentication %s in unexpected status %s", authentication_id, status)
            raise ProcessorError("The card vault sent an unexpected authentication.")
        return AuthenticationStatus(id=authentication_id, status=status)

    def settle_pending(self, reference: str) -> Literal["pending", "reversed"]:
        """Ask the vault to send the reversal again (`/reverse`, idempotent once reversed)."""
        merchant_id, authorization_id = split_reference(reference)
        try:
            answer = self.client.call(
                "POST",
                f"/authorizations/{authorization_id}/reverse",
                body={"merchant_id": merchant_id},
            )
        except VaultError as exc:
            raise _unexpected(exc) from None
        status = answer.get("status")
        if status in ("reversed", "voided"):
            return "reversed"
        if status != "reversal_pending":
            log.error("pending authorization %s is now %s", authorization_id, status)
            raise ProcessorError("The card vault reports an unexpected authorization state.")
        return "pending"

    def capture(self, reference: str, amount: int, currency: str) -> OperationResult:
        merchant_id, authorization_id = split_reference(reference)
        try:
            self.client.call(
                "POST",
                f"/authorizations/{authorization_id}/capture",
                body={"merchant_id": merchant_id, "amount": amount},
            )
        except VaultError as exc:
            return _refused(exc)
        return OperationResult(succeeded=True, reference=reference)

    def void(self, reference: str) -> OperationResult:
        merchant_id, authorization_id = split_reference(reference)
        try:
            answer = self.client.call(
                "POST",
                f"/authorizations/{authorization_id}/void",
                body={"merchant_id": merchant_id},
            )
        except VaultError as exc:
            return _refused(exc)
        status = answer.get("status")
        if status == "reversal_pending":
            # Sent but not yet acknowledged: the vault's worker retries the reversal until it is;
            # the hold is released either way, so for the api the void is done.
            log.warning("void of %s is reversal_pending; the vault keeps reversing it", reference)
        elif status not in ("voided", "reversed"):
            return OperationResult(succeeded=False, failure_message=f"void ended {status}")
        return OperationResult(succeeded=True, reference=reference)

    def refund(self, reference: str, refund_id: str, amount: int, currency: str) -> OperationResult:
        merchant_id, authorization_id = split_reference(reference)
        try:
            answer = self.client.call(
                "POST",
                f"/authorizations/{authorization_id}/refunds",
                body={"merchant_id": merchant_id, "amount": amount, "reference": refund_id},
            )
        except VaultError as exc:
            return _refused(exc)
        if answer.get("status") != "succeeded":
            return OperationResult(succeeded=False, failure_message="The refund did not succeed.")
        return OperationResult(succeeded=True, reference=str(answer.get("id")))


_AUTHENTICATION_STATUSES: Final = ("requires_action", "succeeded", "failed", "expired")


def _authentication_required(answer: dict[str, Any]) -> AuthorizationResult:
    """The vault sent no `0100`: the card (or the api's request) needs 3-D Secure first."""
    authentication_id, url = answer.get("id"), answer.get("redirect_url")
    if (
        answer.get("status") != "requires_action"
        or not isinstance(authentication_id, str)
        or not _OBJECT_ID.fullmatch(authentication_id)
        or not isinstance(url, str)
        or not url.startswith("https://")
    ):
        # A replay of an attempt whose challenge already ended: not an authorization either.
        log.warning("vault authentication %s is %s", authentication_id, answer.get("status"))
        raise ProcessorError(
            "The 3-D Secure attempt for this payment has already ended; confirm again.",
            code="processing_error",
        )
    return AuthorizationResult(
        approved=False,
        authentication=AuthenticationRequired(
            id=authentication_id, url=url, reason=str(answer.get("reason") or "card_required")
        ),
    )


def _refused(exc: VaultError) -> OperationResult:
    message = exc.error.get("message")
    log.warning("the vault refused an operation: %d (%s)", exc.status, exc.code)
    return OperationResult(
        succeeded=False,
        failure_message=str(message)[:300] if message else "The card vault refused the operation.",
    )


def card_vault(connector: object) -> VaultClient | None:
    """The vault client behind a connector, when the payments go through the vault."""
    return connector.client if isinstance(connector, VaultConnector) else None

"""The synchronous request pipeline, run in a worker thread for each /v1 request.

Order matters and follows Stripe: authenticate (401) → authorize the route's permission (403) →
validate parameters (400) → step-up for operators' sensitive actions (403) → idempotency (P1) →
the handler in one unit of work (P2). Nothing is written for a request that fails before the
handler runs.

Three kinds of principal reach `/v1` (I5, one mechanism): API keys (`Authorization: Bearer sk_…`),
OAuth 2.0 access tokens (`Authorization: Bearer <JWT>`) and operators' sessions (cookie + CSRF
header); see `bastionpay.identity.principals`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from bastionpay.api.params import validate
from bastionpay.api.routing import Call, Endpoint, Result
from bastionpay.audit import events as audit
from bastionpay.audit.events import Action, ActorType, AuditEvent, Origin
from bastionpay.db.uow import unit_of_work
from bastionpay.edge.networks import Network, contains, parse_address, parse_networks
from bastionpay.edge.ratelimit import API_READ, API_WRITE, AUTH_FAILURES
from bastionpay.idempotency import service as idempotency
from bastionpay.identity import principals
from bastionpay.identity.mfa.stepup import CLOCK_SKEW_SECONDS
from bastionpay.kernel.errors import (
    AuthenticationError,
    BastionPayError,
    InvalidRequestError,
    PermissionDenied,
    StepUpRequired,
)
from bastionpay.merchants import service as merchants
from bastionpay.merchants.service import Caller
from bastionpay.observability.metrics import METRICS
from bastionpay.runtime import Runtime

log = logging.getLogger("bastionpay.api")


@dataclass(frozen=True)
class Incoming:
    method: str
    path: str
    path_params: dict[str, str]
    authorization: str | None
    idempotency_key: str | None
    params: dict[str, Any]
    request_id: str
    client_ip: str | None = None
    user_agent: str | None = None
    # Operators' browsers (identity issue): the session cookie, the CSRF header, the account a
    # platform operator acts on (Stripe-Account) and the mode (test unless asked for live).
    session_token: str | None = None
    csrf_token: str | None = None
    account: str | None = None
    livemode: bool = False

    @property
    def origin(self) -> Origin:
        return Origin(ip=self.client_ip, user_agent=self.user_agent, request_id=self.request_id)


@dataclass(frozen=True)
class Outgoing:
    status: int
    body: str
    replayed: bool = False


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def presented_key(authorization: str | None) -> str | None:
    """Bearer auth (Stripe SDKs) or Basic auth with the key as user name (curl -u sk_…:)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


def _extract_expand(params: dict[str, Any]) -> list[str]:
    raw = params.pop("expand", None)
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise InvalidRequestError(
            "Invalid expand: must be an array of strings.", code="parameter_invalid", param="expand"
        )
    if len(raw) > 20:
        raise InvalidRequestError(
            "You may expand at most 20 properties.", code="parameter_invalid", param="expand"
        )
    return raw


_PAYMENT_ACTIONS = frozenset({"payments.payment_intent.create", "payments.payment_intent.confirm"})


def _count_payment(result: Result) -> None:
    if result.status == 402:
        code = str(result.body.get("error", {}).get("decline_code") or "unknown")
        METRICS.payments.labels("declined", code[:40]).inc()
    elif result.status < 400 and result.body.get("status") in ("succeeded", "requires_capture"):
        METRICS.payments.labels(str(result.body["status"]), "").inc()


def _audit_alone(runtime: Runtime, event: AuditEvent) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        audit.record(session, event)


def _action_event(action: Action, caller: Caller, incoming: Incoming, result: Result) -> AuditEvent:
    body = result.body
    target = body.get("error", {}).get("payment_intent") if result.status >= 400 else body
    target = target if isinstance(target, dict) else {}
    details: dict[str, Any] = {"status": result.status}
    for name in ("amount", "currency", "status", "amount_received", "amount_capturable"):
        if name in target:
            details[name] = target[name]
    if result.status >= 400:
        error = body.get("error", {})
        details.update(code=error.get("code"), decline_code=error.get("decline_code"))
    return AuditEvent(
        actor_type=_actor_type(caller),
        actor_id=caller.key_id,
        action=action,
        outcome="success" if result.status < 400 else "failure",
        merchant_id=caller.merchant_id,
        livemode=caller.livemode,
        target_type=target.get("object"),
        target_id=target.get("id"),
        origin=incoming.origin,
        details=details,
    )


def _actor_type(caller: Caller) -> ActorType:
    return cast(ActorType, caller.actor_type)


def _denied(caller: Caller, endpoint: Endpoint, incoming: Incoming, **details: Any) -> AuditEvent:
    return AuditEvent(
        actor_type=_actor_type(caller),
        actor_id=caller.key_id,
        action=(
            "identity.authentication.fail"
            if caller.actor_type == "api_key"
            else "identity.authorization.deny"
        ),
        outcome="denied",
        merchant_id=caller.merchant_id,
        livemode=caller.livemode,
        origin=incoming.origin,
        details={"method": endpoint.method, "path": incoming.path[:200], **details},
    )


@lru_cache(maxsize=1024)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(cidrs)


def _rate_limit(runtime: Runtime, endpoint: Endpoint, caller: Caller) -> None:
    """Per key, reads and writes counted apart, with the merchant's overrides (T4)."""
    writes = endpoint.method != "GET"
    override = caller.rate_limit_write if writes else caller.rate_limit_read
    limit = override or runtime.settings.api_rate_limit(caller.livemode, writes)
    runtime.rate_limits.hit(API_WRITE if writes else API_READ, limit, caller.key_id)


def _authorize(
    runtime: Runtime, endpoint: Endpoint, incoming: Incoming, now: int
) -> tuple[Caller, int, bool]:
    """Authenticate, apply the key's IP allow-list and rate limit, check the route's permission.

    Failures are audited, except what a rate limit refuses: a flood of bad keys from one address
    must not turn into a flood of audit writes (T4).
    """
    db = runtime.db
    presented = presented_key(incoming.authorization)
    key_pk, stale = 0, False
    try:
        if presented is None and incoming.session_token is not None:
            caller = _session_caller(runtime, endpoint, incoming, incoming.session_token, now)
        else:
            with unit_of_work(db, write=False) as session:
                if presented is not None and principals.looks_like_jwt(presented):
                    caller = principals.token_caller(runtime, session, presented, now=now)
                else:
                    found = merchants.authenticate(session, runtime.api_keys, presented)
                    caller = merchants.caller_for(found)
                    key_pk, stale = found.record.pk, merchants.needs_touch(found.record, now)
    except PermissionDenied as exc:
        # An operator's session that fails CSRF or names an account it cannot reach (I5).
        METRICS.auth_failures.labels("permission_denied").inc()
        _audit_alone(
            runtime,
            AuditEvent(
                actor_type=_presented_type(presented, incoming),
                actor_id=exc.user_id if isinstance(exc, principals.SessionRefused) else "unknown",
                action="identity.authorization.deny",
                outcome="denied",
                origin=incoming.origin,
                details={
                    "method": endpoint.method,
                    "path": incoming.path[:200],
                    "reason": exc.code,
                },
            ),
        )
        raise
    except AuthenticationError:
        METRICS.auth_failures.labels("invalid_key").inc()
        # Failed attempts per address are limited before they are audited: past the limit the
        # caller gets 429 and no audit row; each window still records the attempts within it.
        runtime.rate_limits.hit(
            AUTH_FAILURES,
            runtime.settings.rate_limit_auth_failures_ip,
            incoming.client_ip or "unknown",
        )
        # PCI DSS 10.2.1.4: invalid access attempts are audited — without the presented key.
        _audit_alone(
            runtime,
            AuditEvent(
                actor_type=_presented_type(presented, incoming),
                actor_id="unknown",
                action="identity.authentication.fail",
                outcome="failure",
                origin=incoming.origin,
                details={"method": endpoint.method, "path": incoming.path[:200]},
            ),
        )
        raise
    if caller.allowed_ips is not None and not contains(
        _networks(caller.allowed_ips), parse_address(incoming.client_ip)
    ):
        # I7: a key restricted to networks is useless elsewhere, even when it leaks.
        METRICS.auth_failures.labels("ip_not_allowed").inc()
        _audit_alone(runtime, _denied(caller, endpoint, incoming, reason="ip_not_allowed"))
        raise PermissionDenied(
            "This API key cannot be used from your IP address.", code="ip_not_allowed"
        )
    _rate_limit(runtime, endpoint, caller)
    if endpoint.permission not in caller.permissions:
        METRICS.auth_failures.labels("permission_denied").inc()
        _audit_alone(runtime, _denied(caller, endpoint, incoming, permission=endpoint.permission))
        if caller.kind == "publishable":
            raise PermissionDenied(
                "This API call cannot be made with a publishable API key. Please use a secret "
                "API key.",
                code="secret_key_required",
            )
        who = (
            "key"
            if caller.actor_type == "api_key"
            else ("role" if caller.actor_type == "user" else "access token")
        )
        raise PermissionDenied(
            f"The provided {who} does not have the required permissions for this endpoint "
            f"({endpoint.permission}).",
            code="insufficient_permissions",
        )

    return caller, key_pk, stale


def _session_caller(
    runtime: Runtime, endpoint: Endpoint, incoming: Incoming, token: str, now: int
) -> Caller:
    """An operator's session. Its use moves its idle clock, and a dead session is revoked and
    audited (L1): that read writes, and commits even when the request is then refused (operators'
    traffic only; API keys keep the read-only path)."""
    credentials = principals.SessionCredentials(
        token=token,
        csrf_token=incoming.csrf_token,
        account=incoming.account,
        livemode=incoming.livemode,
    )
    with unit_of_work(runtime.db, write=True) as session:
        caller = principals.session_caller(
            runtime,
            session,
            credentials,
            writes=endpoint.method != "GET",
            now=now,
            platform=endpoint.platform,
        )
    if caller is None:
        raise AuthenticationError(principals.SESSION_REQUIRED, code="session_invalid")
    return caller


SHOWN_ONCE = "(shown once, when created; not replayed)"


def _replayable(endpoint: Endpoint, result: Result, body: str) -> str:
    """What the idempotency store keeps for replay: the answer without the secrets shown once
    (a new API key, an app's client secret, an invitation link), which must not sit in the
    database in clear (I7). A retry still creates nothing twice; it gets the object without them."""
    if not endpoint.secret_fields:
        return body
    redacted = {
        name: SHOWN_ONCE if name in endpoint.secret_fields else value
        for name, value in result.body.items()
    }
    return dumps(redacted)


def _presented_type(presented: str | None, incoming: Incoming) -> ActorType:
    if presented is None and incoming.session_token is not None:
        return "user"
    if presented is not None and principals.looks_like_jwt(presented):
        return "oauth_client"
    return "api_key"


def _step_up(
    runtime: Runtime,
    endpoint: Endpoint,
    caller: Caller,
    incoming: Incoming,
    validated: Any,
    now: int,
) -> None:
    """Operators' sensitive actions need a second factor proven within minutes (I3)."""
    if caller.actor_type != "user" or endpoint.step_up is None:
        return
    if not endpoint.step_up(validated, runtime.settings):
        return
    max_age = runtime.settings.step_up_max_age_seconds
    # A proof dated in the future beyond clock skew between processes does not count (P3), as in
    # `identity.mfa.stepup.require_step_up`, which the pages use.
    if caller.mfa_at is not None and -CLOCK_SKEW_SECONDS <= now - caller.mfa_at <= max_age:
        return
    _audit_alone(
        runtime,
        AuditEvent(
            actor_type="user",
            actor_id=caller.key_id,
            action="identity.step_up.required",
            outcome="denied",
            merchant_id=caller.merchant_id,
            livemode=caller.livemode,
            origin=incoming.origin,
            details={"method": endpoint.method, "path": incoming.path[:200]},
        ),
    )
    raise StepUpRequired(max_age)


def execute(runtime: Runtime, endpoint: Endpoint, incoming: Incoming) -> Outgoing:
    db = runtime.db
    now = runtime.clock.now()
    caller, key_pk, stale = _authorize(runtime, endpoint, incoming, now)

    params = dict(incoming.params)
    expand = _extract_expand(params)
    validated = validate(endpoint.params, params)
    _step_up(runtime, endpoint, caller, incoming, validated, now)

    reservation: idempotency.Reservation | None = None
    if endpoint.method == "POST" and incoming.idempotency_key is not None:
        begun = idempotency.begin(
            db,
            # Platform-wide routes have no merchant: each operator gets their own key space, so
            # one operator's key never replays another's answer.
            merchant_id=(
                f"{caller.merchant_id}:{caller.key_id}"[:64]
                if endpoint.platform
                else caller.merchant_id
            ),
            livemode=caller.livemode,
            key=incoming.idempotency_key,
            hasher=runtime.idempotency_keys,
            method=endpoint.method,
            path=incoming.path,
            request_hash=idempotency.fingerprint(endpoint.method, incoming.path, incoming.params),
            now=now,
            lock_timeout=runtime.settings.idempotency_lock_timeout_seconds,
        )
        if isinstance(begun, idempotency.Replay):
            return Outgoing(status=begun.status, body=begun.body, replayed=True)
        reservation = begun

    ctx = runtime.payment_context(
        caller.merchant_id,
        caller.livemode,
        now,
        timezone=caller.timezone,
        risk_policy=caller.risk_failure_policy,
    )
    try:
        with unit_of_work(db, write=endpoint.writes) as session:
            call = Call(
                session=session,
                caller=caller,
                ctx=ctx,
                params=validated,
                path=incoming.path_params,
                expand=expand,
                runtime=runtime,
            )
            result: Result = endpoint.handler(call)
            if endpoint.audit_action in _PAYMENT_ACTIONS:
                _count_payment(result)
            if endpoint.audit_action is not None:
                # Same unit of work as the action: no audit record, no action (P3).
                audit.record(
                    session, _action_event(endpoint.audit_action, caller, incoming, result)
                )
            body = dumps(result.body)
            if reservation is not None:
                idempotency.complete(
                    session, reservation, result.status, _replayable(endpoint, result, body)
                )
            if endpoint.writes and stale:
                merchants.touch_last_used(session, key_pk, now)
                stale = False
    except BastionPayError as exc:
        # Nothing was committed: undo what the processor already did (void, refund) (P2).
        ctx.journal.compensate()
        if reservation is not None:
            if exc.http_status < 500:
                # A request error is the key's result: replayed like Stripe does.
                idempotency.store_error(db, reservation, exc.http_status, dumps(exc.to_wire()))
            else:
                # Processor failures roll everything back, so the same key may safely retry.
                idempotency.release(db, reservation)
        raise
    except Exception:
        ctx.journal.compensate()
        if reservation is not None:
            idempotency.release(db, reservation)
        raise
    if stale:
        with unit_of_work(db, write=True) as session:
            merchants.touch_last_used(session, key_pk, now)
    return Outgoing(status=result.status, body=body)

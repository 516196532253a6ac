"""3-D Secure, simplified EMV 3DS (issue 4, item 7): the vault decides, challenges and vouches.

The vault plays the 3DS server, the directory server and the issuer's access control server of a
simulated network — it is the only place that knows the card, so it is the only place that can
say whether the card needs authentication (the api never sees the number, C1-C5).

States of an authentication (`vault_authentications`):

    pending ──(cardholder: "Complete authentication")──> succeeded ──(one authorization)
        │ └──(cardholder: "Fail authentication")─────> failed
        └──(challenge_expires_at passes)──────────────> expired (read as such; nothing to store)

1. `begin`: an authorization request for a card that requires authentication (or with
   `request_three_d_secure: "any"`, what a risk rule asks for) sends nothing to the acquirer. An
   authentication bound to merchant, card, amount, currency and the attempt's reference is
   created and its challenge URL returned; the same reference again returns the same one.
2. The challenge id in the URL is HMAC-SHA-256(vault key, authentication id), 256 bits: unguessable,
   recomputable (a replayed `begin` returns the same URL) and stored only as a SHA-256 hash, so
   someone who reads the database cannot complete a challenge. It works once and for
   `three_ds_challenge_ttl_seconds` (`complete`: one conditional UPDATE).
3. On success the ECI is recorded ("05" Visa and others, "02" Mastercard: fully authenticated).
   The cryptogram (CAVV-like, `acquirer.authentication`) is a keyed MAC (HMAC-SHA-256 under the
   vault's own key, `crypto.keyed_hash`) over the transaction; it is never stored, only recomputed
   when the authorization that carries it in DE 48 is sent (`result_for`).
4. `result_for` hands the result to exactly one authorization: the authorization must name the
   same card, amount, currency and reference, and (merchant, reference) is unique — so a result
   cannot be replayed on another payment.

Every step is audited in the vault's log (`vault.three_d_secure.*`, L1; PCI DSS 10.2.1.4-5).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bastionpay.acquirer import authentication as cavv
from bastionpay.acquirer.client import ThreeDSecure
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import (
    IdempotencyError,
    InvalidRequestError,
    ResourceMissing,
    ServiceUnavailable,
)
from bastionpay.kernel.ids import new_id
from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog
from bastionpay.vault.auditlog import Outcome, VaultAction, VaultEvent
from bastionpay.vault.models import Authentication, Card
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.settings import normalise_origin
from bastionpay.vault.store import rowcount
from bastionpay.vault.tokens import Actor, deny

log = get_logger("bastionpay.vault.threeds")

CHALLENGE_PATH: Final = "/3ds/challenge/"
MAX_RETURN_URL: Final = 2048
RequestMode = Literal["automatic", "any"]
REQUEST_MODES: Final = ("automatic", "any")
# Fully authenticated (EMV 3DS transStatus "Y"): Mastercard's ECI is 02, Visa's (and the others'
# in this simulation) 05.
_ECI_BY_BRAND: Final = {"mastercard": "02"}
_DEFAULT_ECI: Final = "05"


class ChallengeRefused(Exception):
    """The challenge cannot be used: unknown, expired, already used. `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_return_url(value: object) -> str | None:
    """An absolute http(s) URL (Stripe's `return_url`), or None. Never a script or data URL."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_RETURN_URL
        or not value.isascii()
        or not value.isprintable()
    ):
        raise InvalidRequestError("return_url must be an absolute URL.", param="return_url")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or any(char.isspace() for char in value)
    ):
        raise InvalidRequestError("return_url must be an absolute URL.", param="return_url")
    try:
        # Its origin becomes the challenge page's CSP form-action: a real host only (review L1).
        normalise_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        raise InvalidRequestError(
            "return_url must be an absolute URL.", param="return_url"
        ) from None
    return value


def reason_for(card: Card, mode: RequestMode) -> str | None:
    """Why this payment needs 3-D Secure, or None: the issuer requires it, or the api asked."""
    if card.three_d_secure == "required":
        return "card_required"
    if mode == "any":
        return "requested"
    return None


def challenge_id(runtime: VaultRuntime, authentication_id: str) -> str:
    digest = bytes.fromhex(runtime.three_ds_challenges.hexdigest(authentication_id))
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def challenge_hash(challenge: str) -> str:
    # A plain hash is enough: the input is 256 random-looking bits, not guessable.
    return hashlib.sha256(challenge.encode("ascii", "replace")).hexdigest()


def challenge_url(runtime: VaultRuntime, row: Authentication) -> str:
    return f"{runtime.public_url.value}{CHALLENGE_PATH}{challenge_id(runtime, row.id)}"


def status_of(row: Authentication, now: int) -> str:
    if row.status == "pending":
        return "expired" if now >= row.challenge_expires_at else "requires_action"
    return row.status


def payload(runtime: VaultRuntime, row: Authentication) -> dict[str, Any]:
    status = status_of(row, runtime.clock.now())
    return {
        "id": row.id,
        "object": "vault.authentication",
        "status": status,
        "reason": row.reason,
        "merchant_id": row.merchant_id,
        "payment_method": row.card_id,
        "livemode": row.livemode,
        "reference": row.reference,
        "amount": row.amount,
        "currency": row.currency,
        "eci": row.eci,
        # The challenge link is a bearer capability: handed out only while it can be used.
        "redirect_url": challenge_url(runtime, row) if status == "requires_action" else None,
        "return_url": row.return_url,
        "expires_at": row.challenge_expires_at,
        "created": row.created,
        "completed_at": row.completed_at,
    }


def _audit(
    session: Any,
    actor: Actor,
    action: VaultAction,
    outcome: Outcome,
    row: Authentication,
    **details: Any,
) -> None:
    auditlog.record(
        session,
        VaultEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            outcome=outcome,
            merchant_id=row.merchant_id,
            livemode=row.livemode,
            target_type="authentication",
            target_id=row.id,
            origin=actor.origin,
            details={"payment_method": row.card_id, "reference": row.reference, **details},
        ),
    )


# --- Begin (internal listener, inside an authorization request) --------------------------------


def begin(
    runtime: VaultRuntime,
    card: Card,
    *,
    reference: str,
    amount: int,
    currency: str,
    reason: str,
    return_url: str | None,
    actor: Actor,
) -> dict[str, Any]:
    """The authentication for this attempt: created, or the existing one for `reference`."""
    now = runtime.clock.now()
    row = Authentication(
        id=new_id("vauthn"),
        merchant_id=card.merchant_id,
        card_id=card.id,
        livemode=card.livemode,
        reference=reference,
        amount=amount,
        currency=currency,
        reason=reason,
        status="pending",
        challenge_hash="",
        challenge_expires_at=now + runtime.settings.three_ds_challenge_ttl_seconds,
        return_url=return_url,
        transaction_id=str(uuid.uuid4()),
        created=now,
    )
    row.challenge_hash = challenge_hash(challenge_id(runtime, row.id))
    try:
        with unit_of_work(runtime.db, write=True) as session:
            existing = _by_reference(session, card.merchant_id, reference)
            if existing is None:
                session.add(row)
                session.flush()
                _audit(
                    session,
                    actor,
                    "vault.three_d_secure.create",
                    "success",
                    row,
                    reason=reason,
                    amount=amount,
                    currency=currency,
                    expires_at=row.challenge_expires_at,
                )
    except IntegrityError:
        with unit_of_work(runtime.db, write=False) as session:
            existing = _by_reference(session, card.merchant_id, reference)
        if existing is None:  # pragma: no cover - the unique key said it exists
            raise ServiceUnavailable("Try again.", code="conflict") from None
    if existing is not None:
        if (existing.card_id, existing.amount, existing.currency) != (card.id, amount, currency):
            raise IdempotencyError(
                "This reference was already used for an authentication with other parameters.",
                code="reference_reused",
                param="reference",
            )
        return payload(runtime, existing)
    log.info("vault_3ds_started", authentication_id=row.id, reason=reason)
    return payload(runtime, row)


def _by_reference(session: Any, merchant_id: str, reference: str) -> Authentication | None:
    found: Authentication | None = session.scalar(
        select(Authentication).where(
            Authentication.merchant_id == merchant_id, Authentication.reference == reference
        )
    )
    return found


def load(
    runtime: VaultRuntime, merchant_id: str, authentication_id: str, *, actor: Actor
) -> Authentication:
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(Authentication).where(Authentication.id == authentication_id))
    if row is None or row.merchant_id != merchant_id:
        if row is not None:
            deny(runtime, actor, merchant_id, "authentication", row.id, "merchant_mismatch")
        raise ResourceMissing("authentication", authentication_id[:64], param="authentication")
    return row


# --- The result, for the one authorization that carries it -----------------------------------


def cryptogram(runtime: VaultRuntime, row: Authentication) -> str:
    """The CAVV-like value: a MAC over the transaction under the vault's key (never stored)."""
    if row.eci is None or row.completed_at is None:
        raise InvalidRequestError("The authentication has no result.", param="authentication")
    transaction = "\x1f".join(
        (
            "bastionpay-3ds-cavv-v1",
            row.id,
            row.transaction_id,
            row.merchant_id,
            row.card_id,
            str(row.amount),
            row.currency,
            row.eci,
            str(row.completed_at),
        )
    )
    return cavv.encode(row.eci, bytes.fromhex(runtime.three_ds_mac.hexdigest(transaction)))


def result_for(
    runtime: VaultRuntime,
    authentication_id: str,
    *,
    card: Card,
    amount: int,
    currency: str,
    reference: str,
    actor: Actor,
) -> ThreeDSecure:
    """The authentication result an authorization may carry, or 400 `authentication_unusable`."""
    row = load(runtime, card.merchant_id, authentication_id, actor=actor)
    status = status_of(row, runtime.clock.now())
    binding = (row.card_id, row.amount, row.currency, row.reference)
    if status != "succeeded" or binding != (card.id, amount, currency, reference):
        # Another payment's result, or one that did not succeed: never sent to the network.
        raise InvalidRequestError(
            "This authentication cannot be used for this authorization "
            f"(status {status}, or another card, amount or reference).",
            code="authentication_unusable",
            param="authentication",
        )
    if row.eci is None:  # pragma: no cover - succeeded implies an ECI
        raise InvalidRequestError("The authentication has no result.", param="authentication")
    return ThreeDSecure(eci=row.eci, cryptogram=cryptogram(runtime, row))


# --- The challenge (public listener) ------------------------------------------------------------


def find_challenge(runtime: VaultRuntime, challenge: str) -> tuple[Authentication, Card] | None:
    if not 0 < len(challenge) <= 64:
        return None
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(
            select(Authentication).where(Authentication.challenge_hash == challenge_hash(challenge))
        )
        card = session.scalar(select(Card).where(Card.id == row.card_id)) if row else None
    if row is None or card is None:
        return None
    return row, card


def complete(
    runtime: VaultRuntime, challenge: str, *, succeeded: bool, actor: Actor
) -> Authentication:
    """Record the cardholder's answer — once, before expiry — or raise `ChallengeRefused`."""
    found = find_challenge(runtime, challenge)
    if found is None:
        reject(runtime, None, actor, "unknown_challenge")
        raise ChallengeRefused("unknown_challenge")
    row, card = found
    now = runtime.clock.now()
    eci = _ECI_BY_BRAND.get(card.brand, _DEFAULT_ECI) if succeeded else None
    status = "succeeded" if succeeded else "failed"
    with unit_of_work(runtime.db, write=True) as session:
        # One conditional UPDATE: a second answer, a concurrent one or a late one changes nothing.
        changed = rowcount(
            session.execute(
                update(Authentication)
                .where(
                    Authentication.id == row.id,
                    Authentication.status == "pending",
                    Authentication.challenge_expires_at > now,
                )
                .values(status=status, eci=eci, completed_at=now)
            )
        )
        if changed == 1:
            row.status, row.eci, row.completed_at = status, eci, now
            _audit(
                session,
                actor,
                "vault.three_d_secure.complete",
                "success" if succeeded else "failure",
                row,
                result=status,
                eci=eci,
            )
    if changed != 1:
        reason = "expired" if status_of(row, now) == "expired" else "already_completed"
        reject(runtime, row, actor, reason)
        raise ChallengeRefused(reason)
    log.info("vault_3ds_completed", authentication_id=row.id, result=status)
    return row


def reject(runtime: VaultRuntime, row: Authentication | None, actor: Actor, reason: str) -> None:
    """Audit a refused challenge use (PCI DSS 10.2.1.4) — never the challenge id itself."""
    event = VaultEvent(
        actor_type=actor.type,
        actor_id=actor.id,
        action="vault.three_d_secure.reject",
        outcome="denied",
        merchant_id=row.merchant_id if row else None,
        livemode=row.livemode if row else None,
        target_type="authentication",
        target_id=row.id if row else None,
        origin=actor.origin,
        details={"reason": reason},
    )
    auditlog.record_now(runtime.db, event)


def viewed(runtime: VaultRuntime, row: Authentication, actor: Actor) -> None:
    with unit_of_work(runtime.db, write=True) as session:
        _audit(session, actor, "vault.three_d_secure.challenge", "success", row)


def return_to(row: Authentication) -> str | None:
    """`return_url` with Stripe's `redirect_status` added (the api put the intent's ids there)."""
    if row.return_url is None:
        return None
    parts = urlsplit(row.return_url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name != "redirect_status"
    ]
    query.append(("redirect_status", "succeeded" if row.status == "succeeded" else "failed"))
    return urlunsplit(parts._replace(query=urlencode(query)))

"""Tokenization: card data in, a `pm_…` token out; metadata, test cards, publishable keys.

A card number is validated (`cards.validate_card`: Luhn, brand by BIN, expiry, CVC), sealed under
the merchant's data key bound to the token and its purpose (C3), fingerprinted with a keyed hash
(C3), and stored with what may be shown: BIN, last 4, brand, expiry (C2). The CVC is sealed into
its own row that expires `cvc_ttl_seconds` (≤ 600) after creation and is deleted at the first
authorization (C1, PCI DSS 3.3.2). The token's id is the api's PaymentMethod id: `pm_` and 24
random base62 characters (ARCHITECTURE: ids), unguessable and unrelated to the card.

Sealing happens before the write transaction opens: the key ring reserves encryptions in
transactions of its own, and the vault never holds a database transaction across key-ring calls.

Nothing here returns, logs or raises the number or the CVC: errors are `CardError`s with Stripe's
fixed messages (C5, L3), and payloads carry only `CardMetadata` fields and the fingerprint.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.errors import (
    AuthenticationError,
    InvalidRequestError,
    ResourceMissing,
)
from bastionpay.kernel.ids import new_id
from bastionpay.observability.logging import get_logger
from bastionpay.vault import auditlog
from bastionpay.vault.auditlog import Origin, VaultActor, VaultEvent
from bastionpay.vault.cards import (
    STRIPE_TEST_CARDS_BY_PAYMENT_METHOD,
    CardNumber,
    Expiry,
    validate_card,
)
from bastionpay.vault.models import Card, Cvc, KeyOrigin, PublishableKey
from bastionpay.vault.runtime import VaultRuntime
from bastionpay.vault.settings import normalise_origin

log = get_logger("bastionpay.vault.tokens")

MAX_ORIGINS_PER_KEY: Final = 20
TEST_CARD_YEARS_AHEAD: Final = 3  # test PaymentMethods expire in December, a few years ahead


@dataclass(frozen=True)
class Actor:
    """Who asked: the api's certificate subject, a publishable key id, an operator, the system."""

    type: VaultActor
    id: str
    origin: Origin = auditlog.SYSTEM


@dataclass(frozen=True)
class KeyHolder:
    """A registered, unrevoked publishable key (the key itself is never stored, I7)."""

    id: str
    merchant_id: str
    livemode: bool
    origins: frozenset[str]


def card_payload(card: Card, *, has_cvc: bool | None = None) -> dict[str, Any]:
    """Stripe's PaymentMethod shape, card part only: never the number or the CVC (C1, C2)."""
    card_part: dict[str, Any] = {
        "brand": card.brand,
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "funding": card.funding,
        "country": card.country,
        "fingerprint": card.fingerprint,
        "checks": {"cvc_check": "unchecked" if has_cvc else None},
        "three_d_secure_usage": {"supported": True},
    }
    return {
        "id": card.id,
        "object": "payment_method",
        "type": "card",
        "created": card.created,
        "livemode": card.livemode,
        "card": card_part,
    }


def tokenize(
    runtime: VaultRuntime,
    holder: KeyHolder,
    *,
    number: object,
    exp_month: object,
    exp_year: object,
    cvc: object,
    actor: Actor,
) -> dict[str, Any]:
    """Validate, seal and store a card entered in the hosted fields; returns its payload."""
    card = validate_card(number, exp_month, exp_year, cvc, clock=runtime.clock)
    return _store(
        runtime,
        merchant_id=holder.merchant_id,
        livemode=holder.livemode,
        number=card.number,
        expiry=card.expiry,
        cvc=card.cvc,
        funding=card.metadata().funding,
        country=card.metadata().country,
        source="hosted_fields",
        actor=actor,
    )


def create_test_card(
    runtime: VaultRuntime, merchant_id: str, test_card: str, *, actor: Actor
) -> dict[str, Any]:
    """A real vault record from one of Stripe's public test cards (`pm_card_visa`, …).

    Test mode only: the api names the card (`pm_card_*`), never sends a number, so even Stripe's
    public test numbers stay out of the api zone, where the PAN scanner would rightly flag them.
    """
    known = STRIPE_TEST_CARDS_BY_PAYMENT_METHOD.get(test_card)
    if known is None:
        raise InvalidRequestError(
            f"No such test card: '{test_card[:64]}'", code="resource_missing", param="test_card"
        )
    number = CardNumber.parse(known.number)
    year = dt.datetime.fromtimestamp(runtime.clock.now(), dt.UTC).year + TEST_CARD_YEARS_AHEAD
    return _store(
        runtime,
        merchant_id=merchant_id,
        livemode=False,
        number=number,
        expiry=Expiry(month=12, year=year),
        cvc=None,
        funding=known.funding.value,
        country=known.country,
        source="test_card",
        actor=actor,
        test_card=test_card,
    )


def _store(
    runtime: VaultRuntime,
    *,
    merchant_id: str,
    livemode: bool,
    number: CardNumber,
    expiry: Expiry,
    cvc: Any,
    funding: str,
    country: str | None,
    source: str,
    actor: Actor,
    test_card: str | None = None,
) -> dict[str, Any]:
    card_id = new_id("pm")
    keyring = runtime.keyring
    sealed_pan = keyring.seal_pan(merchant_id, card_id, number)
    sealed_cvc = keyring.seal_cvc(merchant_id, card_id, cvc) if cvc is not None else None
    now = runtime.clock.now()
    row = Card(
        id=card_id,
        merchant_id=merchant_id,
        livemode=livemode,
        pan_ciphertext=sealed_pan.ciphertext,
        dek_version=sealed_pan.dek_version,
        fingerprint=runtime.fingerprints.for_merchant(number, merchant_id),
        platform_fingerprint=runtime.fingerprints.platform(number),
        brand=number.brand.wire,
        bin6=number.bin6,
        last4=number.last4,
        exp_month=expiry.month,
        exp_year=expiry.year,
        funding=funding,
        country=country,
        source=source,
        three_d_secure="required" if number.requires_authentication else "optional",
        created=now,
    )
    details: dict[str, Any] = {"source": source, "brand": row.brand, "cvc": sealed_cvc is not None}
    if test_card:
        details["test_card"] = test_card
    with unit_of_work(runtime.db, write=True) as session:
        session.add(row)
        session.flush()
        if sealed_cvc is not None:
            session.add(
                Cvc(
                    card_id=card_id,
                    merchant_id=merchant_id,
                    dek_version=sealed_cvc.dek_version,
                    ciphertext=sealed_cvc.ciphertext,
                    created=now,
                    expires_at=now + runtime.settings.cvc_ttl_seconds,  # C1, PCI DSS 3.3.2
                )
            )
        auditlog.record(
            session,
            VaultEvent(
                actor_type=actor.type,
                actor_id=actor.id,
                action="vault.card.create",
                outcome="success",
                merchant_id=merchant_id,
                livemode=livemode,
                target_type="payment_method",
                target_id=card_id,
                origin=actor.origin,
                details=details,
            ),
        )
    log.info("vault_card_created", payment_method=card_id, source=source, brand=row.brand)
    return card_payload(row, has_cvc=sealed_cvc is not None)


def load_card(runtime: VaultRuntime, merchant_id: str, card_id: str, *, actor: Actor) -> Card:
    """The merchant's card, or 404 (and an audited denial when it is another merchant's)."""
    with unit_of_work(runtime.db, write=False) as session:
        card = session.scalar(select(Card).where(Card.id == card_id))
    if card is None or card.merchant_id != merchant_id:
        if card is not None:
            deny(runtime, actor, merchant_id, "payment_method", card_id, "merchant_mismatch")
        raise ResourceMissing("payment_method", card_id[:64], param="payment_method")
    return card


def card_metadata(
    runtime: VaultRuntime, merchant_id: str, card_id: str, *, actor: Actor
) -> dict[str, Any]:
    card = load_card(runtime, merchant_id, card_id, actor=actor)
    with unit_of_work(runtime.db, write=False) as session:
        has_cvc = session.scalar(select(Cvc.pk).where(Cvc.card_id == card_id)) is not None
    return card_payload(card, has_cvc=has_cvc)


def deny(
    runtime: VaultRuntime,
    actor: Actor,
    merchant_id: str | None,
    target_type: str,
    target_id: str,
    reason: str,
) -> None:
    """Audit a refused access (L1, PCI DSS 10.2.1.4) in a transaction of its own."""
    auditlog.record_now(
        runtime.db,
        VaultEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            action="vault.access.deny",
            outcome="denied",
            merchant_id=merchant_id,
            target_type=target_type,
            target_id=target_id[:64],
            origin=actor.origin,
            details={"reason": reason},
        ),
    )


# --- Publishable keys -------------------------------------------------------------------------


def _check_key(key: object, livemode: bool) -> str:
    prefix = "pk_live_" if livemode else "pk_test_"
    if not isinstance(key, str) or not key.startswith(prefix) or not 16 <= len(key) <= 255:
        raise InvalidRequestError(f"key must be a {prefix}… publishable key", param="key")
    return key


def _origins(values: object) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list) or len(values) > MAX_ORIGINS_PER_KEY:
        raise InvalidRequestError(
            f"allowed_origins must be a list of at most {MAX_ORIGINS_PER_KEY} origins",
            param="allowed_origins",
        )
    try:
        return sorted({normalise_origin(str(value)) for value in values})
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="allowed_origins") from None


def register_publishable_key(
    runtime: VaultRuntime,
    *,
    key_id: str,
    key: object,
    merchant_id: str,
    livemode: bool,
    allowed_origins: object,
    actor: Actor,
) -> dict[str, Any]:
    """Store the keyed hash of a publishable key the api issued (idempotent; origins replaced)."""
    digest = runtime.publishable_keys.hexdigest(_check_key(key, livemode))
    origins = _origins(allowed_origins)
    now = runtime.clock.now()
    try:
        with unit_of_work(runtime.db, write=True) as session:
            row = session.scalar(select(PublishableKey).where(PublishableKey.key_hash == digest))
            if row is None:
                row = PublishableKey(
                    id=key_id,
                    key_hash=digest,
                    merchant_id=merchant_id,
                    livemode=livemode,
                    created=now,
                )
                session.add(row)
                session.flush()
            elif (row.id, row.merchant_id, row.livemode) != (key_id, merchant_id, livemode):
                raise InvalidRequestError(
                    "This key is registered with other attributes.", code="key_conflict"
                )
            session.execute(delete(KeyOrigin).where(KeyOrigin.publishable_key_id == row.id))
            for origin in origins:
                session.add(KeyOrigin(publishable_key_id=row.id, origin=origin))
            auditlog.record(
                session,
                VaultEvent(
                    actor_type=actor.type,
                    actor_id=actor.id,
                    action="vault.publishable_key.register",
                    outcome="success",
                    merchant_id=merchant_id,
                    livemode=livemode,
                    target_type="publishable_key",
                    target_id=key_id,
                    origin=actor.origin,
                    details={"allowed_origins": origins},
                ),
            )
            revoked = row.revoked_at is not None
    except IntegrityError:
        raise InvalidRequestError(
            "A different key is registered under this id.", code="key_conflict", param="id"
        ) from None
    return {
        "id": key_id,
        "object": "vault.publishable_key",
        "merchant_id": merchant_id,
        "livemode": livemode,
        "allowed_origins": origins,
        "revoked": revoked,
    }


def revoke_publishable_key(
    runtime: VaultRuntime, key_id: str, merchant_id: str, *, actor: Actor
) -> dict[str, Any]:
    with unit_of_work(runtime.db, write=True) as session:
        row = session.scalar(select(PublishableKey).where(PublishableKey.id == key_id))
        if row is None or row.merchant_id != merchant_id:
            raise ResourceMissing("publishable_key", key_id[:64])
        if row.revoked_at is None:
            session.execute(
                update(PublishableKey)
                .where(PublishableKey.id == key_id)
                .values(revoked_at=runtime.clock.now())
            )
        auditlog.record(
            session,
            VaultEvent(
                actor_type=actor.type,
                actor_id=actor.id,
                action="vault.publishable_key.revoke",
                outcome="success",
                merchant_id=merchant_id,
                livemode=row.livemode,
                target_type="publishable_key",
                target_id=key_id,
                origin=actor.origin,
            ),
        )
    return {"id": key_id, "object": "vault.publishable_key", "revoked": True}


def authenticate_publishable_key(runtime: VaultRuntime, presented: str | None) -> KeyHolder:
    """The key's holder, or `AuthenticationError` (401) — one indexed lookup by keyed hash."""
    if not presented or not presented.startswith(("pk_test_", "pk_live_")) or len(presented) > 255:
        raise AuthenticationError("Invalid API Key provided.", code="api_key_invalid")
    digest = runtime.publishable_keys.hexdigest(presented)
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(
            select(PublishableKey).where(
                PublishableKey.key_hash == digest, PublishableKey.revoked_at.is_(None)
            )
        )
        if row is None:
            raise AuthenticationError("Invalid API Key provided.", code="api_key_invalid")
        origins = session.scalars(
            select(KeyOrigin.origin).where(KeyOrigin.publishable_key_id == row.id)
        ).all()
    return KeyHolder(row.id, row.merchant_id, row.livemode, frozenset(origins))


def origin_registered(runtime: VaultRuntime, origin: str) -> bool:
    """Whether any unrevoked key lists `origin` (CORS preflights carry no key, only an origin)."""
    with unit_of_work(runtime.db, write=False) as session:
        found = session.scalar(
            select(KeyOrigin.pk)
            .join(PublishableKey, PublishableKey.id == KeyOrigin.publishable_key_id)
            .where(KeyOrigin.origin == origin, PublishableKey.revoked_at.is_(None))
            .limit(1)
        )
    return found is not None

"""The vault database's tables, on a `MetaData` of their own (never the api's `Base`).

What is stored, and what is not (C1-C4):

- `vault_data_keys` — each merchant's data keys (DEKs), *wrapped* by a KEK version, with the
  persisted encryption count (the nonce budget) and a tombstone time once destroyed. The KEK itself
  is never here: it lives in a key file or an HSM (C4, PCI DSS 3.6.1.2).
- `vault_cards` — one row per tokenized card: its `pm_…` id, the card number as AES-256-GCM
  ciphertext bound to merchant, id and purpose (C3), the DEK version that sealed it (indexed for
  re-encryption), a keyed fingerprint, and the display data the api may learn (BIN, last 4, brand,
  expiry, funding, country; C2 allows BIN + last 4).
- `vault_cvcs` — the CVC ciphertext, apart from the card, until the first authorization or
  `expires_at` (created + at most 600 s), whichever comes first; then the row is deleted and, with
  SQLite's `secure_delete`, its bytes overwritten (C1, PCI DSS 3.3.1-3.3.2).
- `vault_publishable_keys` / `vault_key_origins` — the publishable keys the api registered, as
  HMAC-SHA-256 keyed hashes only (I7), and the origins each may be used from (CORS, framing).
- `vault_authentications` — 3-D Secure authentications: binding, status, ECI; the challenge id
  only as a hash and never the cryptogram (recomputed when the authorization is sent).
- `vault_authorizations` / `vault_refunds` — authorizations sent to the acquirer and their
  follow-ups: references, amounts, states, acquirer references (RRN, STAN…). Never a PAN or CVC.
- The audit log (L1): `bastionpay.audit`'s tables, copied into this metadata so the vault keeps
  its own tamper-evident log in its own database (same sealing and verification code).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastionpay.audit.models import (
    AuditArchive,
    AuditArchivedLeaf,
    AuditCheckpoint,
    AuditEntry,
    AuditHead,
    AuditStaged,
)
from bastionpay.db.base import NAMING_CONVENTION, PkType

vault_metadata = MetaData(naming_convention=NAMING_CONVENTION)


class VaultBase(DeclarativeBase):
    metadata = vault_metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class DataKey(VaultBase):
    __tablename__ = "vault_data_keys"
    __table_args__ = (UniqueConstraint("merchant_id", "version"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    # Null once destroyed: the key is gone, the row stays as a tombstone (C4, PCI DSS 3.7.5).
    kek_backend: Mapped[str | None] = mapped_column(String(16), nullable=True)
    kek_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    destroyed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    encryptions: Mapped[int] = mapped_column(BigInteger, default=0)


class Card(VaultBase):
    __tablename__ = "vault_cards"
    __table_args__ = (Index("ix_vault_cards_merchant_dek", "merchant_id", "dek_version"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # pm_… (the api's PaymentMethod id)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    pan_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    dek_version: Mapped[int] = mapped_column(BigInteger, index=True)
    fingerprint: Mapped[str] = mapped_column(String(16))  # per merchant (what the api sees)
    platform_fingerprint: Mapped[str] = mapped_column(String(64), index=True)  # never leaves
    brand: Mapped[str] = mapped_column(String(16))
    bin6: Mapped[str] = mapped_column(String(6))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    funding: Mapped[str] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # hosted_fields | test_card
    # "required" when the issuer demands 3-D Secure for this card, decided from the number at
    # tokenization, so no authorization needs a decryption to know it (issue 4, item 7).
    three_d_secure: Mapped[str] = mapped_column(
        String(16), default="optional", server_default="optional"
    )
    created: Mapped[int] = mapped_column(BigInteger)


class Cvc(VaultBase):
    __tablename__ = "vault_cvcs"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    card_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("vault_cards.id", ondelete="CASCADE"), unique=True
    )
    merchant_id: Mapped[str] = mapped_column(String(64))
    dek_version: Mapped[int] = mapped_column(BigInteger, index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PublishableKey(VaultBase):
    __tablename__ = "vault_publishable_keys"

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # vpk_…
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA-256, never the key
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class KeyOrigin(VaultBase):
    __tablename__ = "vault_key_origins"
    __table_args__ = (UniqueConstraint("publishable_key_id", "origin"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    publishable_key_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("vault_publishable_keys.id", ondelete="CASCADE")
    )
    origin: Mapped[str] = mapped_column(String(255), index=True)


class Authorization(VaultBase):
    __tablename__ = "vault_authorizations"
    __table_args__ = (UniqueConstraint("merchant_id", "reference"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # vauth_…
    merchant_id: Mapped[str] = mapped_column(String(64))
    card_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    reference: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # pending | approved | declined | reversal_pending | reversed | captured | voided
    status: Mapped[str] = mapped_column(String(24), index=True)
    captured_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # The acquirer's references (RRN, STAN, transmission time, approval code…): no card data.
    acquirer_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    approval_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    iso_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    decline_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fault: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cvc_check: Mapped[str | None] = mapped_column(String(16), nullable=True)
    three_d_secure_eci: Mapped[str | None] = mapped_column(String(2), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[int] = mapped_column(BigInteger)


class Authentication(VaultBase):
    """A 3-D Secure authentication of one payment attempt (issue 4, item 7; `vault.threeds`).

    Bound to the merchant, the card, the amount and currency and the attempt's `reference` (the
    api's charge id): the authorization that carries its result must match all of them, and the
    reference is unique per merchant, so a result is used by one authorization at most. Only a
    SHA-256 hash of the challenge id is stored (the id is a bearer capability in the challenge
    URL); the cryptogram is never stored — it is recomputed with the vault's key when the
    authorization is sent.
    """

    __tablename__ = "vault_authentications"
    __table_args__ = (UniqueConstraint("merchant_id", "reference"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # vauthn_…
    merchant_id: Mapped[str] = mapped_column(String(64))
    card_id: Mapped[str] = mapped_column(String(64), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean)
    reference: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(16))  # card_required | requested
    # pending | succeeded | failed (an expired pending one reads as `expired`)
    status: Mapped[str] = mapped_column(String(16), index=True)
    challenge_hash: Mapped[str] = mapped_column(String(64), unique=True)
    challenge_expires_at: Mapped[int] = mapped_column(BigInteger)
    return_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    transaction_id: Mapped[str] = mapped_column(String(36))  # the dsTransID-like id in the MAC
    eci: Mapped[str | None] = mapped_column(String(2), nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)


class Refund(VaultBase):
    __tablename__ = "vault_refunds"
    __table_args__ = (UniqueConstraint("authorization_id", "reference"),)

    pk: Mapped[int] = mapped_column(PkType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # vre_…
    authorization_id: Mapped[str] = mapped_column(String(64), index=True)
    reference: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed | unknown
    iso_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)


# The vault's own audit log (L1): the same tables as the api's, in the vault database.
AUDIT_TABLES = tuple(
    model.__table__.to_metadata(vault_metadata)  # type: ignore[attr-defined]
    for model in (
        AuditStaged,
        AuditEntry,
        AuditHead,
        AuditCheckpoint,
        AuditArchivedLeaf,
        AuditArchive,
    )
)

"""vault: 3-D Secure — the card's requirement and the authentications

Revision ID: v0002
Revises: v0001
Create Date: 2026-11-28

Issue 4, item 7. `vault_cards.three_d_secure` says whether the issuer requires authentication for
the card (set at tokenization; existing cards are `optional`, which only means the vault does not
ask on its own — the acquirer still soft-declines a card that needs it). `vault_authentications`
holds each 3-D Secure attempt; see `vault.models.Authentication`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "v0002"
down_revision: str | None = "v0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("vault_cards") as batch:
        batch.add_column(
            sa.Column(
                "three_d_secure", sa.String(length=16), nullable=False, server_default="optional"
            )
        )
    op.create_table(
        "vault_authentications",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("card_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("challenge_hash", sa.String(length=64), nullable=False),
        sa.Column("challenge_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("return_url", sa.String(length=2048), nullable=True),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("eci", sa.String(length=2), nullable=True),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_authentications")),
        sa.UniqueConstraint("id", name=op.f("uq_vault_authentications_id")),
        sa.UniqueConstraint(
            "merchant_id", "reference", name=op.f("uq_vault_authentications_merchant_id")
        ),
        sa.UniqueConstraint("challenge_hash", name=op.f("uq_vault_authentications_challenge_hash")),
    )
    op.create_index(op.f("ix_vault_authentications_card_id"), "vault_authentications", ["card_id"])
    op.create_index(op.f("ix_vault_authentications_status"), "vault_authentications", ["status"])


def downgrade() -> None:
    op.drop_table("vault_authentications")
    with op.batch_alter_table("vault_cards") as batch:
        batch.drop_column("three_d_secure")

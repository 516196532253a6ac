"""disputes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Disputes (chargebacks and inquiries): Stripe's Dispute object, one per charge (unique
`charge_id`), opened and decided by the simulated card network, answered by the merchant
(`bastionpay.disputes`, docs/disputes.md). `charges.disputed` marks a charge with a dispute; it
defaults to false for every existing charge. The ledger rows a dispute causes live in the existing
immutable ledger tables (0001's triggers): nothing new to protect here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("charge_id", sa.String(length=64), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("due_by", sa.BigInteger(), nullable=False),
        sa.Column("submission_count", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_disputes")),
        sa.UniqueConstraint("charge_id", name=op.f("uq_disputes_charge_id")),
        sa.UniqueConstraint("id", name=op.f("uq_disputes_id")),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disputes_merchant_id"), ["merchant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_disputes_payment_intent_id"), ["payment_intent_id"], unique=False
        )
    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("disputed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.drop_column("disputed")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disputes_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_disputes_merchant_id"))
    op.drop_table("disputes")

"""risk

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Risk assessments (the decision and its inputs per confirmation, and the velocity counters'
source), reviews, labels for retraining, versioned rule sets and named lists; merchants' time zone
and risk failure policy; the open review on a PaymentIntent (issue 7).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("charge_id", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("opened_reason", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.JSON(), nullable=True),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_reviews")),
        sa.UniqueConstraint("id", name=op.f("uq_reviews_id")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_merchant_id"), ["merchant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reviews_payment_intent_id"), ["payment_intent_id"], unique=False
        )

    op.create_table(
        "risk_assessments",
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column("card_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=512), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=128), nullable=True),
        sa.Column("amount_usd_cents", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("shadow", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_risk_assessments")),
        sa.UniqueConstraint("id", name=op.f("uq_risk_assessments_id")),
    )
    with op.batch_alter_table("risk_assessments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_assessments_card",
            ["merchant_id", "livemode", "card_fingerprint", "created"],
            unique=False,
        )
        batch_op.create_index(
            "ix_risk_assessments_customer",
            ["merchant_id", "livemode", "customer_id", "created"],
            unique=False,
        )
        batch_op.create_index(
            "ix_risk_assessments_device",
            ["merchant_id", "livemode", "device_id", "created"],
            unique=False,
        )
        batch_op.create_index(
            "ix_risk_assessments_email",
            ["merchant_id", "livemode", "email", "created"],
            unique=False,
        )
        batch_op.create_index(
            "ix_risk_assessments_ip",
            ["merchant_id", "livemode", "ip_address", "created"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_risk_assessments_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_risk_assessments_payment_intent_id"), ["payment_intent_id"], unique=False
        )
        batch_op.create_index(
            "ix_risk_assessments_time", ["merchant_id", "livemode", "created"], unique=False
        )

    op.create_table(
        "risk_labels",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_risk_labels")),
    )
    with op.batch_alter_table("risk_labels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_labels_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_risk_labels_payment_intent_id"), ["payment_intent_id"], unique=False
        )

    op.create_table(
        "risk_list_items",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("list_name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_risk_list_items")),
        sa.UniqueConstraint(
            "merchant_id",
            "livemode",
            "list_name",
            "value",
            name=op.f("uq_risk_list_items_merchant_id"),
        ),
    )
    op.create_table(
        "risk_lists",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_risk_lists")),
        sa.UniqueConstraint(
            "merchant_id", "livemode", "name", name=op.f("uq_risk_lists_merchant_id")
        ),
    )
    op.create_table(
        "risk_rulesets",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_risk_rulesets")),
        sa.UniqueConstraint(
            "merchant_id", "livemode", "version", name=op.f("uq_risk_rulesets_merchant_id")
        ),
    )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("risk_failure_policy", sa.String(length=8), nullable=True))

    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("review_id")

    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("risk_failure_policy")
        batch_op.drop_column("timezone")

    op.drop_table("risk_rulesets")
    op.drop_table("risk_lists")
    op.drop_table("risk_list_items")
    with op.batch_alter_table("risk_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_labels_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_risk_labels_merchant_id"))

    op.drop_table("risk_labels")
    with op.batch_alter_table("risk_assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_assessments_time")
        batch_op.drop_index(batch_op.f("ix_risk_assessments_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_risk_assessments_merchant_id"))
        batch_op.drop_index("ix_risk_assessments_ip")
        batch_op.drop_index("ix_risk_assessments_email")
        batch_op.drop_index("ix_risk_assessments_device")
        batch_op.drop_index("ix_risk_assessments_customer")
        batch_op.drop_index("ix_risk_assessments_card")

    op.drop_table("risk_assessments")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_reviews_merchant_id"))

    op.drop_table("reviews")

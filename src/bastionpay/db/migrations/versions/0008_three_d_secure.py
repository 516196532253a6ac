"""3-D Secure on PaymentIntents

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

`payment_intents.three_d_secure` (JSON, nullable): the 3-D Secure attempt of a PaymentIntent in
`requires_action` — the vault's authentication id, the charge id reserved for the attempt (the
authorization reference after authentication), the challenge URL and the merchant's return_url,
why 3DS was asked for and the risk assessment to re-evaluate (issue 4, item 7; issue 7, item 5).
Never card data: the vault keeps the card, the ECI and the cryptogram.

`ix_payment_intents_status`: the worker's janitor looks up `processing` intents (a timed-out
authorization being reversed, issue 4 item 6) and `requires_action` ones (3-D Secure) by status.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_intents") as batch:
        batch.add_column(sa.Column("three_d_secure", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_payment_intents_status"), "payment_intents", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_payment_intents_status"), table_name="payment_intents")
    with op.batch_alter_table("payment_intents") as batch:
        batch.drop_column("three_d_secure")

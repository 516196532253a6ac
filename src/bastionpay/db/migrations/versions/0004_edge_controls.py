"""edge controls

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Per-key IP allow-lists (SECURITY-REQUIREMENTS I7) and per-merchant rate-limit overrides (T4).
Both are nullable: NULL means "no allow-list" and "the platform defaults".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_ips", sa.JSON(), nullable=True))
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("rate_limit_read", sa.String(32), nullable=True))
        batch.add_column(sa.Column("rate_limit_write", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("rate_limit_write")
        batch.drop_column("rate_limit_read")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_ips")

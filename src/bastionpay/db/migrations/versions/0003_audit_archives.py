"""audit archives

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Archived audit segments: the files' hashes, and each archived entry's leaf and chain link kept
online (append-only, like the entries) so the tree and chain still verify after the rows are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _triggers(create: bool) -> None:
    dialect = op.get_bind().dialect.name
    for table in ("audit_archived_leaves", "audit_archives"):
        if dialect == "postgresql":
            if create:
                op.execute(
                    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION bastionpay_immutable()"
                )
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        elif dialect == "sqlite":
            for event in ("UPDATE", "DELETE"):
                name = f"{table}_no_{event.lower()}"
                if create:
                    op.execute(
                        f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are immutable'); END"
                    )
                else:
                    op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "audit_archived_leaves",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_archived_leaves")),
    )
    op.create_table(
        "audit_archives",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("end_seq", sa.BigInteger(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit_archives")),
    )

    _triggers(create=True)


def downgrade() -> None:
    _triggers(create=False)
    op.drop_table("audit_archives")
    op.drop_table("audit_archived_leaves")

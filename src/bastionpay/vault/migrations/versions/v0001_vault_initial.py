"""vault: data keys, cards, CVCs, publishable keys, authorizations, refunds and the audit log

Revision ID: v0001
Revises:
Create Date: 2026-12-01

The vault's own database (ARCHITECTURE: each process has its own database). The audit tables have
the same shape as the api's (`bastionpay.audit.models`) so the same sealing and verification code
runs over them; sealed entries, checkpoints and archives are append-only, enforced by triggers (L2).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "v0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("audit_entries", "audit_checkpoints", "audit_archived_leaves", "audit_archives")


def _pk() -> sa.Column[int]:
    return sa.Column("pk", PK, autoincrement=True, nullable=False)


def _event_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("origin_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
    ]


def _vault_tables() -> None:
    op.create_table(
        "vault_data_keys",
        _pk(),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kek_backend", sa.String(length=16), nullable=True),
        sa.Column("kek_version", sa.BigInteger(), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("destroyed_at", sa.BigInteger(), nullable=True),
        sa.Column("encryptions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_data_keys")),
        sa.UniqueConstraint("merchant_id", "version", name=op.f("uq_vault_data_keys_merchant_id")),
    )
    op.create_index(
        op.f("ix_vault_data_keys_kek_version"), "vault_data_keys", ["kek_version"], unique=False
    )
    op.create_table(
        "vault_cards",
        _pk(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("pan_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("dek_version", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("platform_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("brand", sa.String(length=16), nullable=False),
        sa.Column("bin6", sa.String(length=6), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("funding", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_cards")),
        sa.UniqueConstraint("id", name=op.f("uq_vault_cards_id")),
    )
    op.create_index(op.f("ix_vault_cards_merchant_id"), "vault_cards", ["merchant_id"])
    op.create_index(op.f("ix_vault_cards_dek_version"), "vault_cards", ["dek_version"])
    op.create_index(
        op.f("ix_vault_cards_platform_fingerprint"), "vault_cards", ["platform_fingerprint"]
    )
    op.create_index("ix_vault_cards_merchant_dek", "vault_cards", ["merchant_id", "dek_version"])
    op.create_table(
        "vault_cvcs",
        _pk(),
        sa.Column("card_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("dek_version", sa.BigInteger(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["vault_cards.id"],
            name=op.f("fk_vault_cvcs_card_id_vault_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_cvcs")),
        sa.UniqueConstraint("card_id", name=op.f("uq_vault_cvcs_card_id")),
    )
    op.create_index(op.f("ix_vault_cvcs_dek_version"), "vault_cvcs", ["dek_version"])
    op.create_index(op.f("ix_vault_cvcs_expires_at"), "vault_cvcs", ["expires_at"])
    op.create_table(
        "vault_publishable_keys",
        _pk(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_publishable_keys")),
        sa.UniqueConstraint("id", name=op.f("uq_vault_publishable_keys_id")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_vault_publishable_keys_key_hash")),
    )
    op.create_index(
        op.f("ix_vault_publishable_keys_merchant_id"), "vault_publishable_keys", ["merchant_id"]
    )
    op.create_table(
        "vault_key_origins",
        _pk(),
        sa.Column("publishable_key_id", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["publishable_key_id"],
            ["vault_publishable_keys.id"],
            name=op.f("fk_vault_key_origins_publishable_key_id_vault_publishable_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_key_origins")),
        sa.UniqueConstraint(
            "publishable_key_id", "origin", name=op.f("uq_vault_key_origins_publishable_key_id")
        ),
    )
    op.create_index(op.f("ix_vault_key_origins_origin"), "vault_key_origins", ["origin"])
    op.create_table(
        "vault_authorizations",
        _pk(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("card_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("acquirer_ref", sa.JSON(), nullable=True),
        sa.Column("approval_code", sa.String(length=6), nullable=True),
        sa.Column("iso_code", sa.String(length=2), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("fault", sa.String(length=64), nullable=True),
        sa.Column("cvc_check", sa.String(length=16), nullable=True),
        sa.Column("three_d_secure_eci", sa.String(length=2), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_authorizations")),
        sa.UniqueConstraint("id", name=op.f("uq_vault_authorizations_id")),
        sa.UniqueConstraint(
            "merchant_id", "reference", name=op.f("uq_vault_authorizations_merchant_id")
        ),
    )
    op.create_index(op.f("ix_vault_authorizations_card_id"), "vault_authorizations", ["card_id"])
    op.create_index(op.f("ix_vault_authorizations_status"), "vault_authorizations", ["status"])
    op.create_table(
        "vault_refunds",
        _pk(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("authorization_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("iso_code", sa.String(length=2), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_vault_refunds")),
        sa.UniqueConstraint("id", name=op.f("uq_vault_refunds_id")),
        sa.UniqueConstraint(
            "authorization_id", "reference", name=op.f("uq_vault_refunds_authorization_id")
        ),
    )
    op.create_index(
        op.f("ix_vault_refunds_authorization_id"), "vault_refunds", ["authorization_id"]
    )


def _audit_tables() -> None:
    op.create_table(
        "audit_staged",
        _pk(),
        *_event_columns(),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit_staged")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_staged_event_id")),
    )
    op.create_index(op.f("ix_audit_staged_merchant_id"), "audit_staged", ["merchant_id"])
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        *_event_columns(),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_entries_event_id")),
    )
    op.create_index(op.f("ix_audit_entries_merchant_id"), "audit_entries", ["merchant_id"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_checkpoints",
        _pk(),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_archived_leaves",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_archived_leaves")),
    )
    op.create_table(
        "audit_archives",
        _pk(),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("end_seq", sa.BigInteger(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_audit_archives")),
    )


def _triggers(create: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        if create:
            op.execute(
                "CREATE FUNCTION bastionpay_vault_immutable() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'rows of % are immutable', TG_TABLE_NAME; END $$"
            )
        for table in APPEND_ONLY:
            if create:
                op.execute(
                    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION bastionpay_vault_immutable()"
                )
                op.execute(
                    f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION bastionpay_vault_immutable()"
                )
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        if not create:
            op.execute("DROP FUNCTION IF EXISTS bastionpay_vault_immutable()")
    elif dialect == "sqlite":
        for table in APPEND_ONLY:
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
    _vault_tables()
    _audit_tables()
    _triggers(create=True)


def downgrade() -> None:
    _triggers(create=False)
    for table in (
        "audit_archives",
        "audit_archived_leaves",
        "audit_checkpoints",
        "audit_head",
        "audit_entries",
        "audit_staged",
        "vault_refunds",
        "vault_authorizations",
        "vault_key_origins",
        "vault_publishable_keys",
        "vault_cvcs",
        "vault_cards",
        "vault_data_keys",
    ):
        op.drop_table(table)

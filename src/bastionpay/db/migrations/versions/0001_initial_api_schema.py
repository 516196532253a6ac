"""initial api schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Ledger rows (entries, transactions, balance transactions) are immutable: triggers refuse UPDATE and
DELETE on both SQLite and PostgreSQL, so a correction can only be a new entry (ARCHITECTURE: Money).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


IMMUTABLE_TABLES = ("ledger_entries", "ledger_transactions", "balance_transactions")


def _create_immutability_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION bastionpay_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'rows of % are immutable', TG_TABLE_NAME; END $$"
        )
        for table in IMMUTABLE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION bastionpay_immutable()"
            )
            # Row triggers do not fire on TRUNCATE; a statement trigger does.
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION bastionpay_immutable()"
            )
    elif dialect == "sqlite":
        for table in IMMUTABLE_TABLES:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are immutable'); END"
                )


def _drop_immutability_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in IMMUTABLE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS bastionpay_immutable()")
    elif dialect == "sqlite":
        for table in IMMUTABLE_TABLES:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("redacted", sa.String(length=32), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("id", name=op.f("uq_api_keys_id")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "balance_transactions",
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("available_on", sa.BigInteger(), nullable=False),
        sa.Column("ledger_transaction_id", sa.String(length=64), nullable=False),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_balance_transactions")),
        sa.UniqueConstraint("id", name=op.f("uq_balance_transactions_id")),
    )
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_balance_transactions_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_balance_transactions_source_id"), ["source_id"], unique=False
        )

    op.create_table(
        "charges",
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("payment_method_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_captured", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("captured", sa.Boolean(), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("balance_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("processor_reference", sa.String(length=128), nullable=True),
        sa.Column("authorization_code", sa.String(length=16), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_charges")),
        sa.UniqueConstraint("id", name=op.f("uq_charges_id")),
    )
    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_charges_merchant_id"), ["merchant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_charges_payment_intent_id"), ["payment_intent_id"], unique=False
        )

    op.create_table(
        "customers",
        sa.Column("email", sa.String(length=512), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_customers")),
        sa.UniqueConstraint("id", name=op.f("uq_customers_id")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_method", sa.String(length=8), nullable=False),
        sa.Column("request_path", sa.String(length=256), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("locked_at", sa.BigInteger(), nullable=True),
        sa.Column("lock_token", sa.String(length=32), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint(
            "merchant_id", "livemode", "key", name=op.f("uq_idempotency_keys_merchant_id")
        ),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created"), ["created"], unique=False)

    op.create_table(
        "ledger_accounts",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_balance", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_entry_pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint(
            "merchant_id",
            "livemode",
            "currency",
            "code",
            name=op.f("uq_ledger_accounts_merchant_id"),
        ),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("id", name=op.f("uq_ledger_transactions_id")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_source_id"), ["source_id"], unique=False
        )

    op.create_table(
        "merchants",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_merchants")),
        sa.UniqueConstraint("id", name=op.f("uq_merchants_id")),
    )
    op.create_table(
        "payment_intents",
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("capture_method", sa.String(length=32), nullable=False),
        sa.Column("confirmation_method", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("payment_method_id", sa.String(length=64), nullable=True),
        sa.Column("payment_method_types", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("receipt_email", sa.String(length=512), nullable=True),
        sa.Column("statement_descriptor", sa.String(length=22), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("amount_capturable", sa.BigInteger(), nullable=False),
        sa.Column("amount_received", sa.BigInteger(), nullable=False),
        sa.Column("latest_charge_id", sa.String(length=64), nullable=True),
        sa.Column("last_payment_error", sa.JSON(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("canceled_at", sa.BigInteger(), nullable=True),
        sa.Column("client_secret_suffix", sa.String(length=64), nullable=False),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_payment_intents")),
        sa.UniqueConstraint("id", name=op.f("uq_payment_intents_id")),
    )
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_intents_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_intents_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "payment_methods",
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("card_exp_month", sa.Integer(), nullable=False),
        sa.Column("card_exp_year", sa.Integer(), nullable=False),
        sa.Column("card_funding", sa.String(length=16), nullable=False),
        sa.Column("card_country", sa.String(length=2), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("processor_token", sa.String(length=128), nullable=False),
        sa.Column("billing_details", sa.JSON(), nullable=False),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint("id", name=op.f("uq_payment_methods_id")),
    )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_methods_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_methods_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "refunds",
        sa.Column("charge_id", sa.String(length=64), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("balance_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("processor_reference", sa.String(length=128), nullable=True),
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
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_refunds")),
        sa.UniqueConstraint("id", name=op.f("uq_refunds_id")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_charge_id"), ["charge_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refunds_merchant_id"), ["merchant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_refunds_payment_intent_id"), ["payment_intent_id"], unique=False
        )

    op.create_table(
        "ledger_entries",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "transaction_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "account_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_pk"],
            ["ledger_accounts.pk"],
            name=op.f("fk_ledger_entries_account_pk_ledger_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_pk"],
            ["ledger_transactions.pk"],
            name=op.f("fk_ledger_entries_transaction_pk_ledger_transactions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_account_pk"), ["account_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_transaction_pk"), ["transaction_pk"], unique=False
        )

    _create_immutability_triggers()


def downgrade() -> None:
    _drop_immutability_triggers()
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_transaction_pk"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_account_pk"))

    op.drop_table("ledger_entries")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_refunds_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_refunds_charge_id"))

    op.drop_table("refunds")
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_methods_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_payment_methods_customer_id"))

    op.drop_table("payment_methods")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_intents_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_payment_intents_customer_id"))

    op.drop_table("payment_intents")
    op.drop_table("merchants")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_source_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_merchant_id"))

    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_customers_email"))

    op.drop_table("customers")
    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_charges_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_charges_merchant_id"))

    op.drop_table("charges")
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_balance_transactions_source_id"))
        batch_op.drop_index(batch_op.f("ix_balance_transactions_merchant_id"))

    op.drop_table("balance_transactions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_merchant_id"))

    op.drop_table("api_keys")

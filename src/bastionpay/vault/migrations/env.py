"""Alembic environment for the vault database (its own tree, its own version table)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from bastionpay.vault.models import vault_metadata

VERSION_TABLE = "vault_alembic_version"  # never mistaken for the api's, even in a shared server

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not configured")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=vault_metadata,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()

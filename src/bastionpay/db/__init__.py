"""Storage: engine, unit of work, migrations (SQLAlchemy 2 + Alembic)."""

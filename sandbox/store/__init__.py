"""The state store: SQLAlchemy models, engine and transactions, Alembic migrations."""

"""Persistence: SQLAlchemy 2 models, engines, and Alembic migrations (in /migrations)."""

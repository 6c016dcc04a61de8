"""dmdesk's Alembic migrations, shipped as package data (dmdesk.db.migrate.migrations_dir)."""

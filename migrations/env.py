"""Alembic environment for dmdesk.

Always batch mode (`render_as_batch=True`) so ALTERs work on SQLite, and the same scripts run on
PostgreSQL. The connection comes from `dmdesk.db.migrate`, opened with SQLite foreign keys OFF:
a batch rebuild of the runs table would otherwise cascade its DROP to every pair.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from dmdesk.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    # `alembic` command line (developers): DMDESK_DATABASE_URL, else the ini's URL.
    section = config.get_section(config.config_ini_section, {})
    if os.environ.get("DMDESK_DATABASE_URL"):
        section["sqlalchemy.url"] = os.environ["DMDESK_DATABASE_URL"]
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or no-op
            conn.commit()
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        # SQLAlchemy 2 connections begin on first use: alembic then sees an outer transaction
        # and leaves committing to us (before this, `alembic upgrade` left alembic_version empty).
        conn.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

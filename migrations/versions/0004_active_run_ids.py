"""One working run at a time, and run ids that are never reused (issues 12 and 16).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

* `one_open_run` (a unique index over every unfinished run, made by an earlier version of 0002)
  is dropped where it exists, and `one_active_run` — a unique index over the runs in an *active*
  status (`generating`, `training`) — takes its place: at most one run works at a time, between
  processes too (spec Assumption 3). "No new generation while any run is not completed" (FR-2)
  is the service's rule, checked in the insert's transaction; several failed runs (a ZIP-004
  database) are allowed and resolved one by one.
* SQLite: the runs table is rebuilt with AUTOINCREMENT, so the id of a removed run (and its
  `job-N.log`) is never given to a new one. SQLite keeps the highest id ever used in
  `sqlite_sequence`; the copied rows seed it. PostgreSQL's SERIAL sequence never reused ids.

Downgrade: drops `one_active_run` and rebuilds the SQLite table without AUTOINCREMENT; it does
not restore `one_open_run` (0002 no longer makes it, and a database with several failed runs
could not hold it).

Pairs survive: the SQLite rebuild runs with foreign keys OFF (see env.py); the table is copied
from an explicit definition (`copy_from`) rather than reflected, so its CHECK constraint and
index come out exactly as written here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RUNS = "deep_memory_training_runs"
STATUSES = (
    "'generating', 'generated', 'training', 'completed', 'generating_failed', 'training_failed'"
)
ACTIVE = "status IN ('generating', 'training')"
CK_SQLITE = "ck_deep_memory_training_runs_ck_deep_memory_training_runs_status"


def _runs_table(autoincrement: bool) -> sa.Table:
    """The runs table as revisions 0002–0004 define it."""
    return sa.Table(
        RUNS,
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_chunks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("processed_chunks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pair_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error_message", sa.Text()),
        sa.Column("deeplake_job_id", sa.String(128)),
        sa.Column("metrics", sa.JSON()),
        sa.Column("settings", sa.JSON()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("owner", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_deep_memory_training_runs"),
        # The name 0002 gave it on SQLite (the naming convention applied to an already
        # conventional name), kept so that 0002's downgrade finds it again.
        sa.CheckConstraint(f"status IN ({STATUSES})", name=CK_SQLITE),
        sa.Index("ix_deep_memory_training_runs_created_at", "created_at"),
        sqlite_autoincrement=autoincrement,
    )


def _rebuild_sqlite(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        RUNS,
        recreate="always",
        copy_from=_runs_table(autoincrement),
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS one_open_run")
    op.execute("DROP INDEX IF EXISTS one_active_run")
    _rebuild_sqlite(autoincrement=True)
    op.create_index(
        "one_active_run",
        RUNS,
        [sa.text("(1)")],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("one_active_run", table_name=RUNS)
    _rebuild_sqlite(autoincrement=False)

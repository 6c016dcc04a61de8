"""ZIP-005: phase-specific failure statuses.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-24

Upgrade: the CHECK on `status` becomes the six ZIP-005 statuses; each legacy `failed` row becomes
`training_failed` when it has a `deeplake_job_id` (it reached DeepLake, so training failed), else
`generating_failed` (spec assumption 5). Pairs are kept.

It never refuses: ZIP-004 let an admin start a new run while failed ones existed, so a legacy
database can hold several unfinished runs. They all arrive as failed runs, and the admin
resolves them one by one (Proceed or Delete); the service keeps new generations blocked until
then (FR-2). An earlier version of this revision created `one_open_run`, a unique index over
every unfinished run, and refused such databases; revision 0004 drops that index where it
exists and restores ZIP-004's `one_active_run` (one *working* run at a time, Assumption 3).

Downgrade maps both failure statuses back to `failed`.

Pairs survive: the runs table is rebuilt (SQLite batch mode) with foreign keys OFF, see env.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RUNS = "deep_memory_training_runs"
CK = "ck_deep_memory_training_runs_status"
OLD = "'generating', 'generated', 'training', 'completed', 'failed'"
NEW = "'generating', 'generated', 'training', 'completed', 'generating_failed', 'training_failed'"
ACTIVE = "status IN ('generating', 'training')"


def upgrade() -> None:
    op.drop_index("one_active_run", table_name=RUNS)
    with op.batch_alter_table(RUNS, recreate="auto") as batch:
        batch.drop_constraint(CK, type_="check")
    op.execute(
        f"UPDATE {RUNS} SET status = CASE "
        "WHEN deeplake_job_id IS NOT NULL AND deeplake_job_id <> '' THEN 'training_failed' "
        "ELSE 'generating_failed' END WHERE status = 'failed'"
    )
    with op.batch_alter_table(RUNS, recreate="auto") as batch:
        batch.create_check_constraint(CK, sa.text(f"status IN ({NEW})"))


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS one_open_run")  # made by this revision's earlier version
    with op.batch_alter_table(RUNS, recreate="auto") as batch:
        batch.drop_constraint(CK, type_="check")
    op.execute(
        f"UPDATE {RUNS} SET status = 'failed' "
        "WHERE status IN ('generating_failed', 'training_failed')"
    )
    with op.batch_alter_table(RUNS, recreate="auto") as batch:
        batch.create_check_constraint(CK, sa.text(f"status IN ({OLD})"))
    op.create_index(
        "one_active_run",
        RUNS,
        [sa.text("(1)")],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )

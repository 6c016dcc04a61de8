"""ZIP-005: phase-specific failure statuses and the single-open-run rule in the database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-24

Upgrade: the CHECK on `status` becomes the six ZIP-005 statuses; each legacy `failed` row becomes
`training_failed` when it has a `deeplake_job_id` (it reached DeepLake, so training failed), else
`generating_failed` (spec assumption 5). Then `one_open_run`, a partial unique index over every
non-completed run, replaces ZIP-004's `one_active_run`.

ZIP-004 let an admin start a new run while failed ones existed, so a legacy database can hold
several unfinished runs, which ZIP-005 forbids. The upgrade deletes nothing on its own: it stops
with a message naming those runs, and the admin chooses which to keep (see README, "Upgrading").

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
OPEN = "status <> 'completed'"
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
    open_runs = (
        op.get_bind()
        .execute(sa.text(f"SELECT id, status FROM {RUNS} WHERE {OPEN} ORDER BY id"))
        .all()
    )
    if len(open_runs) > 1:
        listed = ", ".join(f"#{r.id} ({r.status})" for r in open_runs)
        raise RuntimeError(
            "Cannot upgrade the dmdesk database: ZIP-005 allows one unfinished run, and this "
            f"database has {len(open_runs)}: {listed}. Delete the runs you no longer need "
            f"(DELETE FROM {RUNS} WHERE id IN (...); their pairs go with them) and start dmdesk "
            "again. Nothing was changed."
        )
    with op.batch_alter_table(RUNS, recreate="auto") as batch:
        batch.create_check_constraint(CK, sa.text(f"status IN ({NEW})"))
    op.create_index(
        "one_open_run",
        RUNS,
        [sa.text("(1)")],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("one_open_run", table_name=RUNS)
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

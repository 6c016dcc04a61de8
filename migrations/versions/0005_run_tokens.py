"""Tokens a run's LLM calls used (issue 13).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

`prompt_tokens` and `completion_tokens` on `deep_memory_training_runs`: the sum of the `usage` of
every completion the run paid for (retried and refused replies included, as the provider bills
them), 0 for runs made before. Two NOT NULL columns with a server default are added in place on
both databases (SQLite's ADD COLUMN allows a constant default), so no run is touched.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RUNS = "deep_memory_training_runs"


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN on both: batch mode would reflect the runs table, whose
    # expression index (one_active_run) SQLAlchemy cannot reflect.
    for name in ("prompt_tokens", "completion_tokens"):
        op.add_column(
            RUNS, sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    # Plain DROP COLUMN (PostgreSQL; SQLite ≥ 3.35), as 0003: batch mode would rebuild the table.
    for name in ("prompt_tokens", "completion_tokens"):
        op.drop_column(RUNS, name)

"""ZIP-004 schema: training runs and pairs, with a single `failed` status.

Revision ID: 0001
Revises:
Create Date: 2026-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ZIP004_STATUSES = "'generating', 'generated', 'training', 'completed', 'failed'"


def upgrade() -> None:
    op.create_table(
        "deep_memory_training_runs",
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
        sa.CheckConstraint(
            f"status IN ({ZIP004_STATUSES})", name="ck_deep_memory_training_runs_status"
        ),
    )
    op.create_index(
        "ix_deep_memory_training_runs_created_at", "deep_memory_training_runs", ["created_at"]
    )
    # ZIP-004's rule (spec assumption 3): one active run at a time.
    op.create_index(
        "one_active_run",
        "deep_memory_training_runs",
        [sa.text("(1)")],
        unique=True,
        sqlite_where=sa.text("status IN ('generating', 'training')"),
        postgresql_where=sa.text("status IN ('generating', 'training')"),
    )
    op.create_table(
        "deep_memory_training_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("training_run_id", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.String(512), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("approved", sa.Boolean()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deep_memory_training_pairs"),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["deep_memory_training_runs.id"],
            name="fk_training_run_id_deep_memory_training_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_pairs_run_chunk", "deep_memory_training_pairs", ["training_run_id", "chunk_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_pairs_run_chunk", table_name="deep_memory_training_pairs")
    op.drop_table("deep_memory_training_pairs")
    op.drop_index("one_active_run", table_name="deep_memory_training_runs")
    op.drop_index("ix_deep_memory_training_runs_created_at", table_name="deep_memory_training_runs")
    op.drop_table("deep_memory_training_runs")

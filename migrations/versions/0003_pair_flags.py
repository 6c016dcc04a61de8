"""Quality flags on training pairs (issue 10).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

`deep_memory_training_pairs.flags`: NULL for a pair the quality filters found nothing against,
else the reasons in words ("generic; round-trip rank 41"). A flagged pair starts rejected; the
admin may still approve it. Adding a nullable column rebuilds no table on either database (batch
mode adds it in place on SQLite), so no pair is touched.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PAIRS = "deep_memory_training_pairs"


def upgrade() -> None:
    with op.batch_alter_table(PAIRS) as batch:
        batch.add_column(sa.Column("flags", sa.String(300), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (PostgreSQL; SQLite ≥ 3.35): batch mode would rebuild
    # the pairs table and reflect the runs table's expression index, which SQLAlchemy cannot.
    op.drop_column(PAIRS, "flags")

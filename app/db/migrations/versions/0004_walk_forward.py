"""training_jobs.parent_id and .fold: walk-forward folds run as child jobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("fold", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_training_jobs_parent_id_training_jobs", "training_jobs",
                                 ["parent_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_training_jobs_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_index("ix_training_jobs_parent_id")
        batch.drop_constraint("fk_training_jobs_parent_id_training_jobs", type_="foreignkey")
        batch.drop_column("fold")
        batch.drop_column("parent_id")

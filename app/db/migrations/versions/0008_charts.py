"""training_charts: what a job's pages draw of its winner (equity, drawdown, trades),
kept by its finish, already reduced.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_charts",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("body", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                 "postgresql"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["training_jobs.id"],
                                name=op.f("fk_training_charts_job_id_training_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_training_charts")),
    )


def downgrade() -> None:
    op.drop_table("training_charts")

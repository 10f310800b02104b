"""training_jobs.round_plan, .dispatched_round and .recoveries: a control task redelivered
after its worker died resumes the job where it stopped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("round_plan", sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True))
        batch.add_column(sa.Column("dispatched_round", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("recoveries", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("recoveries")
        batch.drop_column("dispatched_round")
        batch.drop_column("round_plan")

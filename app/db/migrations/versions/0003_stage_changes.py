"""configuration_stage_changes: the audit trail of lifecycle stages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "configuration_stage_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["configuration_id"], ["trained_configurations.id"],
                                name=op.f("fk_configuration_stage_changes_configuration_id_trained_configurations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configuration_stage_changes")),
    )
    with op.batch_alter_table("configuration_stage_changes") as batch:
        batch.create_index("ix_configuration_stage_changes_configuration_id", ["configuration_id"])


def downgrade() -> None:
    op.drop_table("configuration_stage_changes")

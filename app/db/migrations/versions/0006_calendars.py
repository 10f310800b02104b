"""market_series (what a stored series is: its calendar, bars a year, synthetic or not)
and training_jobs.bars_per_year (what a job annualised with).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_series",
        sa.Column("exchange", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("timeframe", sa.String(8), primary_key=True),
        sa.Column("calendar", sa.String(32), nullable=True),
        sa.Column("bars_per_year", sa.Float(53), nullable=True),
        sa.Column("synthetic", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", name="pk_market_series"),
    )
    # Series stored before: synthetic when they sit under the synthetic label.
    op.execute(
        "INSERT INTO market_series (exchange, symbol, timeframe, synthetic, updated_at) "
        "SELECT DISTINCT exchange, symbol, timeframe, exchange = 'synthetic', CURRENT_TIMESTAMP "
        "FROM market_data")
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("bars_per_year", sa.Float(53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("bars_per_year")
    op.drop_table("market_series")

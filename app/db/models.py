"""SQLAlchemy 2 table models; the schema itself is created by the Alembic migrations."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "MarketData", "MarketSeries", "TrainingJob", "TrainingProgress", "Trial", "TrainedConfiguration",
           "ConfigurationStageChange", "TrainingChart"]

# Stable constraint names, so migrations read the same on Postgres and SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MarketData(Base):
    """One candle. ``ts`` is the bar's open time in epoch milliseconds (UTC)."""

    __tablename__ = "market_data"

    exchange: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[float] = mapped_column(Float(53))
    high: Mapped[float] = mapped_column(Float(53))
    low: Mapped[float] = mapped_column(Float(53))
    close: Mapped[float] = mapped_column(Float(53))
    volume: Mapped[float] = mapped_column(Float(53))


class MarketSeries(Base):
    """What a stored series is, beside its candles: the trading calendar its gaps are
    judged by and its bars a year (None: measured from its timestamps, see
    ``app.validation.calendars``), and whether it is synthetic."""

    __tablename__ = "market_series"

    exchange: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    calendar: Mapped[str | None] = mapped_column(String(32))
    bars_per_year: Mapped[float | None] = mapped_column(Float(53))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- training ----------------------------------------------------------------------------

JsonType = JSON().with_variant(JSONB(), "postgresql")


class TrainingJob(Base):
    """One optimization job: the request as posted, its state and its result."""

    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    request: Mapped[dict] = mapped_column(JsonType)
    strategy: Mapped[str] = mapped_column(String(64))
    exchange: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(8))
    optimizer: Mapped[str] = mapped_column(String(16))
    objective: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    seed: Mapped[int] = mapped_column(BigInteger)
    n_trials: Mapped[int] = mapped_column(Integer)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    data_start: Mapped[int | None] = mapped_column(BigInteger)
    data_end: Mapped[int | None] = mapped_column(BigInteger)
    round: Mapped[int] = mapped_column(Integer, default=0)
    # Walk-forward: each fold is a child job over its training window.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"),
                                                  index=True)
    fold: Mapped[int | None] = mapped_column(Integer)
    sampler_state: Mapped[dict | None] = mapped_column(JsonType)
    # Resuming after a worker died mid-step (see app.services.training.start): the plan
    # of the current round, the last round whose chord was sent, and how often it resumed.
    round_plan: Mapped[dict | None] = mapped_column(JsonType)
    dispatched_round: Mapped[int | None] = mapped_column(Integer)
    recoveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the job annualises with (measured from its candles at start, or asked).
    bars_per_year: Mapped[float | None] = mapped_column(Float(53))
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    best_value: Mapped[float | None] = mapped_column(Float(53))
    best_params: Mapped[dict | None] = mapped_column(JsonType)
    result: Mapped[dict | None] = mapped_column(JsonType)
    # The job's own bookkeeping (est_trial_ms, sampler_s): for chunk sizing and benchmarks.
    stats: Mapped[dict | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_s: Mapped[float | None] = mapped_column(Float(53))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_training_jobs_created_at", "created_at"),)


class TrainingProgress(Base):
    """A progress event: every row carries percentage, step and the best value so far."""

    __tablename__ = "training_progress"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    percentage: Mapped[float] = mapped_column(Float(53))
    step_number: Mapped[int] = mapped_column(Integer)
    total_steps: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    best_value: Mapped[float | None] = mapped_column(Float(53))

    __table_args__ = (Index("ix_training_progress_job_id_id", "job_id", "id"),)


class Trial(Base):
    """One backtest of one parameter set; (job_id, number) is unique, so a redelivered
    chunk inserts nothing twice."""

    __tablename__ = "trials"

    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    round: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float(53))
    metrics: Mapped[dict | None] = mapped_column(JsonType)
    duration: Mapped[float] = mapped_column(Float(53))
    system_attrs: Mapped[dict | None] = mapped_column(JsonType)


class TrainedConfiguration(Base):
    """The best configuration a job found, one row per (strategy, exchange, pair,
    timeframe, params); a later job with the same key updates it."""

    __tablename__ = "trained_configurations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    strategy_name: Mapped[str] = mapped_column(String(64))
    strategy_version: Mapped[int] = mapped_column(Integer)
    exchange: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict] = mapped_column(JsonType)
    params_key: Mapped[str] = mapped_column(String(64))
    objective: Mapped[str] = mapped_column(String(32))
    in_sample_metrics: Mapped[dict] = mapped_column(JsonType)
    out_of_sample_metrics: Mapped[dict | None] = mapped_column(JsonType)
    validation: Mapped[dict | None] = mapped_column(JsonType)
    net_profit: Mapped[float] = mapped_column(Float(53))
    sharpe_ratio: Mapped[float] = mapped_column(Float(53))
    sample_size: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float(53))
    lifecycle_stage: Mapped[str] = mapped_column(String(16), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("training_jobs.id", ondelete="SET NULL"))
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("strategy_name", "exchange", "pair", "timeframe", "params_key",
                         name="uq_trained_configurations_key"),
    )


class ConfigurationStageChange(Base):
    """The audit trail of lifecycle stages: who moved which configuration where, and why."""

    __tablename__ = "configuration_stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("trained_configurations.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrainingChart(Base):
    """What a job's pages draw of its winner, kept by its finish (``app.services.charts``)."""

    __tablename__ = "training_charts"

    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    body: Mapped[dict] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

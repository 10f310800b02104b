"""Trained configurations (web process and CLI): list, read, and a person's stage change with its audit trail."""
from __future__ import annotations

import logging

from sqlalchemy import func, select

from app.config import Settings
from app.db import training as repo
from app.db.models import ConfigurationStageChange, TrainedConfiguration
from app.db.session import session_scope
from app.services.jobs import Conflict, NotFound, page_args

log = logging.getLogger(__name__)


_HEADLINE = ("sharpe_ratio", "num_trades", "net_profit", "max_drawdown", "cagr")


def _headline(metrics: dict | None) -> dict | None:
    return None if metrics is None else {k: metrics.get(k) for k in _HEADLINE}


def _trust_summary(validation: dict | None) -> dict:
    """The numbers a stage is decided on, named once for every view."""
    v = validation or {}
    dsr = v.get("deflated_sharpe") or {}
    pbo = v.get("pbo") or {}
    return {"dsr": dsr.get("dsr"), "psr_oos": v.get("psr_oos"), "evidence": v.get("evidence"),
            "pbo": pbo.get("pbo"), "effective_trials": v.get("effective_trials"),
            "n_trials": v.get("n_trials"), "wfe": v.get("wfe"),
            "lookahead": (v.get("lookahead") or {}).get("message")}


def _config_view(row: TrainedConfiguration) -> dict:
    data = (row.validation or {}).get("data") or {}
    return {
        "name": row.name, "strategy_name": row.strategy_name,
        "strategy_version": row.strategy_version, "exchange": row.exchange, "pair": row.pair,
        "timeframe": row.timeframe, "params": row.params, "objective": row.objective,
        # In and out of sample side by side, named as such (``sharpe_ratio``,
        # ``net_profit`` and ``sample_size`` below are the in-sample ones, for every method).
        "in_sample": _headline(row.in_sample_metrics),
        "out_of_sample": _headline(row.out_of_sample_metrics),
        "trust": _trust_summary(row.validation),
        "validation_method": (row.validation or {}).get("method"),
        "bars_per_year": data.get("bars_per_year"), "synthetic": bool(data.get("synthetic")),
        "in_sample_metrics": row.in_sample_metrics,
        "out_of_sample_metrics": row.out_of_sample_metrics, "validation": row.validation,
        "net_profit": row.net_profit, "sharpe_ratio": row.sharpe_ratio,
        "sample_size": row.sample_size, "confidence": row.confidence,
        "lifecycle_stage": row.lifecycle_stage, "job_id": row.job_id,
        "data_fingerprint": row.data_fingerprint,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


def list_configurations(settings: Settings, strategy=None, pair=None, timeframe=None,
                        stage=None, page=1, per_page=50) -> dict:
    page, per_page = page_args(page, per_page)
    if stage is not None:
        from app.errors import InputError, did_you_mean
        from app.validation.lifecycle import STAGES

        if stage.upper() not in STAGES:
            raise InputError(f"unknown stage {stage!r}", field="stage",
                             hint=did_you_mean(stage.upper(), STAGES))
    with session_scope(settings.database_url) as session:
        query = select(TrainedConfiguration)
        count = select(func.count()).select_from(TrainedConfiguration)
        for column, value in ((TrainedConfiguration.strategy_name, strategy and strategy.upper()),
                              (TrainedConfiguration.pair, pair and pair.upper()),
                              (TrainedConfiguration.timeframe, timeframe),
                              (TrainedConfiguration.lifecycle_stage, stage and stage.upper())):
            if value:
                query = query.where(column == value)
                count = count.where(column == value)
        total = session.scalar(count)
        rows = session.scalars(query.order_by(TrainedConfiguration.updated_at.desc())
                               .offset((page - 1) * per_page).limit(per_page))
        return {"configurations": [_config_view(r) for r in rows], "page": page,
                "per_page": per_page, "total": total}


def get_configuration(settings: Settings, name: str) -> dict:
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(TrainedConfiguration).where(TrainedConfiguration.name == name)).first()
        if row is None:
            raise NotFound(f"no configuration {name!r}", field="name")
        return {**_config_view(row), "stage_history": _history_view(session, row.id)}


def _history_view(session, config_id: int) -> list[dict]:
    rows = session.scalars(select(ConfigurationStageChange).where(
        ConfigurationStageChange.configuration_id == config_id).order_by(ConfigurationStageChange.id))
    return [{"from": r.from_stage, "to": r.to_stage, "reason": r.reason, "actor": r.actor,
             "forced": r.forced, "ts": r.ts.isoformat()} for r in rows]


def change_stage(settings: Settings, name: str, body, actor: str = "api") -> dict:
    """A person moves a configuration to a stage, with a reason kept in the audit trail.

    ``LIVE`` is only ever reached this way. A ``REJECTED`` configuration goes anywhere but
    ``RETIRED`` only with ``force: true`` (and the audit row says it was forced).
    """
    from app.schemas import parse_stage_change

    change = parse_stage_change(body)
    stage, reason, force = change.stage, change.reason, change.force
    with session_scope(settings.database_url) as session:
        stmt = select(TrainedConfiguration).where(TrainedConfiguration.name == name)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).first()
        if row is None:
            raise NotFound(f"no configuration {name!r}", field="name")
        if row.lifecycle_stage == stage:
            raise Conflict(f"{name} is already {stage}", field="stage")
        if row.lifecycle_stage == "REJECTED" and stage != "RETIRED" and not force:
            reasons = "; ".join((row.validation or {}).get("reasons", [])) or "failed its checks"
            raise Conflict(f"{name} was REJECTED ({reasons}); promoting it needs force: true",
                           field="force")
        now = repo.utcnow()
        previous = row.lifecycle_stage
        session.add(ConfigurationStageChange(
            configuration_id=row.id, from_stage=previous, to_stage=stage,
            reason=reason.strip(), actor=actor[:128], forced=force, ts=now))
        row.lifecycle_stage = stage
        row.updated_at = now
        log.info("stage changed configuration=%s from=%s to=%s actor=%s forced=%s",
                 name, previous, stage, actor, force)
    return get_configuration(settings, name)

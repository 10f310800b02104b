"""What a job that ran ends as: always succeeded with a configuration row, its verdict
named and consistent, on both databases (the services the tasks call, driven in-process)."""
from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sqlalchemy import select

from app.config import load_settings
from app.db import market_data as md
from app.db.models import TrainedConfiguration
from app.db.session import session_scope
from app.services import configurations, jobs, training
from tests.conftest import random_candles
from tests.steps import run_job

START = 1_700_000_000_000 // 300_000 * 300_000
OLD_BODY = {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10,
            "run_validation": False}


@pytest.fixture
def settings(db_url, tmp_path):
    with session_scope(db_url) as session:
        md.upsert_candles(session, "binanceus", "BTC/USDT", "5m",
                          random_candles(1000, seed=11, start_ms=START, step_ms=300_000, vol=0.004))
    return load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)})


def run(settings, body) -> dict:
    return run_job(settings, body)


def stored_configuration(settings, name) -> TrainedConfiguration:
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(TrainedConfiguration).where(
            TrainedConfiguration.name == name)).one()
        session.expunge(row)
        return row


def test_the_old_systems_request_unseeded_always_ends_in_a_configuration_row(settings):
    # The old body leaves the seed out: each run draws its own ten parameter sets, and on a
    # random walk most LIQUIDITY_SWEEP draws trade too little. Twenty runs, twenty rows.
    for _ in range(20):
        job = run(settings, OLD_BODY)
        assert job["status"] == "succeeded", job["error"]
        result = job["result"]
        row = stored_configuration(settings, result["configuration"])
        assert row.job_id == job["job_id"] or row.updated_at is not None
        assert (row.lifecycle_stage, row.confidence) == (result["lifecycle_stage"],
                                                          result["confidence"])
        # The stage is a verdict on random draws over noise: most are rejected, and about
        # one run in a hundred meets a lucky single trial (the rest trade nothing) that
        # passes as PAPER. Whatever it is, it agrees with its confidence and says why.
        if result["lifecycle_stage"] == "REJECTED":
            assert result["confidence"] == 0.0 and result["reasons"]
        else:
            assert result["confidence"] >= 0.05 and "no out-of-sample check" in result["reasons"]


def test_a_result_too_thin_to_trust_is_a_rejected_configuration_that_says_why(settings):
    job = run(settings, {**OLD_BODY, "seed": 3, "min_trades": 10_000})
    assert job["status"] == "succeeded" and job["error"] is None
    result = job["result"]
    assert result["lifecycle_stage"] == "REJECTED" and result["confidence"] == 0.0
    assert result["reasons"][0].startswith("no trial of 10 made min_trades=10000 trades (the most was")
    assert "lower min_trades" in result["reasons"][0]
    shown = configurations.get_configuration(settings, result["configuration"])
    assert shown["lifecycle_stage"] == "REJECTED"
    assert shown["validation"]["reasons"] == result["reasons"]


def test_the_job_says_what_it_annualised_with(settings):
    job = run(settings, {**OLD_BODY, "seed": 3, "strategy": "SMA_CROSS", "min_trades": 1})
    data = job["result"]["data"]
    first, last = (pd.Timestamp(data.pop(k)) for k in ("first", "last"))
    assert data == {"bars": 1000, "calendar": "24/7", "bars_per_year": 105_120.0,
                    "bars_per_year_source": "measured", "synthetic": False}
    assert last - first == pd.Timedelta(minutes=5 * 999)  # the window the trials saw
    asked = run(settings, {**OLD_BODY, "seed": 3, "strategy": "SMA_CROSS", "min_trades": 1,
                           "bars_per_year": 52_560})
    assert asked["result"]["data"]["bars_per_year"] == 52_560.0
    assert asked["result"]["data"]["bars_per_year_source"] == "request"
    # the same trades, a Sharpe ratio sqrt(2) smaller
    a, b = job["result"]["in_sample"], asked["result"]["in_sample"]
    if job["result"]["best_params"] == asked["result"]["best_params"]:
        assert b["sharpe_ratio"] == pytest.approx(a["sharpe_ratio"] / np.sqrt(2), rel=1e-9)


def test_views_name_in_and_out_of_sample_side_by_side(settings):
    job = run(settings, {**OLD_BODY, "seed": 3, "strategy": "SMA_CROSS", "min_trades": 1,
                         "n_iterations": 30, "run_validation": True})
    listed = configurations.list_configurations(settings)["configurations"]
    view = next(c for c in listed if c["name"] == job["result"]["configuration"])
    assert view["in_sample"]["sharpe_ratio"] == job["result"]["in_sample"]["sharpe_ratio"]
    assert view["out_of_sample"]["sharpe_ratio"] == job["result"]["out_of_sample"]["sharpe_ratio"]
    assert view["in_sample"]["num_trades"] == job["result"]["in_sample"]["num_trades"]
    assert view["out_of_sample"]["num_trades"] == job["result"]["out_of_sample"]["num_trades"]
    assert view["trust"]["dsr"] == job["result"]["trust"]["deflated_sharpe"]["dsr"]
    assert view["trust"]["psr_oos"] == job["result"]["trust"]["psr_oos"]
    brief = next(j for j in jobs.list_jobs(settings)["jobs"] if j["job_id"] == job["job_id"])
    assert brief["verdict"] == {
        "stage": job["result"]["lifecycle_stage"], "confidence": job["result"]["confidence"],
        "configuration": job["result"]["configuration"],
        "in_sample": {k: job["result"]["in_sample"][k] for k in ("sharpe_ratio", "num_trades")},
        "out_of_sample": {k: job["result"]["out_of_sample"][k] for k in ("sharpe_ratio", "num_trades")}}


def test_trials_short_of_min_trades_reach_optuna_as_failed_with_the_reason(settings):
    job = run(settings, {**OLD_BODY, "optimizer": "bayesian", "n_iterations": 24, "batch_size": 8,
                         "seed": 2, "min_trades": 3})
    name = training.export_study(settings, job["job_id"])
    study = optuna.load_study(study_name=name, storage=settings.optuna_storage_url)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 24 and failed and done
    assert all(t.user_attrs["trad_fail_reason"].endswith("fewer than min_trades=3") for t in failed)
    assert all(t.value > -1e9 for t in done)


def test_a_parameter_set_tried_again_is_not_another_try(settings):
    # Four parameter sets, forty random draws: four tries, not forty.
    job = run(settings, {**OLD_BODY, "strategy": "SMA_CROSS", "n_iterations": 40, "seed": 1,
                         "min_trades": 1, "params": {"allow_short": False},
                         "search_space": {"fast": [5, 6], "slow": [20, 21]}})
    trust = job["result"]["trust"]
    assert trust["runs"] == 40 and trust["n_trials"] == 4
    assert 1 <= trust["effective_trials"] <= 4


def test_candles_that_change_under_a_running_job_fail_it_instead_of_judging_other_bars(settings):
    from sqlalchemy import text

    from app.errors import TradError

    with session_scope(settings.database_url) as session:
        whole = md.load_candles(session, "binanceus", "BTC/USDT", "5m")
        session.execute(text("DELETE FROM market_data WHERE ts = :ts"), {"ts": int(whole.ts[500])})
    job_id = jobs.submit(settings, {**OLD_BODY, "strategy": "SMA_CROSS", "seed": 2, "min_trades": 1,
                                    "run_validation": True}, lambda j, p: None)["job_id"]
    plan = training.start_job(settings, job_id)
    for chunk in plan.chunks:
        training.run_chunk(settings, job_id, 0, chunk)
    # a refresh fills the hole while the job runs: the holdout split moves by one bar
    with session_scope(settings.database_url) as session:
        md.upsert_candles(session, "binanceus", "BTC/USDT", "5m", whole.slice(500, 501))
    with pytest.raises(TradError, match="candles changed"):
        training.finish_round(settings, job_id, 0, plan.expected)

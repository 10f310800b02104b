"""Planted edge and planted overfit, through the whole pipeline on a real worker."""
from __future__ import annotations

import numpy as np
import pytest

from app.backtest import Candles
from app.config import load_settings
from app.db import market_data as md
from app.db.session import session_scope
from app.services import jobs
from tests.conftest import random_candles
from tests.steps import FIVE_MIN as STEP
from tests.steps import START, wait_for
from workers import pipeline


def trending(n: int, seed: int) -> Candles:
    """Trends that last 300 bars, up then down: a moving-average crossover has a real edge."""
    rng = np.random.default_rng(seed)
    drift = 0.0015 * np.sign(np.sin(2 * np.pi * np.arange(n) / 600.0) + 1e-9)
    close = 100 * np.exp(np.cumsum(drift + rng.normal(0, 0.004, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    return Candles(START + STEP * np.arange(n), open_, high, low, close, np.ones(n))


def run(settings, candles, **extra):
    with session_scope(settings.database_url) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m", candles)
    body = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "start": START, "n_iterations": 200,
            "min_trades": 5, "seed": 1, "params": {"allow_short": False},
            "search_space": {"fast": [2, 60], "slow": [10, 200]},
            "validation": {"method": "holdout", "test_fraction": 0.3}, **extra}
    return wait_for(settings, jobs.submit(settings, body, pipeline.enqueue_start)["job_id"],
                    timeout=180)


def test_a_real_pattern_comes_out_paper_or_better(pg_db, worker, tmp_path):
    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    job = run(settings, trending(6000, seed=1))
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["lifecycle_stage"] in ("PAPER", "LIVE_CANDIDATE"), result["reasons"]
    assert result["out_of_sample"]["sharpe_ratio"] > 0
    assert result["trust"]["deflated_sharpe"]["dsr"] > 0.9
    assert result["confidence"] > 0.2


def test_noise_over_many_trials_comes_out_rejected(pg_db, worker, tmp_path):
    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    job = run(settings, random_candles(6000, seed=3, start_ms=START, step_ms=STEP, vol=0.004),
              n_iterations=400)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["lifecycle_stage"] == "REJECTED"
    assert result["confidence"] == 0.0
    # The best of 400 looks good in sample, and held out it shows nothing: rejected on the
    # evidence of both records (the DSR alone, a probability, is above 0.5 for some noise)
    trust = result["trust"]
    assert any(r.startswith(("evidence", "out-of-sample Sharpe", "deflated Sharpe"))
               for r in result["reasons"]), result["reasons"]
    assert trust["evidence"] < 0.95
    assert 1 <= trust["effective_trials"] < trust["n_trials"] <= trust["runs"] == 400
    assert trust["pbo"]["n_trials"] >= 20 and trust["pbo_trials"] == trust["pbo"]["n_trials"]


def test_walk_forward_runs_its_folds_as_parallel_jobs_and_stitches_the_tests(pg_db, worker, tmp_path):
    from sqlalchemy import select

    from app.db.models import TrainedConfiguration, TrainingJob

    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    job = run(settings, trending(6000, seed=2), optimizer="bayesian", batch_size=10,
              n_iterations=30, validation={"method": "walk_forward", "folds": 4, "test_bars": 600})
    assert job["status"] == "succeeded", job["error"]
    assert job["trials_done"] == job["trials_total"] == 4 * 30
    wf = job["result"]["walk_forward"]
    assert [f["fold"] for f in wf["folds"]] == [0, 1, 2, 3]
    assert all(f["out_of_sample"]["num_trades"] > 0 for f in wf["folds"])
    assert wf["wfe"] > 0 and job["result"]["out_of_sample"]["sharpe_ratio"] > 0
    curve = wf["equity_curve"]
    assert 2 <= len(curve) <= 500 and curve == sorted(curve)
    assert curve[-1][1] == pytest.approx(job["result"]["out_of_sample"]["final_equity"])
    with session_scope(pg_db) as s:
        children = list(s.scalars(select(TrainingJob).where(TrainingJob.parent_id == job["job_id"])
                                  .order_by(TrainingJob.fold)))
        config = s.scalars(select(TrainedConfiguration).where(
            TrainedConfiguration.name == job["result"]["configuration"])).one()
        assert [c.status for c in children] == ["succeeded"] * 4
        assert [c.n_trials for c in children] == [30] * 4
        # each fold trained on its own window, the windows rolling forward
        starts = [c.request["start"] for c in children]
        assert starts == sorted(starts) and len(set(starts)) == 4
        assert config.validation["method"] == "walk_forward"
        assert config.validation["stitched_bars"] == 4 * 600
        assert config.params == children[-1].best_params
    listed = jobs.list_jobs(settings)["jobs"]
    assert [j["job_id"] for j in listed].count(job["job_id"]) == 1
    assert all(j["job_id"] not in [c.id for c in children] for j in listed)

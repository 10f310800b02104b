"""The verdict on series whose truth is planted, through the whole pipeline on a real
worker: eight random walks, every one REJECTED; eight series with a moderate edge (a
moving-average crossover's best earns a Sharpe ratio of about 2 a year), every one PAPER
or better; by random search, bayesian and genetic, 100 to 5,000 trials.

Each series is 8 years of hourly bars with the latest 30 % held out: about 2.4 years
out of sample, enough for a Sharpe ratio of 2 to show (a single year's would have a
standard error of about 1). bench/verdicts.py runs the same cases over more seeds.
"""
from __future__ import annotations

import pytest

from app.config import load_settings
from app.data.synthetic import trending_candles
from app.db import market_data as md
from app.db.session import session_scope
from app.services import jobs
from tests.steps import wait_for
from workers import pipeline

BARS = 70_000
START = 1_400_000_000_000 // 3_600_000 * 3_600_000
PLAN = [("random", 5000), ("bayesian", 300), ("genetic", 1000), ("random", 100),
        ("bayesian", 100), ("genetic", 300), ("random", 1000), ("random", 2000)]
CASES = [(kind, i) for kind in ("noise", "edge") for i in range(len(PLAN))]
WALK_FORWARD = {"method": "walk_forward", "folds": 4}


@pytest.fixture(scope="module")
def worker(pg_url, redis_url):
    """The production task limits (the suite's 10 s are for the tests that kill workers):
    sixteen jobs share two processes, and a finish of 5,000 trials over 49,000 bars runs
    for seconds."""
    from app.db.migrate import upgrade
    from tests.processes import Worker

    upgrade(pg_url)
    w = Worker(pg_url, extra_env={"TRAD_TASK_SOFT_LIMIT_S": "600", "TRAD_TASK_HARD_LIMIT_S": "660",
                                  "TRAD_VISIBILITY_TIMEOUT_S": "960"}).wait_ready()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def finished(pg_url, worker, tmp_path_factory):
    """Every case submitted at once (the worker's two processes share them), then awaited."""
    from app.db.migrate import upgrade
    from tests.integration.conftest import _empty_tables

    url = pg_url
    upgrade(url)
    settings = load_settings({"DATABASE_URL": url, "TRAD_HOME": str(tmp_path_factory.mktemp("v"))})
    submitted = {}
    for kind, i in CASES:
        symbol = f"{kind.upper()}{i}"
        with session_scope(url) as session:
            md.upsert_candles(session, "planted", symbol, "1h", trending_candles(
                BARS, seed=1000 + i, strength=0.09 if kind == "edge" else 0.0, start=START))
        optimizer, trials = PLAN[i]
        submitted[(kind, i)] = jobs.submit(settings, {
            "strategy": "SMA_CROSS", "symbol": symbol, "exchange": "planted", "timeframe": "1h",
            "optimizer": optimizer, "n_iterations": trials, "start": START, "seed": i,
            "params": {"allow_short": False}, "search_space": {"fast": [2, 60], "slow": [10, 200]},
            "validation": {"method": "holdout", "test_fraction": 0.3}}, pipeline.enqueue_start)["job_id"]
    for kind in ("noise", "edge"):      # and one walk-forward of each: 4 folds of 300 trials
        symbol = f"WF{kind.upper()}"
        with session_scope(url) as session:
            md.upsert_candles(session, "planted", symbol, "1h", trending_candles(
                BARS, seed=2000, strength=0.09 if kind == "edge" else 0.0, start=START))
        submitted[(kind, "walk_forward")] = jobs.submit(settings, {
            "strategy": "SMA_CROSS", "symbol": symbol, "exchange": "planted", "timeframe": "1h",
            "optimizer": "random", "n_iterations": 300, "start": START, "seed": 1,
            "params": {"allow_short": False}, "search_space": {"fast": [2, 60], "slow": [10, 200]},
            "validation": WALK_FORWARD}, pipeline.enqueue_start)["job_id"]
    done = {case: wait_for(settings, job_id, timeout=600) for case, job_id in submitted.items()}
    for job in done.values():   # what a failure went through, for its assertion message
        job["log"] = [p["message"] for p in jobs.list_progress(settings, job["job_id"])["progress"]][-6:]
    yield done
    _empty_tables(url)


def _line(kind, i, job) -> str:
    r = job["result"]
    t = r["trust"]
    return (f"{kind}{i} {PLAN[i][0]} {PLAN[i][1]}: {r['lifecycle_stage']} IS {r['in_sample']['sharpe_ratio']:.2f} "
            f"OOS {r['out_of_sample']['sharpe_ratio']:.2f} DSR {t['deflated_sharpe']['dsr']:.3f} "
            f"PSR {t['psr_oos']:.3f} evidence {t['evidence']:.3f} PBO {(t['pbo'] or {}).get('pbo')} "
            f"K {t['effective_trials']:.1f}")


@pytest.mark.parametrize("i", range(len(PLAN)))
def test_noise_is_rejected(finished, i):
    job = finished[("noise", i)]
    assert job["status"] == "succeeded", (job["error"], job["log"])
    print(_line("noise", i, job))
    result = job["result"]
    assert result["lifecycle_stage"] == "REJECTED", _line("noise", i, job)
    assert result["confidence"] == 0.0 and result["reasons"]
    assert result["trust"]["evidence"] < 0.95 or result["out_of_sample"]["sharpe_ratio"] <= 0


@pytest.mark.parametrize("i", range(len(PLAN)))
def test_a_moderate_edge_is_paper_or_better(finished, i):
    job = finished[("edge", i)]
    assert job["status"] == "succeeded", (job["error"], job["log"])
    print(_line("edge", i, job))
    result = job["result"]
    assert result["lifecycle_stage"] in ("PAPER", "LIVE_CANDIDATE"), _line("edge", i, job)
    assert 1.0 < result["out_of_sample"]["sharpe_ratio"] < 4.0
    trust = result["trust"]
    assert trust["psr_oos"] > 0.95 and trust["deflated_sharpe"]["dsr"] > 0.95
    # runs: every trial run; n_trials: the distinct parameter sets among them
    assert 1 <= trust["effective_trials"] < trust["n_trials"] <= trust["runs"] == PLAN[i][1]
    assert result["confidence"] >= 0.05


@pytest.mark.parametrize("kind", ["noise", "edge"])
def test_a_walk_forward_is_judged_over_all_its_folds(finished, kind):
    job = finished[(kind, "walk_forward")]
    assert job["status"] == "succeeded", (job["error"], job["log"])
    result = job["result"]
    trust = result["trust"]
    assert len(trust["folds"]) == 4 and trust["runs"] == 4 * 300   # n_iterations per fold
    assert trust["n_trials"] <= trust["runs"]
    assert trust["pbo"]["n_combinations"] == 4 * 12_870       # every fold's CSCV, pooled
    if kind == "noise":
        assert result["lifecycle_stage"] == "REJECTED"
        assert trust["wfe"] < 0.8
    else:
        assert result["lifecycle_stage"] in ("PAPER", "LIVE_CANDIDATE"), result["reasons"]
        assert 0.5 <= trust["wfe"] < 2.0 and trust["psr_oos"] > 0.95

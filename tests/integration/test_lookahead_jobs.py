"""Strategies that read a later bar only somewhere: inside the holdout, inside one fold,
in the last bars, or only with some parameters. Each job ends failed or its configuration
REJECTED, naming the lookahead (the services the tasks call, driven in-process)."""
from __future__ import annotations

import sys

import pytest

from app.config import load_settings
from app.db import market_data as md
from app.db.session import session_scope
from tests.conftest import random_candles
from tests.steps import run_job

START = 1_700_000_000_000 // 300_000 * 300_000
STEP = 300_000
BARS = 3000


@pytest.fixture
def settings(db_url, tmp_path, plugin_dir):
    with session_scope(db_url) as session:
        md.upsert_candles(session, "binanceus", "BTC/USDT", "5m",
                          random_candles(BARS, seed=21, start_ms=START, step_ms=STEP, vol=0.004))
    sys.path.insert(0, str(plugin_dir))
    yield load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)})
    sys.path.remove(str(plugin_dir))


def run(settings, **body) -> dict:
    return run_job(settings, {"symbol": "BTC/USDT", "exchange": "binanceus", "timeframe": "5m",
                              "optimizer": "random", "start": START, "min_trades": 1, "seed": 4,
                              **body})


def at(bar: int) -> int:
    return START + bar * STEP


def assert_failed_naming_lookahead(job, bar_at_least: int):
    assert job["status"] == "failed", job
    assert "peeks ahead: target at bar" in job["error"] and "fix the strategy" in job["error"]
    bar = int(job["error"].split("target at bar ")[1].split(" ")[0])
    assert bar >= bar_at_least


def test_a_peek_only_inside_the_holdout_fails_the_job(settings):
    split = int(round(BARS * 0.7))
    job = run(settings, strategy="PEEK_BETWEEN", n_iterations=20, run_validation=True,
              params={"peek_from": at(split), "peek_until": at(BARS)})
    assert_failed_naming_lookahead(job, split)


def test_a_peek_only_in_the_last_bars_fails_the_job(settings):
    job = run(settings, strategy="PEEK_BETWEEN", n_iterations=20,
              params={"peek_from": at(BARS - 6), "peek_until": at(BARS)})
    assert_failed_naming_lookahead(job, BARS - 6)


def test_a_peek_only_inside_one_fold_fails_the_walk_forward(settings):
    # folds of 400 test bars after 1400 training bars: fold 1 tests bars 1800..2200
    job = run(settings, strategy="PEEK_BETWEEN", n_iterations=8,
              validation={"method": "walk_forward", "folds": 3, "test_bars": 400, "train_bars": 1400},
              params={"peek_from": at(1900), "peek_until": at(1950)})
    assert_failed_naming_lookahead(job, 1900)


def test_a_peek_with_some_parameters_only_is_found_in_the_winner_and_rejected(settings):
    # The defaults are honest, so the job starts; the search finds the cheating parameters
    # the best by far, and the winner's own check over every bar rejects it.
    job = run(settings, strategy="PEEK_SOMETIMES", n_iterations=30, run_validation=True)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["best_params"]["period"] > 40
    assert result["lifecycle_stage"] == "REJECTED" and result["confidence"] == 0.0
    assert result["reasons"][0].startswith("lookahead check failed: PEEK_SOMETIMES peeks ahead")
    assert result["trust"]["lookahead"]["strategy"] == "PEEK_SOMETIMES"


def test_a_walk_forward_whose_fold_winner_peeks_is_rejected(settings):
    job = run(settings, strategy="PEEK_SOMETIMES", n_iterations=16,
              validation={"method": "walk_forward", "folds": 2, "test_bars": 500})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["lifecycle_stage"] == "REJECTED"
    assert any(r.startswith("lookahead check failed") for r in result["reasons"])

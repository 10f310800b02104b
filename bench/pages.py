"""What the research pages ask for, on a job of 100,000 trials over a million candles, on
Postgres: each data route's answer time (median of 5, through the Flask app, JSON
included) and size, and what keeping the chart costs the finish.

Prints, never asserts.

    .venv/bin/python bench/pages.py [--trials 100000] [--candles 1000000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app import create_app  # noqa: E402
from app.backtest.engine import BacktestConfig  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db import market_data as md  # noqa: E402
from app.db import training as repo  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import dispose_engines, session_scope  # noqa: E402
from app.services import charts, jobs  # noqa: E402
from app.strategies import get_strategy  # noqa: E402
from app.strategies.runner import run_strategy, run_window  # noqa: E402
from tests.conftest import random_candles  # noqa: E402
from tests.services import create_pg_database, drop_pg_database  # noqa: E402

STEP = 60_000
START = 1_600_000_020_000 // STEP * STEP


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--candles", type=int, default=1_000_000)
    args = parser.parse_args()
    url, name = create_pg_database()
    try:
        with tempfile.TemporaryDirectory() as home:
            upgrade(url)
            settings = load_settings({"DATABASE_URL": url, "TRAD_HOME": home, "TRAD_API_OPEN": "1"})
            candles = random_candles(args.candles, seed=3, start_ms=START, step_ms=STEP, vol=0.001)
            t0 = time.perf_counter()
            with session_scope(url) as s:
                md.upsert_candles(s, "bench", "BTC/USDT", "1m", candles)
            print(f"{args.candles:,} candles stored in {time.perf_counter() - t0:.1f} s")
            job_id = jobs.submit(settings, {
                "strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "bench",
                "timeframe": "1m", "optimizer": "random", "n_iterations": args.trials,
                "start": int(candles.ts[0]), "end": int(candles.ts[-1]), "min_trades": 0,
                "run_validation": True}, lambda job_id, priority: None)["job_id"]
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for a in range(0, args.trials, 20_000):
                rows = [{"number": i, "params": {"fast": int(rng.integers(2, 200)),
                                                 "slow": int(rng.integers(10, 500)),
                                                 "allow_short": bool(rng.integers(0, 2))},
                         "state": "complete", "value": float(rng.normal()), "metrics": None,
                         "duration": 0.001} for i in range(a, min(args.trials, a + 20_000))]
                with session_scope(url) as s:
                    repo.insert_trials(s, job_id, 0, rows)
            print(f"{args.trials:,} trials stored in {time.perf_counter() - t0:.1f} s")
            strategy, params = get_strategy("SMA_CROSS"), {"fast": 20, "slow": 200}
            split = int(len(candles) * 0.7)
            config = BacktestConfig.for_timeframe("1m")
            ins = run_strategy(strategy, candles.slice(0, split), params, config)
            oos = run_window(strategy, candles, split, params, config)
            t0 = time.perf_counter()
            body = {**charts.winner_chart(candles.ts[:split], ins, candles.ts[split:], oos,
                                          config.initial_capital),
                    "candles": charts.kept_candles(candles)}
            with session_scope(url) as s:
                repo.save_chart(s, job_id, body)
            print(f"chart kept by the finish: {time.perf_counter() - t0:.2f} s "
                  f"({len(body['t']):,} points, {body['trades_total']:,} trades)")
            client = create_app({"settings": settings}).test_client()
            routes = [f"/api/v2/training/{job_id}/chart?points=1500",
                      f"/api/v2/training/{job_id}/candles?points=20000",
                      f"/api/v2/training/{job_id}/trades?per_page=1000",
                      f"/api/v2/training/{job_id}/candles?points=1500",
                      f"/api/v2/training/{job_id}/trials/plot?points=2000",
                      f"/api/v2/training/{job_id}/importance"]
            total = 0.0
            print(f"{'route':<40} {'median s':>9} {'KiB':>8}")
            for route in routes:
                times, size = [], 0
                for _ in range(5):
                    t0 = time.perf_counter()
                    answer = client.get(route)
                    times.append(time.perf_counter() - t0)
                    assert answer.status_code == 200, answer.get_json()
                    size = len(answer.data)
                median = statistics.median(times)
                total += 0.0 if "points=20000" in route else median
                print(f"{route.split(job_id)[1]:<40} {median:9.3f} {size / 1024:8.1f}")
            print("(candles?points=20000 is finer than the finish kept: the database merges them)")
            print(f"what a job's page asks (all but that one): {total:.2f} s "
                  f"({args.trials:,} trials, {args.candles:,} candles)")
    finally:
        dispose_engines()
        drop_pg_database(name)


if __name__ == "__main__":
    main()

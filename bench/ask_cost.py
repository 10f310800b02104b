"""What a bayesian round's ask costs against its backtests, in one process: a job's rounds
without the broker and the database (bench/job.py [3] measures them in a real job).

Round after round, as a job's finish runs them: ``draft_round`` asks the batched TPE
(what a job's ``stats.sampler_s`` counts), then ``score_batch`` backtests the round
(what its trials' durations count), over 1,000 random-walk 5m candles, objective
sharpe_ratio, min_trades 0. The sampler's compiled loops are warmed first (a worker's
start does that: workers/warmup.py). For each strategy and round size, the medians of
--repeat runs of the same job (this machine's speed drifts): the ask and the backtests
per round and their ratio, and the best value found.

An ask in a worker runs 1.5-2x slower than here: between rounds a worker does the
round's database and broker work, which leaves the ask's caches cold.

Prints, never asserts.

    .venv/bin/python bench/ask_cost.py [--trials 5000] [--batches 32,64] [--repeat 5]
                                       [--strategies SMA_CROSS,LIQUIDITY_SWEEP]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.backtest.engine import BacktestConfig  # noqa: E402
from app.optimize.batch_tpe import ask_batch  # noqa: E402
from app.optimize.objectives import get_objective  # noqa: E402
from app.optimize.rounds import PastTrial  # noqa: E402
from app.schemas import TrainingRequest  # noqa: E402
from app.services.training.plan import draft_round  # noqa: E402
from app.strategies import get_strategy  # noqa: E402
from app.strategies.cache import IndicatorCache  # noqa: E402
from app.strategies.runner import score_batch  # noqa: E402
from tests.conftest import random_candles  # noqa: E402


def run(strategy_name: str, trials: int, batch: int) -> tuple[int, float, float, float]:
    """One job's rounds: (rounds, ask s, backtest s, best value)."""
    request = TrainingRequest.model_validate({
        "strategy": strategy_name, "symbol": "BTC/USDT", "exchange": "binanceus",
        "timeframe": "5m", "optimizer": "bayesian", "n_iterations": trials, "min_trades": 0,
        "seed": 5, "batch_size": batch, "sampler_parts": 1})
    candles = random_candles(1000, seed=1, step_ms=300_000, vol=0.003)
    strategy, cache = get_strategy(strategy_name), IndicatorCache(candles)
    config = BacktestConfig(periods_per_year=105_120)
    objective = get_objective(request.objective)
    space = request.space()
    score_batch(strategy, candles, space.sample(4, 0), config, cache)   # compiled, warm
    warm = [PastTrial(i, p, float(i % 7), {}) for i, p in enumerate(space.sample(60, 1))]
    ask_batch(space, warm, 8, 1, 2, 8)
    history: list[PastTrial] = []
    state, asked_s, backtest_s, rounds, best = {}, 0.0, 0.0, 0, -float("inf")
    while len(history) < trials:
        draft = draft_round(request, trials, 5, state, rounds, len(history), history, 2e-5)
        state, asked_s = draft.sampler_state, asked_s + draft.sampler_s
        params = [p for chunk in draft.chunks for p in chunk.params]
        t0 = time.perf_counter()
        scored = score_batch(strategy, candles, params, config, cache)
        backtest_s += time.perf_counter() - t0
        for p, metrics in zip(params, scored):
            value = objective(metrics)
            best = max(best, value)
            history.append(PastTrial(len(history), p, value, {}))
        rounds += 1
    return rounds, asked_s, backtest_s, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5_000)
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--strategies", default="SMA_CROSS,LIQUIDITY_SWEEP")
    parser.add_argument("--repeat", type=int, default=5,
                        help="jobs a case; the figures are their medians (the same job each time)")
    args = parser.parse_args()
    print(f"{args.trials:,} bayesian trials over 1,000 candles, in one process; medians of "
          f"{args.repeat} runs")
    for name in args.strategies.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            runs = [run(name, args.trials, batch) for _ in range(args.repeat)]
            rounds, best = runs[0][0], runs[0][3]
            ask = statistics.median(r[1] for r in runs) / rounds
            backtests = statistics.median(r[2] for r in runs) / rounds
            ratio = statistics.median(r[1] / r[2] for r in runs)
            print(f"{name:16s} rounds of {batch:3d}: {rounds:4d} rounds, ask {1e3 * ask:.2f} ms a "
                  f"round, backtests {1e3 * backtests:.2f} ms, ask / backtests {ratio:.2f} (runs "
                  f"{min(r[1] / r[2] for r in runs):.2f}-{max(r[1] / r[2] for r in runs):.2f}); "
                  f"best {best:.3f}")


if __name__ == "__main__":
    main()

"""What asking a bayesian round in parts costs in search quality, and buys in time.

A smooth 7-parameter objective with ripples over LIQUIDITY_SWEEP's space (known optimum,
no backtest, so only the sampler is measured). For sampler_parts 1, 2 and 4 and a few
seeds, rounds of 64 are asked exactly as jobs ask them (app.optimize.rounds.ask_round,
part by part from the same history); prints the mean best value after 250, 500, 1,000
and all trials, the mean sampler time on the critical path (the slowest part of each
round: what a round costs with a worker per part), and random search for reference.

Prints, never asserts.

    .venv/bin/python bench/sampler.py [--trials 1500] [--seeds 3] [--parts 1,2,4]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.optimize.rounds import PastTrial, ask_round, part_bounds  # noqa: E402
from app.optimize.space import build_space  # noqa: E402
from app.strategies import get_strategy  # noqa: E402

BATCH = 64
SPACE = build_space(get_strategy("LIQUIDITY_SWEEP"))


def objective(params: dict) -> float:
    """Maximum 0.3 + the ripples' best; every parameter matters, the categorical too."""
    value = 0.0
    for i, p in enumerate(SPACE.free):
        if hasattr(p, "choices"):
            value += 0.3 if params[p.name] == p.choices[1] else 0.0
            continue
        x = (params[p.name] - p.low) / (p.high - p.low)
        centre = 0.2 + 0.6 * ((i * 0.37) % 1)
        value -= (x - centre) ** 2 + 0.05 * math.cos(25 * x)
    return value


def search(seed: int, trials: int, parts: int | None) -> tuple[dict, float]:
    """Best value at checkpoints and critical-path sampler seconds; parts None: random."""
    marks = [m for m in (250, 500, 1000) if m < trials] + [trials]
    if parts is None:
        values = [objective(p) for p in SPACE.sample(trials, seed)]
        return {m: max(values[:m]) for m in marks}, 0.0
    history: list[PastTrial] = []
    critical = 0.0
    round_no = 0
    while len(history) < trials:
        batch = min(BATCH, trials - len(history))
        asked, slowest = [], 0.0
        for k, (a, b) in enumerate(part_bounds(batch, parts)):
            t0 = time.perf_counter()
            got, _ = ask_round(SPACE, "bayesian", seed, round_no, b - a, history,
                               part=k if parts > 1 else None, round_size=batch)
            slowest = max(slowest, time.perf_counter() - t0)
            asked += got
        critical += slowest
        for a in asked:
            history.append(PastTrial(len(history), a.params, objective(a.params), {}))
        round_no += 1
    values = [t.value for t in history]
    return {m: max(values[:m]) for m in marks}, critical


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1_500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", default="1,2,4")
    args = parser.parse_args()
    configs = [None] + [int(p) for p in args.parts.split(",")]
    for parts in configs:
        bests, times = [], []
        for seed in range(args.seeds):
            best, seconds = search(seed, args.trials, parts)
            bests.append(best)
            times.append(seconds)
        means = {m: statistics.mean(b[m] for b in bests) for m in bests[0]}
        label = "random search" if parts is None else f"bayesian, sampler_parts {parts}"
        cost = "" if parts is None else f"; sampler critical path {statistics.mean(times):.1f} s"
        print(f"{label:28s} mean best after " +
              ", ".join(f"{m:,}: {v:.4f}" for m, v in means.items()) + cost, flush=True)


if __name__ == "__main__":
    main()

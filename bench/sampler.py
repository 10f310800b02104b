"""Time to quality of the bayesian samplers: the batched TPE bayesian jobs ask now, optuna's
TPE as they asked it before, and random search.

Objectives with a known optimum and no backtest, so only the sampler is measured:
``sweep7``, a smooth 7-parameter objective with ripples over LIQUIDITY_SWEEP's space (ints,
stepped floats, a categorical; optimum about 0.6), and three standard test functions on
float spaces, maximised as minus their usual form: ``branin`` (2 parameters, optimum
-0.398), ``hartmann6`` (6 in [0, 1], optimum 3.322) and ``rosenbrock4`` (4 in [-2, 2],
optimum 0).

Rounds of --batch are asked exactly as jobs ask them (app.optimize.rounds.ask_round): the
batched TPE whole and in 2 parts, optuna's TPE in 2 parts (TRAD_SAMPLER_PARTS' default,
each part asked by its own worker), random search in one round. A job's wall time is
modelled round by round: the sampler's critical path (its slowest part), then the round's
backtests on --workers workers, a trial costing one LIQUIDITY_SWEEP backtest over 1,000
candles (measured here with app.strategies.runner.run_trials, or --trial-us). The broker,
the database and loading the history each round are left out. optuna gets --trials
trials; the batched TPE 4x and random search 20x as many, which they run in a fraction
of optuna's time, so the wall-time columns show what each does with the same time.

Per objective, the mean over --seeds of: the best value after a number of trials and
after a wall time; the time to reach optuna's final mean best (and in how many seeds);
the sampler's time per asked trial (all parts) and its share of the job's wall time.
Prints, never asserts.

    .venv/bin/python bench/sampler.py [--trials 400] [--seeds 3] [--objectives sweep7,...]
                                      [--samplers batch,batch2,optuna2,random]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.optimize.rounds import OPTUNA_TPE, PastTrial, ask_round, part_bounds  # noqa: E402
from app.optimize.space import build_space  # noqa: E402
from app.strategies import get_strategy  # noqa: E402
from app.strategies.base import FloatParam, Strategy  # noqa: E402

SPACE = build_space(get_strategy("LIQUIDITY_SWEEP"))


def objective(params: dict) -> float:
    """sweep7: maximum 0.3 + the ripples' best; every parameter matters, the categorical too."""
    value = 0.0
    for i, p in enumerate(SPACE.free):
        if hasattr(p, "choices"):
            value += 0.3 if params[p.name] == p.choices[1] else 0.0
            continue
        x = (params[p.name] - p.low) / (p.high - p.low)
        centre = 0.2 + 0.6 * ((i * 0.37) % 1)
        value -= (x - centre) ** 2 + 0.05 * math.cos(25 * x)
    return value


def _box(name: str, bounds: list[tuple[float, float]]):
    """A strategy that only declares a float space (the test functions' domain)."""
    params = tuple(FloatParam(f"x{i}", lo, hi, default=lo) for i, (lo, hi) in enumerate(bounds))
    return build_space(type(name, (Strategy,), {"name": name, "space": params,
                                                "positions": lambda self, c, p, cache: None}))


def branin(p: dict) -> float:
    x1, x2 = p["x0"], p["x1"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return -((x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(_H_ALPHA @ np.exp(-(_H_A * (x - _H_P) ** 2).sum(1)))


def rosenbrock4(p: dict) -> float:
    x = [p[f"x{i}"] for i in range(4)]
    return -sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))


OBJECTIVES = {
    "sweep7": (SPACE, objective),
    "branin": (_box("BENCH_BRANIN", [(-5, 10), (0, 15)]), branin),
    "hartmann6": (_box("BENCH_HARTMANN6", [(0, 1)] * 6), hartmann6),
    "rosenbrock4": (_box("BENCH_ROSENBROCK4", [(-2, 2)] * 4), rosenbrock4),
}
# key: (label, optimizer, parts, trials as a multiple of --trials)
SAMPLERS = {
    "batch": ("batched TPE", "bayesian", 1, 4),
    "batch2": ("batched TPE, 2 parts", "bayesian", 2, 4),
    "optuna2": ("optuna TPE, 2 parts", OPTUNA_TPE, 2, 1),
    "random": ("random search", "random", 1, 20),
}
OPTUNA_LABEL = SAMPLERS["optuna2"][0]


def backtest_seconds() -> float:
    """One LIQUIDITY_SWEEP trial over 1,000 5m candles, as a chunk runs it (one indicator
    cache over the chunk's trials): the median of three chunks of 300 after a warm-up."""
    from app.data.synthetic import synthetic_candles
    from app.strategies.runner import run_trials

    strategy, candles = get_strategy("LIQUIDITY_SWEEP"), synthetic_candles(1000, timeframe="5m",
                                                                           seed=1, start=0)
    run_trials(strategy, candles, SPACE.sample(20, 0))   # numba compiles here
    times = []
    for k in range(3):
        params = SPACE.sample(300, k + 1)
        t0 = time.perf_counter()
        run_trials(strategy, candles, params)
        times.append((time.perf_counter() - t0) / len(params))
    return statistics.median(times)


def search(space, fn, optimizer: str, parts: int, seed: int, trials: int, batch: int,
           trial_s: float, workers: int) -> dict:
    """One search: each trial's value and the modelled wall time at which it is done, and
    the sampler's total and critical-path seconds."""
    values, done_at = [], []
    asked_s = critical_s = clock = 0.0
    if optimizer == "random":
        t0 = time.perf_counter()
        points = space.sample(trials, seed)
        asked_s = critical_s = clock = time.perf_counter() - t0
        values = [fn(p) for p in points]
        done_at = [clock + (i + 1) * trial_s / workers for i in range(trials)]
        return {"values": values, "done_at": done_at, "asked_s": asked_s, "critical_s": critical_s}
    history: list[PastTrial] = []
    round_no, state = 0, {}
    while len(history) < trials:
        size = min(batch, trials - len(history))
        asked, slowest = [], 0.0
        for k, (a, b) in enumerate(part_bounds(size, parts)):
            t0 = time.perf_counter()
            # The state carried as a job carries it: kept from a whole round, not from parts.
            got, after = ask_round(space, optimizer, seed, round_no, b - a, history, state,
                                   part=k if parts > 1 else None, round_size=size)
            state = after if parts == 1 else state
            took = time.perf_counter() - t0
            asked_s += took
            slowest = max(slowest, took)
            asked += got
        critical_s += slowest
        clock += slowest
        for i, a in enumerate(asked):
            value = fn(a.params)
            history.append(PastTrial(len(history), a.params, value, {}))
            values.append(value)
            done_at.append(clock + (i + 1) * trial_s / workers)
        clock += size * trial_s / workers
        round_no += 1
    return {"values": values, "done_at": done_at, "asked_s": asked_s, "critical_s": critical_s}


def _best_at_trials(run: dict, n: int) -> float:
    return max(run["values"][:n])


def _best_at_time(run: dict, t: float) -> float:
    done = int(np.searchsorted(np.asarray(run["done_at"]), t, side="right"))
    return max(run["values"][:done]) if done else float("nan")


def _time_to(run: dict, target: float) -> float | None:
    best = np.maximum.accumulate(np.asarray(run["values"]))
    hit = np.flatnonzero(best >= target)
    return float(run["done_at"][hit[0]]) if hit.size else None


def _fmt(v: float) -> str:
    return "     -   " if v != v else f"{v:9.4f}"


def report(name: str, runs: dict[str, list[dict]], trials: int, trial_s: float, workers: int) -> None:
    marks = [m for m in (50, 100, 250, 500, 1000, 2000) if m < trials] + [trials]
    ends = {label: statistics.mean(r["done_at"][-1] for r in rs) for label, rs in runs.items()}
    horizon = max(ends.values())
    times = [t for t in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100) if t < horizon] + [horizon]
    print(f"\n{name}: mean of {len(next(iter(runs.values())))} seeds; a trial costs "
          f"{trial_s * 1e6:.0f} us on each of {workers} workers", flush=True)
    print(f"  {'best after N trials':24s}" + "".join(f"{m:>9,}" for m in marks))
    for label, rs in runs.items():
        print(f"  {label:24s}" + "".join(_fmt(statistics.mean(_best_at_trials(r, m) for r in rs))
                                        for m in marks))
    print(f"  {'best after t s of job':24s}" + "".join(f"{t:>9.3g}" for t in times))
    for label, rs in runs.items():
        print(f"  {label:24s}" + "".join(_fmt(statistics.mean(_best_at_time(r, t) for r in rs))
                                        for t in times))
    target = statistics.mean(max(r["values"]) for r in runs[OPTUNA_LABEL]) \
        if OPTUNA_LABEL in runs else None
    print(f"  {'':24s}{'trials':>9s}{'job s':>9s}{'us/ask':>9s}{'sampler %':>10s}"
          + (f"   time to optuna's best {target:.4f}" if target is not None else ""))
    for label, rs in runs.items():
        n = len(rs[0]["values"])
        per_ask = statistics.mean(r["asked_s"] for r in rs) / n
        share = statistics.mean(r["critical_s"] / r["done_at"][-1] for r in rs)
        line = f"  {label:24s}{n:>9,}{ends[label]:>9.2f}{per_ask * 1e6:>9.0f}{100 * share:>9.1f}%"
        if target is not None:
            hits = [t for t in (_time_to(r, target) for r in rs) if t is not None]
            line += (f"   {statistics.mean(hits):.3g} s ({len(hits)}/{len(rs)} seeds)" if hits
                     else "   not reached")
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=400, help="optuna's trials per search")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="trials a round (jobs: 32)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trial-us", type=float, default=None,
                        help="a trial's backtest cost (default: measured)")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    args = parser.parse_args()
    trial_s = args.trial_us * 1e-6 if args.trial_us else backtest_seconds()
    print(f"backtest: {trial_s * 1e6:.1f} us a trial (LIQUIDITY_SWEEP, 1,000 candles"
          f"{', given' if args.trial_us else ', measured'})", flush=True)
    for name in args.objectives.split(","):
        space, fn = OBJECTIVES[name]
        runs = {}
        for key in args.samplers.split(","):
            label, optimizer, parts, times = SAMPLERS[key]
            runs[label] = [search(space, fn, optimizer, parts, seed, args.trials * times,
                                  args.batch, trial_s, args.workers) for seed in range(args.seeds)]
        report(name, runs, args.trials, trial_s, args.workers)


if __name__ == "__main__":
    main()

"""Time to quality: how soon each optimizer finds a parameter set as good as a much longer
random search finds, in wall time, on one core.

Cases (``--only`` picks some by name):

- ``goog-sma``     SMA_CROSS (3 params) on GOOG daily (backtesting.py's bundled data, 252 bars/yr)
- ``eurusd-rsi``   RSI_MEAN_REVERSION (5) on EURUSD hourly (bundled, 24*5*52 bars/yr)
- ``5m-sweep``     LIQUIDITY_SWEEP (7) on 30,000 synthetic 5m candles (365*288 bars/yr)
- ``branin``, ``hartmann6``, ``rosenbrock4``: standard test functions (maximise -f) over a
  FloatParam space, the samplers alone (no backtest).

Every search runs in-process the way a job's rounds go, with the app's own functions:
grid is ``SearchSpace.grid()`` and random ``SearchSpace.sample(n, seed)``, their points in
the job's order; bayesian, cmaes and genetic ask rounds of the job's default batch
(``app.schemas.DEFAULT_BATCH``) with ``app.optimize.rounds.ask_round`` from the history
of ``PastTrial``, the sampler state carried from round to round. Backtests go through
``app.strategies.run_trials`` (a round, or a chunk of about 0.05 s of grid/random work, a
call), fee 0.001, objective sharpe_ratio; a trial with fewer than 10 trades is rejected
as in jobs (no best value; told to the sampler as the jobs' REJECTED_VALUE). Each search
gets a fresh indicator cache (a new job) and ``--seconds`` of wall time (asks, draws and
backtests all counted); the best valid value is recorded with the time each chunk or
round finished. Before any timing each strategy runs a few trials (numba compiles) and
each sequential optimizer asks three rounds (its imports).

The job size n (random's n_iterations; the cap for the others) is what the reference run
below does in ``--seconds`` (test functions: what random does in a short probe, at most
200,000); the grid's steps are chosen (``search_space`` steps, as a
user would narrow it) so it has at most n feasible points: a grid sized to the budget.

Quality. Backtest cases: the reference is the best value of one random search ten
times as long (seed apart from the searches'), the target that value less 5 % of its
magnitude (less 0.05 at a Sharpe of 1). Test functions: within a fixed tolerance of the
known optimum (in the table). Time (and trials) to target is the median over ``--seeds``
seeds (grid: one run; of an even number, the worse middle one), with how many seeds got
there; "-" when the median did not. "best@t" is the median best value (test functions:
the gap to the optimum) at wall time t; "trials" the median trials done; "sampler" the
median share of wall time spent asking or drawing; "rejected" the share of trials under
10 trades, "repaired" of suggestions that broke a constraint and were replaced by a
random draw (ask_round's "trad:repaired" mark).

The reference is the maximum of a noisy landscape (one random search; a lucky spike can
set it), so read a case's row against the others, not as an absolute.

Prints, never asserts. About 4 minutes with the defaults on two cores.

    .venv/bin/python bench/time_to_quality.py [--seconds 2] [--seeds 3] [--only goog-sma,branin]
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.backtest import BacktestConfig, Candles  # noqa: E402
from app.data.synthetic import synthetic_candles  # noqa: E402
from app.optimize.objectives import get_objective  # noqa: E402
from app.optimize.rounds import PastTrial, ask_round  # noqa: E402
from app.optimize.space import SearchSpace, build_space  # noqa: E402
from app.schemas import DEFAULT_BATCH  # noqa: E402
from app.services.training.context import REJECTED_VALUE  # noqa: E402
from app.strategies import IndicatorCache, get_strategy, run_trials  # noqa: E402
from app.strategies.base import FloatParam, IntParam, Strategy  # noqa: E402

OPTIMIZERS = ("grid", "random", "bayesian", "cmaes", "genetic")
MIN_TRADES = 10
FEE = 0.001
REFERENCE_TIMES = 10       # the reference random search runs this many budgets
QUALITY_MARGIN = 0.05      # target = reference - 5 % of |reference|
CHUNK_S = 0.05             # grid/random work per run_trials call (app.optimize.chunks' floor)
FN_MAX_TRIALS = 200_000    # job size cap for the test functions (a trial costs microseconds)


# -- problems: something to search and a way to score a batch of parameter sets --------------

@dataclass
class Problem:
    name: str
    label: str
    space: SearchSpace
    # A fresh scorer (a new job: cold indicator cache): params -> value, None if rejected.
    scorer: Callable[[], Callable[[list[dict]], list[float | None]]]
    optimum: float | None = None     # test functions: the known maximum of -f
    tolerance: float | None = None


def _bundled(name: str) -> Candles:
    import backtesting.test as bundled

    frame = getattr(bundled, name).rename(columns=str.lower)
    return Candles.from_frame(frame)


def _backtest_problem(name: str, strategy_name: str, candles: Candles, what: str,
                      bars_per_year: float) -> Problem:
    strategy = get_strategy(strategy_name)
    config = BacktestConfig(fee=FEE, periods_per_year=bars_per_year)
    objective = get_objective("sharpe_ratio")
    space = build_space(strategy)
    run_trials(strategy, candles, space.sample(4, 0), config)   # numba compiles here, untimed

    def scorer():
        cache = IndicatorCache(candles)

        def score(param_sets: list[dict]) -> list[float | None]:
            metrics = run_trials(strategy, candles, param_sets, config, cache)
            return [objective(m) if m["num_trades"] >= MIN_TRADES else None for m in metrics]
        return score

    label = (f"{strategy_name} ({len(space.free)} params) on {what}, {len(candles):,} bars, "
             f"{bars_per_year:,.0f} bars/yr")
    return Problem(name, label, space, scorer)


class _Function(Strategy):
    """A test function's box as a strategy space, so build_space and the samplers take it;
    never backtested."""

    version = 1

    def positions(self, candles, params, cache):
        raise NotImplementedError("a test function, not a strategy")


def _branin(x):
    x1, x2 = x[:, 0], x[:, 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann6(x):
    inner = (_H6_A[None] * (x[:, None, :] - _H6_P[None]) ** 2).sum(axis=2)
    return -(_H6_ALPHA[None] * np.exp(-inner)).sum(axis=1)


def _rosenbrock(x):
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(axis=1)


def _function_problem(name: str, f, bounds: list[tuple[float, float]], minimum: float,
                      tolerance: float) -> Problem:
    space_ = tuple(FloatParam(f"x{i + 1}", lo, hi, default=(lo + hi) / 2)
                   for i, (lo, hi) in enumerate(bounds))
    strategy = type(name.upper(), (_Function,), {"name": name.upper(), "space": space_})()
    names = [p.name for p in space_]

    def scorer():
        def score(param_sets: list[dict]) -> list[float | None]:
            x = np.array([[p[k] for k in names] for p in param_sets], dtype=float)
            return (-f(x)).tolist()
        return score

    label = f"{name}, {len(bounds)}-D, min {minimum:g}, target within {tolerance:g}"
    return Problem(name, label, build_space(strategy), scorer, -minimum, tolerance)


def problems(only: set[str] | None) -> list[Problem]:
    makers = {
        "goog-sma": lambda: _backtest_problem("goog-sma", "SMA_CROSS", _bundled("GOOG"),
                                              "GOOG 1d", 252),
        "eurusd-rsi": lambda: _backtest_problem("eurusd-rsi", "RSI_MEAN_REVERSION",
                                                _bundled("EURUSD"), "EURUSD 1h", 24 * 5 * 52),
        "5m-sweep": lambda: _backtest_problem(
            "5m-sweep", "LIQUIDITY_SWEEP", synthetic_candles(30_000, timeframe="5m", seed=7, start=0),
            "synthetic 5m", 365 * 288),
        "branin": lambda: _function_problem("branin", _branin, [(-5, 10), (0, 15)], 0.397887, 0.01),
        "hartmann6": lambda: _function_problem("hartmann6", _hartmann6, [(0, 1)] * 6, -3.32237, 0.1),
        "rosenbrock4": lambda: _function_problem("rosenbrock4", _rosenbrock, [(-2.048, 2.048)] * 4,
                                                 0.0, 1.0),
    }
    unknown = sorted((only or set()) - set(makers))
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(makers)}")
    return [make() for name, make in makers.items() if not only or name in only]


# -- one search --------------------------------------------------------------------------------

@dataclass
class Run:
    curve: list[tuple[float, float, int]]   # (seconds since start, best valid so far, trials)
    trials: int
    wall: float
    sampler: float
    rejected: int = 0      # fewer than MIN_TRADES trades
    repaired: int = 0      # an infeasible suggestion replaced by a random draw (ask_round)

    def best_at(self, t: float) -> float | None:
        best = None
        for when, value, _ in self.curve:
            if when > t:
                break
            best = value
        return best

    def time_to(self, target: float) -> tuple[float, float]:
        """Seconds and trials until the best reached ``target`` (inf, inf: never)."""
        return next(((when, trials) for when, value, trials in self.curve if value >= target),
                    (math.inf, math.inf))


class _Clock:
    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget
        self.best: float | None = None
        self.curve: list[tuple[float, float, int]] = []
        self.trials = 0
        self.rejected = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, values: list[float | None]) -> None:
        """A chunk's or round's values, known when it finished: each new best at that time,
        with the number of the trial that found it."""
        now = self.elapsed()
        for i, v in enumerate(values):
            if v is not None and math.isfinite(v) and (self.best is None or v > self.best):
                self.best = v
                self.curve.append((now, v, self.trials + i + 1))
        self.trials += len(values)
        self.rejected += sum(v is None for v in values)

    def over(self) -> bool:
        return self.elapsed() >= self.budget


def search(problem: Problem, optimizer: str, seed: int, n: int, budget: float,
           grid_space: SearchSpace | None, chunk: int) -> Run:
    """One search of at most ``n`` trials and ``budget`` seconds, as a job runs it."""
    score = problem.scorer()
    clock = _Clock(budget)
    done, sampler = 0, 0.0
    if optimizer in ("grid", "random"):
        points = grid_space.grid() if optimizer == "grid" else problem.space.sample(n, seed)
        sampler = clock.elapsed()
        while done < len(points) and not clock.over():
            values = score(points[done:done + chunk])
            done += len(values)
            clock.record(values)
        return Run(clock.curve, done, clock.elapsed(), sampler, clock.rejected)
    history: list[PastTrial] = []
    state: dict = {}
    round_no = repaired = 0
    while done < n and not clock.over():
        t0 = time.perf_counter()
        asked, state = ask_round(problem.space, optimizer, seed, round_no,
                                 min(DEFAULT_BATCH[optimizer], n - done), history, state)
        sampler += time.perf_counter() - t0
        repaired += sum(bool(a.system_attrs.get("trad:repaired")) for a in asked)
        values = score([a.params for a in asked])
        for a, v in zip(asked, values):
            history.append(PastTrial(len(history), a.params,
                                     REJECTED_VALUE if v is None else v, a.system_attrs))
        done += len(values)
        clock.record(values)
        round_no += 1
    return Run(clock.curve, done, clock.elapsed(), sampler, clock.rejected, repaired)


def warm_samplers(space: SearchSpace) -> None:
    """Three untimed rounds of each sequential optimizer: its first asks import modules
    (cmaes pulls in scipy: over a second) that a process pays once, not a search."""
    rng = np.random.default_rng(0)
    for optimizer in OPTIMIZERS[2:]:
        history: list[PastTrial] = []
        state: dict = {}
        for round_no in range(3):
            asked, state = ask_round(space, optimizer, 0, round_no, DEFAULT_BATCH[optimizer],
                                     history, state)
            history += [PastTrial(len(history) + i, a.params, float(rng.normal()), a.system_attrs)
                        for i, a in enumerate(asked)]


def reference(problem: Problem, seconds: float, seed: int) -> tuple[float | None, int, float]:
    """A long random search, drawn in pieces: its best, its trials and its seconds."""
    score = problem.scorer()
    clock = _Clock(seconds)
    done, piece = 0, 0
    while not clock.over():
        points = problem.space.sample(512, seed * 100_003 + piece)
        clock.record(score(points))
        done += len(points)
        piece += 1
    return clock.best, done, clock.elapsed()


def sized_grid(space: SearchSpace, n: int) -> SearchSpace:
    """The space with search_space steps so its feasible grid has at most ``n`` points (the
    same number of points on every numeric axis, as many as fit; categoricals whole)."""
    numeric = [p for p in space.free if isinstance(p, (IntParam, FloatParam))]

    def with_points(k: int) -> SearchSpace:
        narrowed = {}
        for p in numeric:
            span = p.high - p.low
            if isinstance(p, IntParam):
                step = max(1, round(span / (k - 1)))
            elif p.step:
                step = max(p.step, round(span / (k - 1) / p.step) * p.step)
            else:
                step = span / (k - 1)
            narrowed[p.name] = {"step": step}
        return build_space(space.strategy, space.fixed, narrowed)

    # Rounded steps make the size a staircase in k: walk it up to the first size over n.
    longest = max((p.high - p.low) // p.step + 1 if isinstance(p, IntParam) else
                  int((p.high - p.low) / p.step + 1e-9) + 1 if p.step else 10_000
                  for p in numeric) if numeric else 2
    best = with_points(2)
    for k in range(3, min(longest, 10_000) + 1):
        candidate = with_points(k)
        if candidate.feasible_grid_size() > n:
            break
        best = candidate
    return best


# -- the table ---------------------------------------------------------------------------------

# Medians of the seeds; of an even number, the worse middle one.

def _fmt_reached(reached: list[tuple[float, float]]) -> str:
    """Median seconds (and trials) to target, with the seeds that got there."""
    got = f"{sum(math.isfinite(s) for s, _ in reached)}/{len(reached)}"
    seconds = statistics.median_high([s for s, _ in reached])
    trials = statistics.median_high([n for _, n in reached])
    if not math.isfinite(seconds):
        return f"- | - | {got}"
    return f"{seconds:.{3 if seconds < 0.1 else 2}f} s | {trials:,.0f} | {got}"


def _fmt_best(values: list[float | None], optimum: float | None) -> str:
    m = statistics.median_low([-math.inf if v is None else v for v in values])
    if not math.isfinite(m):
        return "-"
    return f"{optimum - m:.3g}" if optimum is not None else f"{m:.3f}"


def run_case(problem: Problem, seconds: float, seeds: int) -> None:
    start = time.perf_counter()
    warm_samplers(problem.space)
    if problem.optimum is None:
        ref, ref_trials, ref_s = reference(problem, REFERENCE_TIMES * seconds, seed=999)
        n = max(DEFAULT_BATCH["bayesian"], int(ref_trials / ref_s * seconds))
        target = None if ref is None else ref - QUALITY_MARGIN * abs(ref)
        head = (f"reference: random search, {ref_s:.0f} s, {ref_trials:,} trials, best "
                f"{ref if ref is None else round(ref, 3)}; target >= "
                f"{target if target is None else round(target, 3)}")
    else:
        # No reference needed; the job size is what random draws and scores in the budget.
        _, probe_trials, probe_s = reference(problem, min(0.5, seconds / 4), seed=999)
        n = min(FN_MAX_TRIALS, int(probe_trials / probe_s * seconds))
        target = problem.optimum - problem.tolerance
        head = f"target: -f within {problem.tolerance:g} of the optimum; cells best@t: gap to it"
    grid_space = sized_grid(problem.space, n)
    per_trial = seconds / n
    chunk = max(1, min(5_000, int(CHUNK_S / per_trial)))
    grid_n = grid_space.feasible_grid_size()
    marks = [seconds / 8, seconds / 4, seconds / 2, seconds]
    print(f"\n### {problem.name}: {problem.label}")
    print(f"{head}; job size n = {n:,}; grid {grid_n:,} points\n")
    print("| optimizer | time to target | trials to target | seeds there | " +
          " | ".join(f"best@{m:g}s" for m in marks) + " | trials | sampler | rejected | repaired |")
    print("|---" * (8 + len(marks)) + "|")
    for optimizer in OPTIMIZERS:
        runs = [search(problem, optimizer, seed, n, seconds, grid_space, chunk)
                for seed in (range(1) if optimizer == "grid" else range(seeds))]
        reached = [r.time_to(target) if target is not None else (math.inf, math.inf) for r in runs]
        cells = [_fmt_best([r.best_at(m) for r in runs], problem.optimum) for m in marks]
        trials = int(statistics.median([r.trials for r in runs]))
        share = statistics.median([r.sampler / r.wall for r in runs])
        rejected = statistics.median([r.rejected / max(r.trials, 1) for r in runs])
        repaired = statistics.median([r.repaired / max(r.trials, 1) for r in runs])
        print(f"| {optimizer} | {_fmt_reached(reached)} | " + " | ".join(cells) +
              f" | {trials:,} | {share:.0%} | {rejected:.0%} | {repaired:.0%} |", flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s for this case)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="wall time per search")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per stochastic optimizer")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    import optuna

    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    print(f"time to quality, {args.seconds:g} s a search, {args.seeds} seeds; python "
          f"{platform.python_version()}, optuna {optuna.__version__}, {os.cpu_count()} cpus, "
          f"one core used")
    started = time.perf_counter()
    for problem in problems(only):
        run_case(problem, args.seconds, args.seeds)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

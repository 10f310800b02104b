"""Engine benchmark: SMA_CROSS over a 20 x 20 (fast, slow) grid, one core, three ways.

Prints trials per second on 1,000, 100,000 and 1,000,000 synthetic candles for
  - Trad: ``app.strategies.run_trials``, the workers' path (``score_batch``: the signal
    trial by trial, the engine with fees over a block of trials in one compiled call,
    every metric);
  - a plain-numpy baseline written here, the way a quant writes it by hand;
  - a hand-fused numba loop written here: one pass per trial, nothing else;
the ratios Trad/numpy and Trad/fused, and, for where Trad's time goes, its batch engine
alone (``evaluate_batch`` over the grid's targets made beforehand). The measurements take
turns, a repeat each, so a busy machine slows them alike. Never asserts.

The three compute the same objective, Trad's: a long-only target decided at a bar's
close and filled at the next open, ``fee`` on the notional of every fill (so entering
with all the equity leaves ``E / (1 + fee)`` in the market), marked to the close, an
open position closed at the last close, and the Sharpe ratio of the per-bar returns
(``ddof=1``) annualised. Each size checks it: the largest difference of Sharpe ratio
between Trad and each baseline over the grid is printed, with the best (fast, slow)
each picks; they must agree.

All three share the same work outside the trial: the SMAs of each distinct period are
computed once per series (Trad through its indicator cache, the baselines through a
dict), so the figures compare the per-trial path.

    .venv/bin/python bench/engine.py [--sizes 1000,100000,1000000]
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.backtest import BacktestConfig  # noqa: E402
from app.backtest.engine import evaluate_batch  # noqa: E402
from app.backtest.indicators import sma  # noqa: E402
from app.data.synthetic import synthetic_candles  # noqa: E402
from app.strategies import IndicatorCache, get_strategy, run_trials  # noqa: E402
from app.strategies.runner import BLOCK_BYTES, MIN_BLOCK_TRIALS  # noqa: E402

FEE = 0.001
PPY = 365 * 288  # 5-minute bars
GRID = [(f, s) for f in range(5, 105, 5) for s in range(110, 510, 20)]


def numpy_trial(open_, close, fast_ma, slow_ma):
    """Plain numpy, one trial, Trad's rules (see the module notes): the Sharpe ratio."""
    target = np.where(np.isnan(slow_ma) | np.isnan(fast_ma), 0.0,
                      (fast_ma > slow_ma).astype(np.float64))
    held = np.concatenate(([0.0], target[:-1]))           # the position during each bar
    before = np.concatenate(([0.0], held[:-1]))
    prev_close = np.concatenate(([close[0]], close[:-1]))
    factor = np.ones_like(close)
    stay = (held == 1.0) & (before == 1.0)
    enter = (held == 1.0) & (before == 0.0)
    leave = (held == 0.0) & (before == 1.0)
    factor[stay] = close[stay] / prev_close[stay]
    factor[enter] = close[enter] / open_[enter] / (1.0 + FEE)
    factor[leave] = open_[leave] / prev_close[leave] * (1.0 - FEE)
    if held[-1] == 1.0:
        factor[-1] *= 1.0 - FEE                             # closed at the last close
    rets = factor - 1.0
    sd = rets.std(ddof=1)
    return rets.mean() / sd * math.sqrt(PPY) if sd > 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def fused_trial(open_, close, fast_ma, slow_ma):
    """One compiled pass, Trad's rules: position, fill, fee, mark, Welford's Sharpe sums."""
    n = close.shape[0]
    held = 0.0
    mean = 0.0
    m2 = 0.0
    for t in range(n):
        want = 0.0
        if t > 0 and fast_ma[t - 1] > slow_ma[t - 1]:
            want = 1.0
        if want == 1.0 and held == 1.0:
            f = close[t] / close[t - 1]
        elif want == 1.0:
            f = close[t] / open_[t] / (1.0 + FEE)
        elif held == 1.0:
            f = open_[t] / close[t - 1] * (1.0 - FEE)
        else:
            f = 1.0
        if t == n - 1 and want == 1.0:
            f *= 1.0 - FEE
        held = want
        r = f - 1.0
        delta = r - mean
        mean += delta / (t + 1)
        m2 += delta * (r - mean)
    var = m2 / (n - 1)
    return mean / math.sqrt(var) * math.sqrt(PPY) if var > 0 else 0.0


def timed(fns, min_seconds: float) -> list[float]:
    """Best trials/s of each of ``fns`` (each runs some trials and returns how many), in
    turns until each has run ``min_seconds``: a load that comes and goes hits them alike."""
    best = [0.0] * len(fns)
    spent = [0.0] * len(fns)
    while min(spent) < min_seconds:
        for i, fn in enumerate(fns):
            if spent[i] >= min_seconds:
                continue
            t0 = time.perf_counter()
            count = fn()
            dt = time.perf_counter() - t0
            spent[i] += dt
            best[i] = max(best[i], count / dt)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"cpu {cpu}, one core")
    strategy = get_strategy("SMA_CROSS")
    print(f"{'candles':>10} | {'trad':>9} | {'numpy':>9} | {'fused':>9} | {'trad/numpy':>10} | "
          f"{'trad/fused':>10} | {'engine':>9} | max |dSharpe| numpy, fused | "
          f"best (fast, slow) trad / numpy / fused")
    for n in (int(x) for x in args.sizes.split(",")):
        candles = synthetic_candles(n, timeframe="5m", seed=42, start=0)
        # Fewer trials per repeat on long series keeps each measurement a few seconds.
        grid = GRID if n <= 100_000 else GRID[::8]
        params = [{"fast": f, "slow": s, "allow_short": False} for f, s in grid]
        cache = IndicatorCache(candles)
        config = BacktestConfig(fee=FEE, periods_per_year=PPY)
        smas = {p: sma(candles.close, p) for p in {x for pair in grid for x in pair}}
        for p in smas:
            cache.sma(p)
        close, open_ = candles.close, candles.open
        fused_trial(open_, close, smas[grid[0][0]], smas[grid[0][1]])  # compile
        run_trials(strategy, candles, params[:2], config, cache)

        # The engine column's targets, made beforehand: at most 64 MB of them.
        targets = np.stack([strategy.positions(candles, p, cache)
                            for p in params[:max(1, (64 << 20) // (8 * n))]])
        evaluate_batch(candles, targets[:2], config)  # compile

        def trad():
            return len(run_trials(strategy, candles, params, config, cache))

        def engine():
            # The batch engine alone, in blocks cut as score_batch cuts them.
            rows = BLOCK_BYTES // (8 * n)
            rows = rows if rows >= MIN_BLOCK_TRIALS else 1
            for a in range(0, len(targets), rows):
                evaluate_batch(candles, targets[a:a + rows], config)
            return len(targets)

        def plain():
            for f, s in grid:
                numpy_trial(open_, close, smas[f], smas[s])
            return len(grid)

        def fused():
            for f, s in grid:
                fused_trial(open_, close, smas[f], smas[s])
            return len(grid)

        rate_trad, rate_numpy, rate_fused, rate_engine = timed((trad, plain, fused, engine),
                                                                args.seconds)
        ours = np.array([m["sharpe_ratio"] for m in run_trials(strategy, candles, params, config, cache)])
        by_numpy = np.array([numpy_trial(open_, close, smas[f], smas[s]) for f, s in grid])
        by_fused = np.array([fused_trial(open_, close, smas[f], smas[s]) for f, s in grid])
        best = [grid[int(np.argmax(v))] for v in (ours, by_numpy, by_fused)]
        same = "same best" if best[0] == best[1] == best[2] else "BEST DIFFERS"
        print(f"{n:>10,} | {rate_trad:>9,.0f} | {rate_numpy:>9,.0f} | {rate_fused:>9,.0f} | "
              f"{rate_trad / rate_numpy:>10.2f} | {rate_trad / rate_fused:>10.2f} | "
              f"{rate_engine:>9,.0f} | {np.max(np.abs(ours - by_numpy)):.1e}, {np.max(np.abs(ours - by_fused)):.1e} | "
              f"{best[0]} / {best[1]} / {best[2]} ({same})")


if __name__ == "__main__":
    main()

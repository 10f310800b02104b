"""Engine benchmark: SMA_CROSS over a 20 x 20 (fast, slow) grid, one core, three ways.

Prints trials per second on 1,000, 100,000 and 1,000,000 synthetic candles for
  - Trad: ``app.strategies.run_trials`` (signal, engine with fees, every metric);
  - a plain-numpy baseline written here, the way a quant writes it by hand;
  - a hand-fused numba loop written here: one pass per trial, nothing else.
and the ratios Trad/numpy and Trad/fused in the same run. Never asserts.

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
from app.backtest.indicators import sma  # noqa: E402
from app.data.synthetic import synthetic_candles  # noqa: E402
from app.strategies import IndicatorCache, get_strategy, run_trials  # noqa: E402

FEE = 0.001
PPY = 365 * 288  # 5-minute bars
GRID = [(f, s) for f in range(5, 105, 5) for s in range(110, 510, 20)]


def numpy_trial(close, fast_ma, slow_ma):
    """Plain numpy, one trial: long while fast > slow, filled a bar later, close to close."""
    pos = np.where(np.isnan(slow_ma), 0.0, (fast_ma > slow_ma).astype(np.float64))
    held = np.concatenate(([0.0], pos[:-1]))  # decided at t's close, held from t+1
    rets = np.concatenate(([0.0], np.diff(close) / close[:-1])) * held
    trades = np.abs(np.diff(np.concatenate(([0.0], held))))
    rets = rets - trades * FEE
    equity = np.cumprod(1.0 + rets)
    sd = rets.std(ddof=1)
    sharpe = rets.mean() / sd * math.sqrt(PPY) if sd > 0 else 0.0
    peak = np.maximum.accumulate(equity)
    max_dd = float(np.max(1.0 - equity / peak))
    return sharpe, max_dd, int(trades.sum() // 2), float(equity[-1])


@njit(cache=True, nogil=True, error_model="numpy")
def fused_trial(close, fast_ma, slow_ma):
    """One compiled pass: position, return, fee, equity, Sharpe sums, drawdown, trades."""
    n = close.shape[0]
    held = 0.0
    equity = 1.0
    peak = 1.0
    max_dd = 0.0
    s1 = 0.0
    s2 = 0.0
    changes = 0
    for t in range(1, n):
        r = held * (close[t] / close[t - 1] - 1.0)
        want = 1.0 if fast_ma[t - 1] > slow_ma[t - 1] else 0.0
        if want != held:
            r -= FEE
            changes += 1
        held = want
        equity *= 1.0 + r
        s1 += r
        s2 += r * r
        if equity > peak:
            peak = equity
        elif 1.0 - equity / peak > max_dd:
            max_dd = 1.0 - equity / peak
    mean = s1 / (n - 1)
    var = (s2 - s1 * mean) / (n - 2)
    sharpe = mean / math.sqrt(var) * math.sqrt(PPY) if var > 0 else 0.0
    return sharpe, max_dd, changes // 2, equity


def timed(fn, min_seconds: float) -> float:
    """Best trials/s over repeats of ``fn`` (which runs some trials and returns how many)."""
    best = 0.0
    spent = 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        count = fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, count / dt)
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
          f"{'trad/fused':>10} | best (fast, slow) trad / numpy / fused")
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
        close = candles.close
        fused_trial(close, smas[grid[0][0]], smas[grid[0][1]])  # compile
        run_trials(strategy, candles, params[:2], config, cache)

        def trad():
            return len(run_trials(strategy, candles, params, config, cache))

        def plain():
            for f, s in grid:
                numpy_trial(close, smas[f], smas[s])
            return len(grid)

        def fused():
            for f, s in grid:
                fused_trial(close, smas[f], smas[s])
            return len(grid)

        rate_trad, rate_numpy, rate_fused = (timed(fn, args.seconds) for fn in (trad, plain, fused))
        trad_best = max(zip(run_trials(strategy, candles, params, config, cache), grid),
                        key=lambda x: x[0]["sharpe_ratio"])[1]
        numpy_best = max(grid, key=lambda g: numpy_trial(close, smas[g[0]], smas[g[1]])[0])
        fused_best = max(grid, key=lambda g: fused_trial(close, smas[g[0]], smas[g[1]])[0])
        print(f"{n:>10,} | {rate_trad:>9,.0f} | {rate_numpy:>9,.0f} | {rate_fused:>9,.0f} | "
              f"{rate_trad / rate_numpy:>10.2f} | {rate_trad / rate_fused:>10.2f} | "
              f"{trad_best} / {numpy_best} / {fused_best}")


if __name__ == "__main__":
    main()

"""What the research pages draw, cut down on the server so a page draws at once.

A job's winner is backtested in its finish anyway; what the charts need of that run (the
equity and its drawdown, in and out of sample, and the trades) is kept then, already
reduced to at most ``KEEP_POINTS`` points (``training_charts``, one row a job). A request
asks for fewer points if it likes (``points``), never for more bars than were kept.

Reduction keeps the shape a trader reads: for each bucket of bars the first, the lowest,
the highest and the last point (M4 aggregation, Jugel et al. 2014), so a drawdown's bottom
or a spike is never averaged away; candles are bucketed into bars of a coarser timeframe
(open of the first, high of the highest, low of the lowest, close of the last).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["KEEP_CANDLES", "KEEP_POINTS", "MAX_TRADES", "kept_candles", "merge_kept", "m4_indices", "winner_chart", "walk_forward_chart",
           "reduce_chart", "bucket_candles", "trials_plot"]

KEEP_POINTS = 4000
# The job's candles merged at its finish, so its page draws them without reading a
# million rows (finer detail than this is read from the database).
KEEP_CANDLES = 2000
MAX_TRADES = 20_000


def m4_indices(values: np.ndarray, points: int) -> np.ndarray:
    """Indices of at most ``points`` samples of ``values`` keeping each bucket's first,
    minimum, maximum and last (sorted, unique; every index when there are few enough).

    >>> m4_indices(np.array([0., 5, 1, 2, 9, 3, 4, 0]), 4).tolist()
    [0, 4, 7]
    """
    n = len(values)
    if n <= points:
        return np.arange(n)
    buckets = max(1, points // 4)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep = [np.array([0, n - 1])]
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        part = values[a:b]
        keep.append(np.array([a, a + int(np.argmin(part)), a + int(np.argmax(part)), b - 1]))
    return np.unique(np.concatenate(keep))


def _drawdown(equity: np.ndarray) -> np.ndarray:
    peak = np.maximum.accumulate(equity)
    return np.where(peak > 0, equity / peak - 1.0, 0.0)


@dataclass(frozen=True)
class _Segment:
    name: str           # "in_sample", "out_of_sample", or "fold 3"
    ts: np.ndarray      # bar open times, epoch ms
    equity: np.ndarray


def _trades(results) -> tuple[list[dict], int]:
    trades = [dict(t.to_dict(), segment=segment) for segment, r in results for t in r.trades]
    return trades[-MAX_TRADES:], len(trades)


def _chart(segments: list[_Segment], trades: list[dict], trades_total: int, marks: list[dict],
           initial: float) -> dict:
    """The body kept for a job: one equity line (segments chained, each continuing from
    where the last ended), its drawdown, where each segment starts, and the trades."""
    ts_parts, eq_parts, seg_of = [], [], []
    scale = 1.0
    for i, seg in enumerate(segments):
        if not len(seg.ts):
            continue
        eq = seg.equity * scale
        ts_parts.append(seg.ts)
        eq_parts.append(eq)
        seg_of.append(np.full(len(seg.ts), i, dtype=np.int64))
        scale = float(eq[-1]) / initial if initial else 1.0
    if not ts_parts:
        return {"t": [], "equity": [], "drawdown": [], "segment": [], "segments": [],
                "marks": marks, "trades": trades, "trades_total": trades_total}
    ts, equity, seg = (np.concatenate(ts_parts), np.concatenate(eq_parts),
                       np.concatenate(seg_of))
    drawdown = _drawdown(equity)
    # Buckets keep the extremes of both lines: a drawdown's bottom is an equity low too,
    # but not always inside the same bucket's equity low once the peak moved.
    keep = np.union1d(m4_indices(equity, KEEP_POINTS // 2), m4_indices(drawdown, KEEP_POINTS // 2))
    return {"t": ts[keep].astype(np.int64).tolist(),
            "equity": [round(float(v), 6) for v in equity[keep]],
            "drawdown": [round(float(v), 8) for v in drawdown[keep]],
            "segment": seg[keep].tolist(), "segments": [s.name for s in segments],
            "bars": int(len(ts)), "marks": marks, "trades": trades, "trades_total": trades_total}


def winner_chart(train_ts: np.ndarray, in_sample, test_ts: np.ndarray | None, out_of_sample,
                 initial: float) -> dict:
    """A holdout (or whole-series) job's winner: in sample, then out of sample chained on."""
    segments = [_Segment("in_sample", np.asarray(train_ts), np.asarray(in_sample.equity))]
    results = [("in_sample", in_sample)]
    marks = []
    if out_of_sample is not None and test_ts is not None and len(test_ts):
        segments.append(_Segment("out_of_sample", np.asarray(test_ts),
                                 np.asarray(out_of_sample.equity)))
        results.append(("out_of_sample", out_of_sample))
        marks.append({"t": int(test_ts[0]), "label": "holdout starts"})
    trades, total = _trades(results)
    return _chart(segments, trades, total, marks, initial)


def walk_forward_chart(windows: list[tuple[int, np.ndarray, object]], initial: float) -> dict:
    """A walk-forward's stitched out-of-sample record: each fold's test window chained on
    the last, a mark where each fold's window starts."""
    segments = [_Segment(f"fold {fold}", np.asarray(ts), np.asarray(r.equity))
                for fold, ts, r in windows]
    marks = [{"t": int(ts[0]), "label": f"fold {fold}"} for fold, ts, _ in windows if len(ts)]
    trades, total = _trades([(f"fold {fold}", r) for fold, _, r in windows])
    return _chart(segments, trades, total, marks, initial)


def reduce_chart(body: dict, points: int) -> dict:
    """The kept chart with at most ``points`` points (the trades and candles are left out:
    they have their own routes)."""
    out = {k: v for k, v in body.items() if k not in ("trades", "candles")}
    n = len(body.get("t") or [])
    if n > points:
        eq = np.asarray(body["equity"], dtype=np.float64)
        dd = np.asarray(body["drawdown"], dtype=np.float64)
        keep = np.union1d(m4_indices(eq, max(4, points // 2)), m4_indices(dd, max(4, points // 2)))
        for key in ("t", "equity", "drawdown", "segment"):
            column = body[key]
            out[key] = [column[i] for i in keep]
    return out


def bucket_candles(ts, open_, high, low, close, volume, points: int) -> dict:
    """Candles merged ``k`` at a time (``k`` the least that gives at most ``points`` bars):
    each merged bar opens at its first bar's open and time, closes at its last's close,
    spans the highest high and lowest low."""
    n = len(ts)
    k = max(1, math.ceil(n / max(1, points)))
    if k == 1:
        idx = np.arange(n)
        return {"t": np.asarray(ts).tolist(), "open": np.asarray(open_).tolist(),
                "high": np.asarray(high).tolist(), "low": np.asarray(low).tolist(),
                "close": np.asarray(close).tolist(), "volume": np.asarray(volume).tolist(),
                "bars_per_point": 1, "bars": n} if len(idx) else _no_candles()
    starts = np.arange(0, n, k)
    ends = np.minimum(starts + k, n) - 1
    return {"t": np.asarray(ts)[starts].tolist(), "open": np.asarray(open_)[starts].tolist(),
            "high": np.maximum.reduceat(np.asarray(high), starts).tolist(),
            "low": np.minimum.reduceat(np.asarray(low), starts).tolist(),
            "close": np.asarray(close)[ends].tolist(),
            "volume": np.add.reduceat(np.asarray(volume), starts).tolist(),
            "bars_per_point": int(k), "bars": int(n)}


def _no_candles() -> dict:
    return {"t": [], "open": [], "high": [], "low": [], "close": [], "volume": [],
            "bars_per_point": 1, "bars": 0}


def trials_plot(numbers: np.ndarray, values: np.ndarray, params: list[dict], maximize: bool,
                points: int) -> dict:
    """What the search plots draw from a job's trials: the best value so far at every trial
    where it changed, and at most ``points`` trials for the scatter and slice plots (the
    best ones, and the rest evenly over the trial numbers)."""
    n = len(numbers)
    order = np.argsort(numbers, kind="stable")
    numbers, values = numbers[order], values[order]
    params = [params[i] for i in order]
    finite = np.where(np.isfinite(values), values, -np.inf if maximize else np.inf)
    running = np.maximum.accumulate(finite) if maximize else np.minimum.accumulate(finite)
    changed = np.flatnonzero(np.r_[True, running[1:] != running[:-1]]) if n else np.array([], int)
    best = {"number": numbers[changed].tolist(),
            "value": [None if not np.isfinite(v) else float(v) for v in running[changed]]}
    if n and (n - 1) not in set(changed.tolist()):
        best["number"].append(int(numbers[-1]))
        best["value"].append(best["value"][-1])
    if n > points:
        top = np.argsort(-finite if maximize else finite, kind="stable")[: max(1, points // 10)]
        spread = np.linspace(0, n - 1, points - len(top)).astype(np.int64)
        pick = np.union1d(top, spread)
    else:
        pick = np.arange(n)
    return {"trials": int(n), "best_so_far": best,
            "sample": {"number": numbers[pick].tolist(),
                       "value": [None if not np.isfinite(v) else float(v) for v in values[pick]],
                       "params": [params[i] for i in pick]}}


def kept_candles(candles) -> dict:
    """A job's candles (``app.backtest.candles.Candles``) as its finish keeps them."""
    return bucket_candles(candles.ts, candles.open, candles.high, candles.low, candles.close,
                          candles.volume, KEEP_CANDLES)


def merge_kept(kept: dict, points: int) -> dict:
    """Kept merged candles merged again into at most ``points`` bars."""
    n = len(kept["t"])
    if n <= points:
        return kept
    out = bucket_candles(*(np.asarray(kept[k]) for k in ("t", "open", "high", "low", "close",
                                                           "volume")), points)
    return {**out, "bars_per_point": out["bars_per_point"] * kept["bars_per_point"],
            "bars": kept["bars"]}

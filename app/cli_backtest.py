"""`trad backtest`: one strategy, one parameter set, one CSV file, no database."""
from __future__ import annotations

import json
import sys

import numpy as np

from app.backtest.candles import TIMEFRAMES
from app.backtest.engine import BacktestConfig
from app.data.csv_io import read_candles_csv
from app.data.timeutil import iso
from app.errors import InputError

__all__ = ["register"]


def _infer_timeframe(ts: np.ndarray) -> str | None:
    if len(ts) < 2:
        return None
    step = int(np.median(np.diff(ts)))
    for name, ms in TIMEFRAMES.items():
        if ms == step and name != "1M":
            return name
    if 28 * 86_400_000 <= step <= 31 * 86_400_000:
        return "1M"
    return None


def _fmt(name: str, value) -> str:
    if name in ("total_return", "cagr", "max_drawdown", "win_rate", "exposure"):
        return f"{value:.2%}"
    if name == "num_trades":
        return str(value)
    return f"{value:,.4f}"


def cmd_backtest(args) -> int:
    from app.strategies import get_strategy, run_strategy

    strategy = get_strategy(args.strategy)
    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"--params is not valid JSON ({exc.msg} at column {exc.colno})",
                         field="params", hint='e.g. --params \'{"fast": 10, "slow": 20}\'') from None
    if not isinstance(params, dict):
        raise InputError("--params must be a JSON object", field="params")
    candles = read_candles_csv(args.csv)
    timeframe = args.timeframe or _infer_timeframe(candles.ts)
    if args.periods_per_year is not None:
        ppy, source = args.periods_per_year, "given"
    elif timeframe is not None:
        from app.validation.calendars import measure_bars_per_year

        ppy, source = measure_bars_per_year(candles.ts, timeframe), "measured"
    else:
        raise InputError("cannot tell the timeframe from the file's bar spacing",
                         hint="pass --timeframe or --periods-per-year")
    config = BacktestConfig(fee=args.fee, slippage_bps=args.slippage_bps, periods_per_year=ppy)
    result = run_strategy(strategy, candles, params, config)
    if args.json:
        body = result.to_dict()
        for trade in body["trades"]:
            trade["entry_time"] = iso(trade["entry_time"])
            trade["exit_time"] = iso(trade["exit_time"])
        print(json.dumps(body))
        return 0
    out = sys.stdout
    out.write(f"{strategy.name} v{strategy.version} {json.dumps(strategy.validate(params))}\n")
    out.write(f"{len(candles)} bars {iso(int(candles.ts[0]))} .. {iso(int(candles.ts[-1]))}"
              f" ({timeframe or 'custom'}, {ppy:g} bars a year, {source}), fee {args.fee}, slippage "
              f"{args.slippage_bps} bps\n\n")
    for name, value in result.metrics.items():
        out.write(f"  {name:<15} {_fmt(name, value):>16}\n")
    trades = result.trades
    if trades:
        out.write(f"\n  {'entry':<20} {'exit':<20} {'side':>5} {'entry px':>12} {'exit px':>12} "
                  f"{'pnl':>12}  reason\n")
        shown = list(trades) if len(trades) <= 10 else [*trades[:5], None, *trades[-5:]]
        for t in shown:
            if t is None:
                out.write(f"  ... {len(trades) - 10} more\n")
                continue
            out.write(f"  {iso(t.entry_time):<20} {iso(t.exit_time):<20} {t.side:>5} "
                      f"{t.entry_price:>12.4f} {t.exit_price:>12.4f} {t.pnl:>12.2f}  {t.exit_reason}\n")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("backtest", help="backtest one parameter set on a CSV file")
    p.add_argument("--strategy", required=True)
    p.add_argument("--params", help='JSON object, e.g. \'{"fast": 10, "slow": 20}\'')
    p.add_argument("--csv", required=True, help="candles: header with time + OHLCV, or a Binance dump")
    p.add_argument("--fee", type=float, default=0.001, help="per fill, fraction of notional")
    p.add_argument("--slippage-bps", type=float, default=0.0)
    p.add_argument("--timeframe", help="default: from the bars' spacing")
    p.add_argument("--periods-per-year", "--bars-per-year", type=float,
                   help="annualise with this many bars a year (default: measured from the file's "
                        "timestamps: 365 days for a 24/7 market, the weekdays traded otherwise)")
    p.add_argument("--json", action="store_true", help='one object {"metrics": ..., "trades": [...]}')
    p.set_defaults(func=cmd_backtest)

"""`trad db ...` and `trad data ...`: schema upgrades and market data from the terminal."""
from __future__ import annotations

import json
import sys

from app.config import load_settings

__all__ = ["register"]


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start_value: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.start_value is None:
            self.start_value = done
        span = max(total - self.start_value, 1)
        share = min(max((done - self.start_value) / span, 0.0), 1.0)
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {share:6.1%}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.start_value is not None:
            self.stream.write("\n")
            self.stream.flush()


def _print_table(rows: list[dict], columns: list[str], out=None) -> None:
    out = out or sys.stdout
    if not rows:
        out.write("(none)\n")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    out.write("  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() + "\n")


def _report(report, as_json: bool) -> int:
    data = report.to_dict()
    if as_json:
        print(json.dumps(data))
    else:
        print(f"{data['exchange']} {data['symbol']} {data['timeframe']}: {data['rows']} rows "
              f"written ({data['first']} .. {data['last']}), {data['total_rows']} stored")
    return 0


def cmd_db_upgrade(args) -> int:
    from app.db.migrate import upgrade

    settings = load_settings()
    revision = upgrade(settings.database_url)
    url = settings.redacted()["database_url"]
    if args.json:
        print(json.dumps({"revision": revision, "database_url": url}))
    else:
        print(f"database at revision {revision} ({url})")
    return 0


def cmd_data_import(args) -> int:
    from app.services import market_data

    progress = Progress(f"import {args.file}")
    try:
        report = market_data.import_file(load_settings(), args.file, args.exchange, args.symbol,
                                         args.timeframe, progress=progress,
                                         calendar=args.calendar, bars_per_year=args.bars_per_year)
    finally:
        progress.close()
    return _report(report, args.json)


def cmd_data_fetch(args) -> int:
    from app.services import market_data

    progress = Progress(f"fetch {args.exchange} {args.symbol} {args.timeframe}")
    try:
        report = market_data.fetch(load_settings(), args.exchange, args.symbol, args.timeframe,
                                   since=args.since, until=args.until, progress=progress)
    finally:
        progress.close()
    return _report(report, args.json)


def cmd_data_synth(args) -> int:
    from app.services import market_data

    report = market_data.synthesize(load_settings(), args.symbol, args.timeframe, args.days,
                                    seed=args.seed, exchange=args.exchange, start=args.start)
    return _report(report, args.json)


def cmd_data_list(args) -> int:
    from app.services import market_data

    rows = [s.to_dict() for s in market_data.list_series(load_settings())]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            row["bars/year"] = f"{row['bars_per_year']:g} ({row['bars_per_year_source']})"
            row["synthetic"] = "synthetic" if row["synthetic"] else ""
        _print_table(rows, ["exchange", "symbol", "timeframe", "first", "last", "rows", "calendar",
                            "bars/year", "gaps", "missing_bars", "synthetic"])
    return 0


def cmd_data_gaps(args) -> int:
    from app.services import market_data

    gaps = market_data.find_gaps(load_settings(), args.exchange, args.symbol, args.timeframe,
                                 args.start, args.end)
    rows = [g.to_dict() for g in gaps]
    if args.json:
        print(json.dumps(rows))
    else:
        _print_table(rows, ["after", "before", "missing_bars"])
    return 0


def _series_args(p, exchange_help: str = "where the candles are from: binanceus, nasdaq, "
                                         "oanda, ... (any label)") -> None:
    p.add_argument("--exchange", required=True, help=exchange_help)
    p.add_argument("--symbol", required=True, help="as the market names it: BTC/USDT, GOOG, EURUSD")
    p.add_argument("--timeframe", required=True, help="1m, 5m, 15m, 1h, 4h, 1d, 1w, 1M, ...")


def register(subparsers) -> None:
    """Add `db` and `data` to the `trad` command's subparsers."""
    db = subparsers.add_parser("db", help="database schema").add_subparsers(dest="db_command",
                                                                            required=True)
    p = db.add_parser("upgrade", help="apply migrations")
    p.add_argument("--json", action="store_true", help='{"revision": ..., "database_url": ...}')
    p.set_defaults(func=cmd_db_upgrade)

    data = subparsers.add_parser("data", help="market data").add_subparsers(dest="data_command",
                                                                           required=True)
    p = data.add_parser("import", help="import a CSV (.csv, .csv.gz, Binance .zip)")
    p.add_argument("file")
    _series_args(p)
    p.add_argument("--calendar", help="trading calendar: XNYS, XLON, ... (exchange_calendars), "
                                      "24/7, 24/5 or weekdays; default: from the exchange label, "
                                      "else from the timestamps")
    p.add_argument("--bars-per-year", type=float, help="annualise with this many bars a year; "
                                                       "default: measured from the timestamps")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_import)

    p = data.add_parser("fetch", help="fetch candles from an exchange (resumes)")
    _series_args(p, "an exchange ccxt knows, e.g. binanceus")
    p.add_argument("--since", help="ISO date or epoch; default: after the last stored candle")
    p.add_argument("--until", help="ISO date or epoch; default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_fetch)

    p = data.add_parser("synth", help="store synthetic candles")
    p.add_argument("--symbol", required=True)
    p.add_argument("--timeframe", required=True)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--exchange", default="synthetic")
    p.add_argument("--start", help="ISO date of the first candle; default: days before now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_synth)

    p = data.add_parser("list", help="stored series: range, rows, gaps")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_list)

    p = data.add_parser("gaps", help="missing ranges of one series")
    _series_args(p)
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_gaps)


"""Market-data use cases: import a file, fetch from an exchange, make synthetic candles,
list what is stored, find its holes, and load a series for a job. Each owns its
transactions; callers pass settings and plain values."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.backtest.candles import Candles, timeframe_ms
from app.config import Settings
from app.data.timeutil import iso, now_ms, parse_time
from app.db import market_data as repo
from app.db.migrate import require_schema
from app.db.session import session_scope
from app.errors import InputError, did_you_mean

__all__ = [
    "WriteReport",
    "check_exchange_name",
    "import_file",
    "fetch",
    "synthesize",
    "list_series",
    "find_gaps",
    "load_series",
]

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
DEFAULT_FETCH_DAYS = 30


@dataclass(frozen=True)
class WriteReport:
    exchange: str
    symbol: str
    timeframe: str
    rows: int
    first: int | None
    last: int | None
    total_rows: int

    def to_dict(self) -> dict:
        return {"exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
                "rows": self.rows, "first": iso(self.first), "last": iso(self.last),
                "total_rows": self.total_rows}


def check_exchange_name(exchange: str) -> str:
    """An exchange is one ccxt knows, or ``synthetic``; returns it lower-cased."""
    import ccxt

    key = str(exchange).strip().lower()
    if key != SYNTHETIC and key not in ccxt.exchanges:
        raise InputError(f"unknown exchange {exchange!r}", field="exchange",
                         hint=did_you_mean(key, [*ccxt.exchanges, SYNTHETIC]))
    return key


def check_symbol(symbol: str) -> str:
    symbol = str(symbol).strip().upper()
    base, sep, quote = symbol.partition("/")
    if not (sep and base and quote):
        raise InputError(f"symbol {symbol!r} should be BASE/QUOTE", field="symbol",
                         hint="for example BTC/USDT")
    return symbol


def _check_timeframe(timeframe: str) -> str:
    timeframe_ms(timeframe)
    return timeframe


def _write(settings: Settings, exchange: str, symbol: str, timeframe: str,
           candles: Candles) -> WriteReport:
    with session_scope(settings.database_url) as session:
        repo.upsert_candles(session, exchange, symbol, timeframe, candles)
        total = repo.count_rows(session, exchange, symbol, timeframe)
    first = int(candles.ts[0]) if len(candles) else None
    last = int(candles.ts[-1]) if len(candles) else None
    log.info("stored exchange=%s symbol=%s timeframe=%s rows=%d first=%s last=%s",
             exchange, symbol, timeframe, len(candles), iso(first), iso(last))
    return WriteReport(exchange, symbol, timeframe, len(candles), first, last, total)


def import_file(settings: Settings, path: str, exchange: str, symbol: str, timeframe: str,
                progress: Callable[[int, int], None] | None = None) -> WriteReport:
    """Import a CSV (plain, .gz or Binance .zip) in one transaction: a file with a bad row
    imports nothing, and the error names the line and the fault."""
    from app.data.importer import read_for_import

    exchange = check_exchange_name(exchange)
    symbol = check_symbol(symbol)
    _check_timeframe(timeframe)
    require_schema(settings.database_url)
    candles = read_for_import(path, timeframe)
    if progress is not None:
        progress(0, len(candles))
    report = _write(settings, exchange, symbol, timeframe, candles)
    if progress is not None:
        progress(len(candles), len(candles))
    return report


def fetch(settings: Settings, exchange: str, symbol: str, timeframe: str,
          since: str | int | None = None, until: str | int | None = None, http_session=None,
          progress: Callable[[int, int], None] | None = None) -> WriteReport:
    """Fetch closed candles from an exchange, resuming after the last stored one.

    Without stored data and without ``since``, starts ``DEFAULT_FETCH_DAYS`` days back.
    Each page is stored in its own short transaction, so an interrupted fetch keeps what
    it got and the next one resumes from there.
    """
    from app.data.exchange import check_market, fetch_candles, make_exchange

    exchange = check_exchange_name(exchange)
    symbol = check_symbol(symbol)
    _check_timeframe(timeframe)
    if exchange == SYNTHETIC:
        raise InputError("the synthetic exchange is not fetched", field="exchange",
                         hint="use `trad data synth` to make synthetic candles")
    require_schema(settings.database_url)
    client = make_exchange(exchange, session=http_session)
    check_market(client, symbol, timeframe)
    step = timeframe_ms(timeframe)
    with session_scope(settings.database_url) as session:
        last = repo.last_timestamp(session, exchange, symbol, timeframe)
    start = parse_time(since, "since") if since is not None else None
    if last is not None and (start is None or start <= last):
        start = last + step
    if start is None:
        start = (now_ms() - DEFAULT_FETCH_DAYS * 86_400_000) // step * step
    start = -(-start // step) * step  # align up to a bar boundary
    end = parse_time(until, "until") if until is not None else None
    rows = 0
    first = last_ts = None
    for page in fetch_candles(client, symbol, timeframe, start, end, progress=progress):
        report = _write(settings, exchange, symbol, timeframe, page)
        rows += report.rows
        first = report.first if first is None else first
        last_ts = report.last
    with session_scope(settings.database_url) as session:
        total = repo.count_rows(session, exchange, symbol, timeframe)
    return WriteReport(exchange, symbol, timeframe, rows, first, last_ts, total)


def synthesize(settings: Settings, symbol: str, timeframe: str, days: float, seed: int = 1,
               exchange: str = SYNTHETIC, start: str | int | None = None) -> WriteReport:
    """Store synthetic candles (see ``app.data.synthetic``) for demos and tests."""
    from app.data.synthetic import synthetic_candles

    exchange = check_exchange_name(exchange)
    symbol = check_symbol(symbol)
    _check_timeframe(timeframe)
    if not days > 0:
        raise InputError("days must be positive", field="days")
    require_schema(settings.database_url)
    kwargs = {"start": parse_time(start, "start")} if start is not None else {}
    candles = synthetic_candles(timeframe=timeframe, days=days, seed=seed, **kwargs)
    return _write(settings, exchange, symbol, timeframe, candles)


def list_series(settings: Settings) -> list[repo.SeriesInfo]:
    require_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        return repo.list_series(session)


def find_gaps(settings: Settings, exchange: str, symbol: str, timeframe: str,
              start: str | int | None = None, end: str | int | None = None) -> list[repo.Gap]:
    exchange = check_exchange_name(exchange)
    symbol = check_symbol(symbol)
    _check_timeframe(timeframe)
    require_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        if repo.last_timestamp(session, exchange, symbol, timeframe) is None:
            raise InputError(f"no {timeframe} candles for {symbol} on {exchange}", field="symbol")
        return repo.find_gaps(session, exchange, symbol, timeframe,
                              parse_time(start, "start") if start is not None else None,
                              parse_time(end, "end") if end is not None else None)


def load_series(settings: Settings, exchange: str, symbol: str, timeframe: str,
                start: int | None = None, end: int | None = None) -> Candles:
    """A stored series as arrays; ``.fingerprint`` identifies it for caches and results."""
    with session_scope(settings.database_url) as session:
        return repo.load_candles(session, exchange, symbol, timeframe, start, end)


def refresh_watched(settings: Settings, http_session=None) -> list[dict]:
    """Fetch new candles for every series in ``TRAD_DATA_WATCH``. One series failing
    (exchange down, symbol delisted) is logged and does not stop the others."""
    from app.config import parse_watch_entry

    results = []
    for entry in settings.data_watch:
        exchange, symbol, timeframe = parse_watch_entry(entry)
        try:
            report = fetch(settings, exchange, symbol, timeframe, http_session=http_session)
            results.append({"series": entry, "ok": True, "rows": report.rows})
        except Exception as exc:  # noqa: BLE001 - reported per series, the loop goes on
            log.warning("watch fetch failed series=%s error=%s", entry, exc)
            results.append({"series": entry, "ok": False, "error": str(exc)})
    return results

"""Candles from exchanges through ccxt: paginated ``fetch_ohlcv`` within the rate limit.

Only closed candles are returned: the bar still forming at the exchange is left for the
next fetch, so stored data never changes under a finished job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np

from app.backtest.candles import TIMEFRAMES, Candles, timeframe_ms
from app.data.timeutil import iso, now_ms
from app.errors import InputError, TradError, did_you_mean

__all__ = ["make_exchange", "check_market", "fetch_candles", "ExchangeError"]

log = logging.getLogger(__name__)


class ExchangeError(TradError):
    """The exchange could not be reached or refused; retrying later may work."""

    code = "exchange_error"


def make_exchange(exchange_id: str, session=None):
    """A ccxt exchange instance with its rate limiter on. ``session`` replaces the
    ``requests.Session`` ccxt uses (tests answer it from recorded responses)."""
    import ccxt

    key = str(exchange_id).lower()
    if key not in ccxt.exchanges:
        raise InputError(f"unknown exchange {exchange_id!r}", field="exchange",
                         hint=did_you_mean(key, ccxt.exchanges))
    exchange = getattr(ccxt, key)({"enableRateLimit": True})
    if session is not None:
        exchange.session = session
    return exchange


def check_market(exchange, symbol: str, timeframe: str) -> None:
    """Fail clearly when the exchange has no such symbol or timeframe."""
    import ccxt

    if timeframe not in TIMEFRAMES:
        raise InputError(f"unknown timeframe {timeframe!r}", field="timeframe",
                         hint=did_you_mean(timeframe, TIMEFRAMES))
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise InputError(f"{exchange.id} has no {timeframe} candles", field="timeframe",
                         hint="known: " + ", ".join(exchange.timeframes))
    try:
        exchange.load_markets()
    except ccxt.BaseError as exc:
        raise ExchangeError(f"{exchange.id}: cannot load markets ({exc.__class__.__name__}: "
                            f"{str(exc)[:200]})") from exc
    if symbol not in exchange.markets:
        raise InputError(f"{exchange.id} has no market {symbol!r}", field="symbol",
                         hint=did_you_mean(symbol, exchange.markets))


def fetch_candles(exchange, symbol: str, timeframe: str, since: int, until: int | None = None,
                  page_limit: int = 1000, progress: Callable[[int, int], None] | None = None
                  ) -> Iterator[Candles]:
    """Yield pages of closed candles with ``since <= ts < until`` (default: now), oldest
    first, each page as ``Candles``. Stops when the exchange returns nothing new."""
    import ccxt

    step = timeframe_ms(timeframe)
    until = now_ms() if until is None else until
    # A bar is closed once its end time has passed; the one still forming is left out.
    last_closed = min(until - 1, (now_ms() // step) * step - step)
    cursor = since
    while cursor <= last_closed:
        try:
            rows = exchange.fetch_ohlcv(symbol, timeframe, since=cursor, limit=page_limit)
        except ccxt.BadSymbol as exc:
            raise InputError(f"{exchange.id}: {exc}", field="symbol") from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(f"{exchange.id}: fetch_ohlcv {symbol} {timeframe} since "
                                f"{iso(cursor)} failed ({exc.__class__.__name__}: "
                                f"{str(exc)[:200]})") from exc
        if not rows:
            break
        table = np.asarray(rows, dtype=np.float64)
        ts = table[:, 0].astype(np.int64)
        keep = (ts >= cursor) & (ts <= last_closed) & (ts % step == 0)
        if not keep.any():
            break
        table, ts = table[keep], ts[keep]
        # ccxt returns None volume on some venues; None became NaN above: no volume is 0.
        volume = np.nan_to_num(table[:, 5], nan=0.0)
        page = Candles(ts, table[:, 1], table[:, 2], table[:, 3], table[:, 4], volume)
        yield page
        if progress is not None:
            progress(int(ts[-1]), last_closed)
        cursor = int(ts[-1]) + step
        log.debug("fetched exchange=%s symbol=%s timeframe=%s rows=%d last=%s",
                  exchange.id, symbol, timeframe, len(page), iso(int(ts[-1])))

"""Trading calendars: how many bars a year a series has, and which missing bars are gaps.

A Sharpe ratio or a CAGR is annualised with the bars a year the market actually trades:
crypto trades 24/7 (365 days), a stock exchange about 252 sessions, FX about 260 days of
24 hours. Using 365 days for GOOG daily inflates its Sharpe ratio by ``sqrt(365/252)``
(1.30 instead of 1.08).

**Bars a year, measured** from the series' own timestamps (``measure_bars_per_year``):

- weekly and monthly bars: 52.18 and 12;
- a series on an exchange's calendar (``XNYS``, ...): its bars per session times the
  exchange's sessions a year, so a few days of a stock's 5m bars come out right too;
- a series with bars on Saturdays and Sundays (at least ``WEEKEND_SHARE`` of its bars,
  2/7 for a market that never closes; an FX provider's Sunday daily bar is 1/6), or
  spanning less than a week (too short to tell), trades 24/7: 365 days of ``day / bar``
  bars;
- otherwise it trades on weekdays: ``bars / weekdays in its span * 260.89`` (365.25 * 5 /
  7 weekdays a year). Holidays and short sessions are in the count of bars, so GOOG daily
  2004-2013 measures 251.6 and EURUSD hourly about 6,200. Bars on a Saturday or Sunday
  (FX opens on Sunday evening) count with the week they open.

A series can say otherwise (``trad data import ... --bars-per-year``) and so can a
request (``bars_per_year``): ``resolve_bars_per_year`` takes the request's, then the
series', then the measured value, and says which it used.

**Calendars** (``calendar_for``): a series' calendar is the one it was stored with, else
the exchange label's when the label names an exchange that ``exchange_calendars`` knows
(``nasdaq`` and ``nyse`` are ``XNYS``, ``lse`` is ``XLON``, ...), else ``24/7`` for a
crypto exchange or synthetic data, else inferred from the timestamps: ``24/7`` with
weekend bars, ``24/5`` when the weekdays are traded around the clock (FX), ``weekdays``
otherwise. ``find_gaps`` judges missing bars against it: an exchange's sessions (its
holidays and weekends are no gaps), FX's weekend closure, or every bar for 24/7.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from app.errors import InputError

__all__ = [
    "CalendarGap",
    "BarsPerYear",
    "DAY_MS",
    "WEEKDAYS_PER_YEAR",
    "calendar_for",
    "exchange_calendar_name",
    "find_gaps",
    "infer_calendar",
    "measure_bars_per_year",
    "resolve_bars_per_year",
]

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WEEKDAYS_PER_YEAR = 365.25 * 5 / 7
WEEKEND_SHARE = 0.2
_INTRADAY_COVERAGE = 0.8   # share of a day's bars a 24/5 market fills on an active day
# 1970-01-01 was a Thursday: weekday (Monday 0) of epoch day d is (d + 3) % 7.
_EPOCH_WEEKDAY = 3
CALENDARS_24_7 = ("24/7",)


@contextmanager
def _exchange_calendars():
    """``exchange_calendars``, with the one deprecation its own code sets off under pandas
    3.1 (``Series.values`` of tz-aware data, in ``ExchangeCalendar.__init__``) kept out
    of our logs and tests, only while it runs; every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Series\.values returning an ndarray that "
                                "drops timezone", category=DeprecationWarning)
        import exchange_calendars

        yield exchange_calendars


def _weekday(days: np.ndarray) -> np.ndarray:
    return (days + _EPOCH_WEEKDAY) % 7


def _trades_weekdays_only(days: np.ndarray) -> bool:
    """Whether a series (its bars' epoch days) is a weekday market: it spans a whole
    weekend (a shorter span cannot tell, and counts as 24/7) and fewer than
    ``WEEKEND_SHARE`` of its bars fall on one."""
    if int(days[-1]) - int(days[0]) < 7:
        return False
    return float(np.mean(_weekday(days) >= 5)) < WEEKEND_SHARE


def _step_ms(timeframe: str) -> int:
    from app.backtest.candles import timeframe_ms

    return timeframe_ms(timeframe)


def _sessions(name: str, first_ms: int, last_ms: int):
    import pandas as pd

    first = pd.Timestamp(int(first_ms), unit="ms").normalize()
    last = pd.Timestamp(int(last_ms), unit="ms").normalize()
    with _exchange_calendars() as xc:
        try:
            cal = xc.get_calendar(name, start=first - pd.Timedelta(days=7),
                                  end=last + pd.Timedelta(days=7))
        except (ValueError, xc.errors.CalendarError):  # a range the calendar does not cover
            return None
        return cal.sessions_in_range(first, last)


def _by_sessions(t: np.ndarray, name: str) -> float | None:
    """Bars per session (over the series' own sessions) times the exchange's sessions a
    year (over the series' span when it covers a year, else over the year to its end)."""
    span = _sessions(name, int(t[0]), int(t[-1]))
    if span is None or len(span) == 0:
        return None
    year_ms = 365.25 * DAY_MS
    first = min(int(t[0]), int(t[-1] - year_ms))
    sessions = _sessions(name, first, int(t[-1]))
    if sessions is None or len(sessions) == 0:
        return None
    per_year = len(sessions) / ((int(t[-1]) - first) / year_ms)
    return round(t.size / len(span) * per_year, 1)


def measure_bars_per_year(ts, timeframe: str, calendar: str | None = None) -> float:
    """Bars a year of the series with bar open times ``ts`` (epoch ms), on ``calendar``
    when it is an exchange's; see the module notes.

    >>> hourly = np.arange(0, 30 * 86_400_000, 3_600_000)            # 30 days, 24/7
    >>> measure_bars_per_year(hourly, "1h")
    8760.0
    >>> days = np.arange(4, 4 + 28) * 86_400_000                     # from a Monday, 4 weeks
    >>> weekdays = days[((days // 86_400_000) + 3) % 7 < 5]
    >>> measure_bars_per_year(weekdays, "1d")
    260.9
    """
    if timeframe == "1M":
        return 12.0
    if timeframe == "1w":
        return 365.25 / 7
    step = _step_ms(timeframe)
    t = np.asarray(ts, dtype=np.int64)
    nominal = 365.0 * DAY_MS / step
    if t.size < 2:
        return nominal
    if calendar not in (None, "24/7", "24/5", "weekdays") and step <= DAY_MS:
        measured = _by_sessions(t, calendar)
        if measured is not None:
            return measured
    days = t // DAY_MS
    if not _trades_weekdays_only(days):
        return nominal
    # Weekend bars (FX's Sunday evening) belong to the week they open: count from the
    # Monday after them.
    first, last = int(days[0]), int(days[-1])
    first += {5: 2, 6: 1}.get(int(_weekday(np.array(first))), 0)
    last -= {5: 1, 6: 2}.get(int(_weekday(np.array(last))), 0)
    weekdays = int(np.busday_count(np.datetime64(first, "D"), np.datetime64(last + 1, "D")))
    if weekdays < 1:
        return nominal
    return round(t.size / weekdays * WEEKDAYS_PER_YEAR, 1)


@dataclass(frozen=True)
class BarsPerYear:
    """The bars a year a job annualises with, and where the number came from
    (``request``, ``series`` or ``measured``)."""

    value: float
    source: str

    def to_dict(self) -> dict:
        return {"bars_per_year": self.value, "source": self.source}


def resolve_bars_per_year(ts, timeframe: str, request: float | None = None,
                          series: float | None = None, calendar: str | None = None) -> BarsPerYear:
    """The request's value, else the series', else the measured one.

    >>> resolve_bars_per_year([0, 86_400_000], "1d", request=252).to_dict()
    {'bars_per_year': 252.0, 'source': 'request'}
    """
    for value, source in ((request, "request"), (series, "series")):
        if value is not None:
            value = float(value)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"bars_per_year must be a positive number, got {value}",
                                 field="bars_per_year")
            return BarsPerYear(value, source)
    return BarsPerYear(measure_bars_per_year(ts, timeframe, calendar), "measured")


# -- calendars ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _known_names() -> dict[str, str]:
    with _exchange_calendars() as xc:
        return {name.upper(): xc.resolve_alias(name)
                for name in xc.get_calendar_names(include_aliases=True)}


def exchange_calendar_name(label: str) -> str | None:
    """The ``exchange_calendars`` calendar an exchange label names, or None.

    >>> exchange_calendar_name("nasdaq"), exchange_calendar_name("XLON"), exchange_calendar_name("binanceus")
    ('XNYS', 'XLON', None)
    """
    return _known_names().get(str(label).strip().upper())


def infer_calendar(ts, timeframe: str) -> str:
    """``24/7``, ``24/5`` or ``weekdays`` from the timestamps alone (see the module notes).

    >>> infer_calendar(np.arange(0, 14 * 86_400_000, 3_600_000), "1h")
    '24/7'
    """
    t = np.asarray(ts, dtype=np.int64)
    if t.size < 2 or timeframe in ("1w", "1M"):
        return "24/7"
    days = t // DAY_MS
    if not _trades_weekdays_only(days):
        return "24/7"
    step = _step_ms(timeframe)
    if step < DAY_MS:
        per_day = np.unique(days[_weekday(days) < 5], return_counts=True)[1]
        if per_day.size and float(np.median(per_day)) >= _INTRADAY_COVERAGE * DAY_MS / step:
            return "24/5"
    return "weekdays"


def calendar_for(exchange: str, ts, timeframe: str, stored: str | None = None) -> str:
    """The calendar of a series: the one stored with it, the exchange label's, ``24/7``
    for crypto exchanges and synthetic data, else inferred from ``ts``."""
    if stored:
        return stored
    name = exchange_calendar_name(exchange)
    if name is not None:
        return name
    import ccxt

    if str(exchange).lower() in ccxt.exchanges or str(exchange).lower() == "synthetic":
        return "24/7"
    return infer_calendar(ts, timeframe)


def check_calendar_name(name: str) -> str:
    """A calendar a person names (``--calendar``): an ``exchange_calendars`` name or alias,
    or ``24/7``, ``24/5``, ``weekdays``."""
    key = str(name).strip()
    if key in ("24/7", "24/5", "weekdays"):
        return key
    found = exchange_calendar_name(key)
    if found is None:
        from app.errors import did_you_mean

        raise InputError(f"unknown calendar {name!r}", field="calendar",
                         hint=did_you_mean(key.upper(), sorted({"24/7", "24/5", "weekdays",
                                                                *_known_names()})))
    return found


# -- gaps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarGap:
    """Expected bars missing between the stored bars opening at ``after`` and ``before``."""

    after: int
    before: int
    missing_bars: int


def _runs_of_missing(ts: np.ndarray, expected: np.ndarray) -> list[CalendarGap]:
    missing = np.setdiff1d(expected, ts, assume_unique=False)
    if missing.size == 0:
        return []
    # Each missing bar belongs to the hole between the stored bars around it.
    hole = np.searchsorted(ts, missing)
    inside = (hole > 0) & (hole < ts.size)
    gaps = []
    for h, count in zip(*np.unique(hole[inside], return_counts=True)):
        gaps.append(CalendarGap(int(ts[h - 1]), int(ts[h]), int(count)))
    return gaps


def _exchange_expected(name: str, ts: np.ndarray, timeframe: str, step: int) -> np.ndarray | None:
    import pandas as pd

    first = pd.Timestamp(int(ts[0]), unit="ms")
    last = pd.Timestamp(int(ts[-1]), unit="ms")
    with _exchange_calendars() as xc:
        try:
            cal = xc.get_calendar(name, start=(first - pd.Timedelta(days=7)).normalize(),
                                  end=(last + pd.Timedelta(days=7)).normalize())
        except (ValueError, xc.errors.CalendarError):  # a range the calendar does not cover
            return None
        if step >= DAY_MS:
            sessions = cal.sessions_in_range(first.normalize(), last.normalize())
            return sessions.as_unit("ms").asi8.astype(np.int64)
        index = cal.trading_index(first.normalize(), last.normalize(),
                                  period=f"{step // 60_000}min", intervals=False, force=True)
    expected = index.as_unit("ms").asi8.astype(np.int64)
    expected = expected[(expected >= ts[0]) & (expected <= ts[-1])]
    # A provider whose bars sit off the calendar's grid (bars opening on the hour, the
    # session on the half hour) would read as all gaps: judge its sessions instead.
    if expected.size and np.isin(ts, expected).mean() < 0.5:
        return None
    return expected


def find_gaps(ts, timeframe: str, calendar: str) -> list[CalendarGap]:
    """Holes in a series (bar open times ``ts``, sorted) that its ``calendar`` says
    should hold bars.

    >>> day = 86_400_000
    >>> friday, monday = 1 * day, 4 * day           # 1970-01-02 and 1970-01-05
    >>> [g.missing_bars for g in find_gaps([friday, monday], "1d", "24/7")]
    [2]
    >>> find_gaps([friday, monday], "1d", "weekdays")
    []
    """
    t = np.asarray(ts, dtype=np.int64)
    if t.size < 2:
        return []
    if timeframe == "1M":
        months = (t.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64))
        holes = np.flatnonzero(np.diff(months) > 1)
        return [CalendarGap(int(t[i]), int(t[i + 1]), int(months[i + 1] - months[i] - 1))
                for i in holes]
    step = WEEK_MS if timeframe == "1w" else _step_ms(timeframe)
    if step > DAY_MS and calendar not in CALENDARS_24_7 and timeframe != "1w":
        # Bars of several days on a market that closes: a hole is one longer than a bar and
        # a weekend.
        holes = np.flatnonzero(np.diff(t) > step + 2 * DAY_MS)
        return [CalendarGap(int(t[i]), int(t[i + 1]), int((t[i + 1] - t[i]) // step - 1))
                for i in holes]
    if calendar in CALENDARS_24_7 or timeframe == "1w":
        holes = np.flatnonzero(np.diff(t) > step)
        return [CalendarGap(int(t[i]), int(t[i + 1]), int((t[i + 1] - t[i]) // step - 1))
                for i in holes]
    if calendar not in ("24/5", "weekdays"):
        expected = _exchange_expected(calendar, t, timeframe, step)
        if expected is not None:
            return _runs_of_missing(t, expected)
        calendar = "weekdays"
    days = t // DAY_MS
    # bars a day the series trades (intraday): a missing weekday misses that many
    per_day = max(1, int(np.median(np.unique(days, return_counts=True)[1]))) if step < DAY_MS else 1
    gaps = []
    for i in np.flatnonzero(np.diff(t) > step):
        a, b = int(t[i]), int(t[i + 1])
        if calendar == "24/5":
            # FX closes from Friday evening to Sunday evening (New York time).
            if _weekday(np.array(days[i])) == 4 and _weekday(np.array(days[i + 1])) in (6, 0) \
                    and b - a <= 3 * DAY_MS:
                continue
            # a hole across a weekend (a holiday Friday or Monday) misses the closure's bars
            # in no market: leave its two days out of the count
            weekend = 2 * DAY_MS if int(days[i + 1]) - int(days[i]) >= 3 and any(
                _weekday(np.array(d)) == 5 for d in range(int(days[i]), int(days[i + 1]) + 1)) else 0
            gaps.append(CalendarGap(a, b, max(1, int((b - a - weekend) // step - 1))))
            continue
        # weekdays with unknown sessions: a hole is missing weekdays, or bars inside a day
        missed_days = int(np.busday_count(np.datetime64(int(days[i]) + 1, "D"),
                                          np.datetime64(int(days[i + 1]), "D"))) \
            if days[i + 1] > days[i] + 1 else 0
        if missed_days:
            gaps.append(CalendarGap(a, b, missed_days * per_day))
        elif days[i] == days[i + 1]:
            gaps.append(CalendarGap(a, b, int((b - a) // step - 1)))
    return gaps

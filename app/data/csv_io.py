"""Candles from CSV files, the forms traders bring: a header row with a time column and
OHLCV (any case), pandas' own ``to_csv`` output, Binance kline dumps (no header), plain,
``.csv.gz`` or the ``.zip`` files Binance publishes. Every fault names its file line."""
from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.backtest.candles import Candles
from app.errors import InputError

__all__ = ["CandleTable", "read_candle_table", "read_candles_csv"]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
TIME_NAMES = ("time", "timestamp", "date", "datetime", "open_time", "ts", "unnamed: 0", "")
BINANCE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                   "quote_volume", "trades", "taker_base_volume", "taker_quote_volume", "ignore")


@dataclass(frozen=True)
class CandleTable:
    """Parsed rows: ``ts`` in epoch ms and the five price columns, with the 1-based file
    line each row came from, so a later check can still name the line."""

    path: str
    ts: np.ndarray
    columns: dict
    lines: np.ndarray

    def to_candles(self) -> Candles:
        return Candles(self.ts, *(self.columns[c] for c in PRICE_COLUMNS))

    def fail(self, row: int, message: str, field: str | None = None) -> InputError:
        return InputError(f"{self.path}: line {int(self.lines[row])}: {message}", field=field)


def _open_text(path: Path) -> io.StringIO:
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                csvs = [m for m in members if m.lower().endswith(".csv")] or members
                if len(csvs) != 1:
                    raise InputError(f"{path}: a zip must hold one CSV, found {len(csvs)}")
                raw = archive.read(csvs[0])
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise InputError(f"no such file: {path}") from None
        raise InputError(f"{path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    try:
        return io.StringIO(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV (is it compressed without a .gz/.zip name?)") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _parse_times(values: pd.Series, path: str, lines: np.ndarray) -> np.ndarray:
    text = values.str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    is_number = numeric.notna().to_numpy()
    if is_number.mean() > 0.5 and not is_number.all():
        i = int(np.flatnonzero(~is_number)[0])
        raise InputError(f"{path}: line {int(lines[i])}: cannot read time {text.iloc[i]!r}",
                         field="time", hint="the other rows hold epoch numbers")
    if is_number.all():
        magnitude = float(np.nanmedian(np.abs(numeric.to_numpy(dtype=np.float64)))) if len(numeric) else 0.0
        # Epoch seconds until 5138, then milliseconds, microseconds (Binance spot dumps
        # since 2025), nanoseconds.
        scale = 1000.0 if magnitude < 1e11 else 1.0 if magnitude < 1e14 else 1e-3 if magnitude < 1e17 else 1e-6
        ms = numeric.to_numpy(dtype=np.float64) * scale
        return np.round(ms).astype(np.int64)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise InputError(f"{path}: line {int(lines[bad[0]])}: cannot read time {text.iloc[bad[0]]!r}",
                         field="time", hint="use ISO-8601 (2024-01-31T12:00:00Z) or epoch seconds/milliseconds")
    return parsed.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy()


def read_candle_table(path: str | Path) -> CandleTable:
    """Parse a candle CSV; raises ``InputError`` naming the line and the fault."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    stream = _open_text(path)
    first = stream.readline()
    stream.seek(0)
    if not first.strip():
        raise InputError(f"{path}: the file is empty")
    first_fields = [f.strip() for f in first.strip().split(",")]
    headerless = _is_number(first_fields[0])
    try:
        if headerless:
            if len(first_fields) < 6:
                raise InputError(f"{path}: line 1: a file without a header needs at least 6 "
                                 f"columns (time, open, high, low, close, volume), found {len(first_fields)}")
            frame = pd.read_csv(stream, header=None, dtype=str, skip_blank_lines=False,
                                keep_default_na=False, na_values=[""])
            frame = frame.rename(columns=dict(enumerate(BINANCE_COLUMNS)))
            offset = 1
        else:
            frame = pd.read_csv(stream, dtype=str, skip_blank_lines=False,
                                keep_default_na=False, na_values=[""])
            offset = 2
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: {str(exc).strip()} (a row has more fields than the header)") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    lines = np.arange(len(frame)) + offset
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    if frame.empty:
        raise InputError(f"{path}: no rows after the header")
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    if headerless:
        time_col = frame.columns[0]
    else:
        time_col = next((by_lower[n] for n in TIME_NAMES if n in by_lower), None)
        if time_col is None and str(frame.columns[0]).lower().startswith("unnamed"):
            time_col = frame.columns[0]
        missing = [c for c in PRICE_COLUMNS if c not in by_lower]
        if time_col is None:
            missing.insert(0, "time")
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; found "
                             f"{', '.join(str(c) for c in frame.columns)}",
                             hint="the header needs a time column (time, timestamp, date, "
                                  "datetime or open_time) and open, high, low, close, volume")
    columns = {}
    for name in PRICE_COLUMNS:
        raw = frame[by_lower[name]] if not headerless else frame[name]
        empty = raw.isna().to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise InputError(f"{path}: line {int(lines[i])}: no value for {name} (a truncated row?)",
                             field=name)
        values = pd.to_numeric(raw.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"{path}: line {int(lines[i])}: {name} is not a number: {raw.iloc[i]!r}",
                             field=name)
        columns[name] = values
    times = frame[time_col]
    empty = times.isna().to_numpy()
    if empty.any():
        raise InputError(f"{path}: line {int(lines[np.flatnonzero(empty)[0]])}: no time", field="time")
    ts = _parse_times(times, str(path), lines)
    table = CandleTable(str(path), ts, columns, lines)
    _check_rows(table)
    return table


def _check_rows(table: CandleTable) -> None:
    ts, c = table.ts, table.columns
    if len(ts) > 1:
        step = np.diff(ts)
        bad = np.flatnonzero(step <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            kind = "duplicate" if step[bad[0]] == 0 else "unsorted"
            raise table.fail(i, f"{kind} time (not after the previous row)", "time")
    checks = (
        (c["high"] < c["low"], "high is below low", "high"),
        (c["high"] < np.maximum(c["open"], c["close"]), "high is below open or close", "high"),
        (c["low"] > np.minimum(c["open"], c["close"]), "low is above open or close", "low"),
        (c["volume"] < 0, "volume is negative", "volume"),
        (np.minimum(c["open"], c["low"]) <= 0, "prices must be positive", "low"),
    )
    for mask, message, field in checks:
        bad = np.flatnonzero(mask)
        if bad.size:
            raise table.fail(int(bad[0]), message, field)


def read_candles_csv(path: str | Path) -> Candles:
    """A CSV file as ``Candles``."""
    return read_candle_table(path).to_candles()

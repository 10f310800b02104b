"""Market-data benchmarks: how fast candles go into and come out of the database.

Prints, never asserts: load time of 1,000, 100,000 and 1,000,000 candles from Postgres
(the old system: 50 ms per 1,000) and from SQLite, and the time to upsert them.

    .venv/bin/python bench/data.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import market_data as md  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import dispose_engines, session_scope  # noqa: E402
from tests.conftest import random_candles  # noqa: E402
from tests.services import create_pg_database, drop_pg_database  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
STEP = 300_000


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(label: str, url: str) -> None:
    upgrade(url)
    for n in SIZES:
        candles = random_candles(n, seed=n, start_ms=1_500_000_000_000 // STEP * STEP, step_ms=STEP)
        symbol = f"B{n}/USDT"

        def write():
            with session_scope(url) as s:
                md.upsert_candles(s, "bench", symbol, "5m", candles)

        def read():
            with session_scope(url) as s:
                back = md.load_candles(s, "bench", symbol, "5m")
            assert len(back) == n

        w = best_of(write, 1 if n == SIZES[-1] else 3)
        r = best_of(read, 3 if n == SIZES[-1] else 10)
        print(f"{label:<9} {n:>9,} candles: load {r * 1e3:8.1f} ms ({r * 1e3 / n * 1000:6.2f} ms per "
              f"1,000; old system 50) | upsert {w * 1e3:8.1f} ms ({n / w:,.0f} rows/s)")


def measure_import(url: str, tmp: str) -> None:
    """A 1,000,000-row Binance-style CSV through `trad data import`'s service."""
    from app.config import load_settings
    from app.data.synthetic import synthetic_candles
    from app.services import market_data

    candles = synthetic_candles(1_000_000, timeframe="1m", seed=3, start=1_500_000_000_000 // 60_000 * 60_000)
    path = Path(tmp) / "BTCUSDT-1m.csv"
    frame = candles.to_frame()
    frame.index = frame.index.as_unit("ms").asi8
    frame.index.name = "open_time"
    frame.to_csv(path)
    settings = load_settings({"DATABASE_URL": url})
    t0 = time.perf_counter()
    report = market_data.import_file(settings, str(path), "binanceus", "BTC/USDT", "1m")
    dt = time.perf_counter() - t0
    print(f"import    {report.rows:>9,} rows from CSV ({path.stat().st_size / 1e6:.0f} MB): {dt:.2f} s "
          f"(parse, check, upsert in one transaction)")


def main() -> None:
    url, name = create_pg_database()
    try:
        measure("postgres", url)
        with tempfile.TemporaryDirectory() as tmp:
            measure_import(url, tmp)
    finally:
        dispose_engines()
        drop_pg_database(name)
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{tmp}/bench.sqlite3")
        dispose_engines()


if __name__ == "__main__":
    main()

"""Copying a finished 5,000-trial study for optuna-dashboard: optuna's add_trials against
the bulk write (app.optimize.rounds._add_trials_in_bulk), on Postgres and SQLite.

Prints, never asserts.

    .venv/bin/python bench/study_export.py [--trials 5000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import dispose_engines  # noqa: E402
from app.optimize import rounds  # noqa: E402
from app.optimize.space import build_space  # noqa: E402
from app.strategies import get_strategy  # noqa: E402
from tests.services import create_pg_database, drop_pg_database  # noqa: E402


def timed_export(url: str, name: str, space, history, bulk: bool) -> float:
    t0 = time.perf_counter()
    if bulk:
        rounds.export_study(url, name, space, history)
    else:
        with mock.patch.object(rounds, "_add_trials_in_bulk", side_effect=ImportError("off")):
            rounds.export_study(url, name, space, history)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5_000)
    args = parser.parse_args()
    space = build_space(get_strategy("LIQUIDITY_SWEEP"))
    rng = np.random.default_rng(1)
    history = [rounds.PastTrial(i, p, float(rng.normal()), {})
               for i, p in enumerate(space.sample(args.trials, 2))]
    pg_url, pg_name = create_pg_database()
    try:
        with tempfile.TemporaryDirectory() as home:
            sqlite_url = f"sqlite:///{home}/bench.sqlite3"
            for label, db_url in (("postgres", pg_url), ("sqlite", sqlite_url)):
                upgrade(db_url)
                url = load_settings({"DATABASE_URL": db_url, "TRAD_HOME": home}).optuna_storage_url
                slow = timed_export(url, "by-optuna", space, history, bulk=False)
                fast = timed_export(url, "bulk", space, history, bulk=True)
                print(f"{label}: {args.trials:,} trials, optuna add_trials {slow:.2f} s, "
                      f"bulk {fast:.2f} s (x{slow / fast:.0f})")
    finally:
        dispose_engines()
        drop_pg_database(pg_name)


if __name__ == "__main__":
    main()

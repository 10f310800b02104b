"""The embedded default on 1, 2, ... local processes: `trad optimize --workers N` as a user
runs it (a subprocess, SQLite in a TRAD_HOME of its own, no broker).

For each N, the same job (SMA_CROSS, random, seeded, over 30 days of synthetic 5-minute
candles: 8,640 bars) and prints: the wall time of the command, the trials phase (from the
job's start to its last chunk stored, read from its progress rows), trials/s in that
phase, the speed-up over one process, and the finish (the verdict's statistics, one
process whatever N). The trials must be the same for every N: the bench says so.

Prints, never asserts.

    .venv/bin/python bench/embedded.py [--trials 100000] [--workers 1,2] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAD = str(Path(sys.executable).with_name("trad"))
MARKET = ["--symbol", "BTC/USDT", "--exchange", "synthetic", "--timeframe", "5m"]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run(env: dict, trials: int, workers: int) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run([TRAD, "optimize", "--strategy", "SMA_CROSS", *MARKET, "--optimizer",
                           "random", "--n-iterations", str(trials), "--lookback-days", "30",
                           "--seed", "1", "--workers", str(workers), "--json"],
                          capture_output=True, text=True, env=env, cwd=env["TRAD_HOME"])
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"trad optimize failed: {done.stderr.strip()[-500:]}")
    job = json.loads(done.stdout)
    with sqlite3.connect(Path(env["TRAD_HOME"]) / "trad.sqlite3") as db:
        last_chunk = db.execute("SELECT max(ts) FROM training_progress WHERE job_id = ? AND "
                                "stage = 'trials'", (job["job_id"],)).fetchone()[0]
        digest = db.execute("SELECT count(*), sum(value) FROM trials WHERE job_id = ?",
                            (job["job_id"],)).fetchone()
    phase = _ts(last_chunk) - _ts(job["started_at"])
    return {"wall": wall, "phase": phase, "finish": _ts(job["finished_at"]) - _ts(last_chunk),
            "digest": digest, "trials": job["trials_done"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=2, help="best of")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "TRAD_LOCAL_WORKERS")}
        env["TRAD_HOME"] = home
        subprocess.run([TRAD, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run([TRAD, "data", "synth", *MARKET[:2], "--timeframe", "5m", "--days", "30",
                        "--seed", "7"], env=env, check=True, capture_output=True)
        print(f"SMA_CROSS random, {args.trials:,} trials over 8,640 bars, embedded (SQLite), "
              f"{os.cpu_count()} cores; best of {args.repeats}")
        print(f"{'workers':>7} | {'wall s':>7} | {'trials s':>8} | {'trials/s':>9} | "
              f"{'speed-up':>8} | {'finish s':>8} | same trials")
        base = None
        first_digest = None
        for n in (int(w) for w in args.workers.split(",")):
            best = min((run(env, args.trials, n) for _ in range(args.repeats)),
                       key=lambda r: r["phase"])
            rate = best["trials"] / best["phase"]
            base = base or rate
            first_digest = first_digest or best["digest"]
            print(f"{n:>7} | {best['wall']:>7.2f} | {best['phase']:>8.2f} | {rate:>9,.0f} | "
                  f"{rate / base:>8.2f} | {best['finish']:>8.2f} | "
                  f"{'yes' if best['digest'] == first_digest else 'NO'}")


if __name__ == "__main__":
    main()

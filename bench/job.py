"""Training-job benchmarks on real Postgres, Redis, gunicorn and Celery workers.

Prints, never asserts:
  1. the old system's own body (LIQUIDITY_SWEEP, 10 random trials, unseeded, min_trades
     10) over 1,000 candles, POST to succeeded on one fresh worker process: the first job
     and the median of the next five (the old system: 127 s);
  2. 100,000 SMA_CROSS trials over 100,000 candles with 1 and 2 worker processes:
     trials/s, speed-up, and the share of wall time that is not backtesting;
  3. a bayesian job of 5,000 trials over 1,000 candles with two worker processes
     (SMA_CROSS, rounds of 64: --bayes-strategy, --bayes-batch), its rounds asked whole
     in the callback (sampler_parts 1) and in two parts by the workers (sampler_parts
     2): trials/s, the best value found, the sampler's core time against the
     backtests', the speed-up.

    .venv/bin/python bench/job.py [--only 1,2,3] [--trials 100000] [--bayes-trials 5000]
                                  [--bayes-strategy SMA_CROSS] [--bayes-batch 64]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = __import__("secrets").token_urlsafe(24)
sys.path.insert(0, str(ROOT))

os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("TRAD_REDIS_PREFIX", f"trad-bench-{os.getpid()}:")

from sqlalchemy import func, select  # noqa: E402

from app.db import market_data as md  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.models import Trial  # noqa: E402
from app.db.session import dispose_engines, session_scope  # noqa: E402
from tests.conftest import random_candles  # noqa: E402
from tests.processes import Gunicorn, Worker  # noqa: E402
from tests.services import create_pg_database, drop_pg_database  # noqa: E402

STEP = 300_000
START = 1_600_000_000_000 // STEP * STEP


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def run_job(web: Gunicorn, body: dict, timeout: float = 3600) -> tuple[dict, float]:
    t0 = time.perf_counter()
    started = call("POST", web.url + "/api/v2/training/start", body)
    run_job.post_s = time.perf_counter() - t0
    while True:
        job = call("GET", web.url + started["status_url"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError("job timed out")
        # Poll fast at first (the small job is over in a second), then gently: the poller
        # shares the cores with the workers it measures.
        time.sleep(0.02 if time.perf_counter() - t0 < 2 else 0.25)


def store(url, symbol, n, seed=1):
    with session_scope(url) as s:
        md.upsert_candles(s, "binanceus", symbol, "5m",
                          random_candles(n, seed=seed, start_ms=START, step_ms=STEP, vol=0.003))


def backtest_seconds(url, job_id) -> float:
    with session_scope(url) as s:
        return float(s.scalar(select(func.sum(Trial.duration)).where(Trial.job_id == job_id)))


def phases(url, job_id) -> str:
    """Where a job's wall time went: queue and start, the trials, the finish."""
    from app.db.models import TrainingJob, TrainingProgress

    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        rows = list(s.execute(select(TrainingProgress.ts, TrainingProgress.stage)
                              .where(TrainingProgress.job_id == job_id).order_by(TrainingProgress.id)))
        first_trial, last_trial = s.execute(
            select(func.min(TrainingProgress.ts), func.max(TrainingProgress.ts))
            .where(TrainingProgress.job_id == job_id, TrainingProgress.stage == "trials")).one()
        finishing = next(ts for ts, stage in rows if stage == "finishing")
        parts = {"queued+start": (job.started_at - job.created_at).total_seconds(),
                 "to first chunk": (first_trial - job.started_at).total_seconds(),
                 "chunks": (last_trial - first_trial).total_seconds(),
                 "to finish": (finishing - last_trial).total_seconds(),
                 "finish": (job.finished_at - finishing).total_seconds()}
    return ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="1,2,3")
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--bayes-trials", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of [2] per process count; figures of each run, then medians")
    parser.add_argument("--strategy", default="LIQUIDITY_SWEEP")
    parser.add_argument("--bayes-batch", type=int, default=64,
                        help="batch_size of the bayesian jobs of [3] (a request's default: 32)")
    parser.add_argument("--bayes-strategy", default="SMA_CROSS",
                        help="strategy of the bayesian jobs of [3] (SMA_CROSS: the cheapest backtest)")
    parser.add_argument("--parts", default="1,2", type=lambda v: [int(x) for x in v.split(",")],
                        help="sampler_parts of the bayesian jobs of [3]")
    args = parser.parse_args()
    only = set(args.only.split(","))
    url, name = create_pg_database()
    print(f"database {name}; cores {os.cpu_count()}")
    try:
        upgrade(url)
        store(url, "BTC/USDT", 1000, seed=1)
        store(url, "ETH/USDT", 100_000, seed=2)
        web = Gunicorn(url, workers=1, extra_env={"TRAD_API_TOKENS": f"bench:{TOKEN}"}).wait_ready()
        try:
            if "1" in only:
                w = Worker(url, concurrency=1).wait_ready()
                try:
                    # The old system's own body, unchanged (unseeded, min_trades 10), over
                    # the 1,000 candles stored: the first job on the fresh worker, then more.
                    body = {"strategy": args.strategy, "symbol": "BTC/USDT", "exchange": "binanceus",
                            "timeframe": "5m", "optimizer": "random", "lookback_days": 30,
                            "n_iterations": 10, "run_validation": False}
                    times, stages, ids, posts = [], [], [], []
                    for _ in range(6):
                        job, dt = run_job(web, body)
                        assert job["status"] == "succeeded", job["error"]
                        times.append(dt)
                        stages.append(job["result"]["lifecycle_stage"])
                        ids.append(job["job_id"])
                        posts.append(run_job.post_s)
                    later = sorted(times[1:])
                    print(f"[1] the old system's body (LIQUIDITY_SWEEP, 10 random trials, 1,000 "
                          f"candles), POST -> succeeded, 1 fresh worker process: first job "
                          f"{times[0]:.3f} s, median of the next 5 {later[2]:.3f} s (the old "
                          f"system: 127 s, x{127 / times[0]:,.0f} and x{127 / later[2]:,.0f}); "
                          f"stages {', '.join(stages)}")
                    print(f"    first job: POST {posts[0]:.3f} s; {phases(url, ids[0])}")
                    print(f"    a later one: POST {posts[3]:.3f} s; {phases(url, ids[3])}")
                    print(f"    worker log: {w.log_path}")
                finally:
                    w.stop()
            if "2" in only:
                rates, idle = {1: [], 2: []}, {1: [], 2: []}
                for _ in range(args.repeat):
                    for procs in (1, 2):
                        w = Worker(url, concurrency=procs).wait_ready()
                        try:
                            body = {"strategy": "SMA_CROSS", "symbol": "ETH/USDT",
                                    "exchange": "binanceus", "timeframe": "5m", "optimizer": "random",
                                    "start": START, "n_iterations": args.trials, "min_trades": 0,
                                    "seed": 5, "params": {"allow_short": False}}
                            run_job(web, {**body, "n_iterations": 200})  # warm the processes
                            job, dt = run_job(web, body)
                            assert job["status"] == "succeeded", job["error"]
                            work = backtest_seconds(url, job["job_id"])
                            rates[procs].append(args.trials / dt)
                            idle[procs].append(100 - 100 * work / (dt * procs))
                            print(f"[2] {args.trials:,} SMA_CROSS trials x 100,000 candles, {procs} "
                                  f"worker process(es): {dt:.1f} s, {rates[procs][-1]:,.0f} trials/s; "
                                  f"backtesting {work:.1f} core-s = {100 - idle[procs][-1]:.1f}% of "
                                  f"{procs} x wall, not backtesting {idle[procs][-1]:.1f}%")
                            print(f"    phases: {phases(url, job['job_id'])}")
                        finally:
                            w.stop()
                    print(f"[2] speed-up 2 vs 1 worker processes: x{rates[2][-1] / rates[1][-1]:.2f}")
                if args.repeat > 1:
                    med = {p: statistics.median(v) for p, v in rates.items()}
                    print(f"[2] medians of {args.repeat} runs: {med[1]:,.0f} and {med[2]:,.0f} trials/s, "
                          f"speed-up x{med[2] / med[1]:.2f}; not backtesting "
                          f"{statistics.median(idle[1]):.1f}% (1 process), "
                          f"{statistics.median(idle[2]):.1f}% (2 processes)")
            if "3" in only:
                w = Worker(url, concurrency=2).wait_ready()
                try:
                    body = {"strategy": args.bayes_strategy, "symbol": "BTC/USDT",
                            "exchange": "binanceus", "timeframe": "5m", "optimizer": "bayesian", "lookback_days": 1000 / 288,
                            "n_iterations": args.bayes_trials, "min_trades": 0, "seed": 5,
                            "batch_size": args.bayes_batch}
                    walls = {}
                    for parts in args.parts:
                        job, dt = run_job(web, {**body, "sampler_parts": parts})
                        assert job["status"] == "succeeded", job["error"]
                        walls[parts] = dt
                        work = backtest_seconds(url, job["job_id"])
                        sampler = job["stats"]["sampler_s"]
                        where = (f"sampler {sampler:.3f} core-s = {100 * sampler / (2 * dt):.1f}% of "
                                 f"2 x wall ({'in the callback' if parts == 1 else 'in the workers'})")
                        print(f"[3] bayesian {args.bayes_strategy} {args.bayes_trials:,} trials x 1,000 "
                              f"candles, rounds of {args.bayes_batch}, 2 worker "
                              f"processes, sampler_parts {parts}: {dt:.1f} s, "
                              f"{args.bayes_trials / dt:,.0f} trials/s, best sharpe "
                              f"{job['best_value']:.3f}; {where}; backtesting {work:.3f} core-s; ask / backtests "
                              f"{sampler / work:.2f}")
                    for parts in args.parts[1:]:
                        print(f"[3] speed-up of sampler_parts {parts} over {args.parts[0]}: "
                              f"x{walls[args.parts[0]] / walls[parts]:.2f}")
                finally:
                    w.stop()
        finally:
            web.stop()
    finally:
        dispose_engines()
        drop_pg_database(name)


if __name__ == "__main__":
    main()

"""How often the verdict is right, on series whose truth is planted.

Noise: random walks (no strategy has an edge). Edges: ``trending_candles`` (trends of about
300 bars each way under hourly noise: a moving-average crossover's best parameters earn a
Sharpe ratio of about 2.1 a year). Each series is 8 years of hourly bars, trained with
SMA_CROSS (long only) over a 30 % holdout by random search, bayesian (TPE) and genetic
(NSGA-II), 100 to 5,000 trials, through the embedded default (the product's own job path,
SQLite, tasks in-process). Prints one line per case (stage, DSR, PSR out of sample,
evidence, PBO, effective trials) and the accuracy: every noise series should be REJECTED,
every edge PAPER or better.

    .venv/bin/python bench/verdicts.py [--seeds 8] [--bars 70000] [--first-seed 0]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for key in ("CELERY_BROKER_URL", "REDIS_URL"):
    os.environ.pop(key, None)
HOME = tempfile.mkdtemp(prefix="trad-verdicts-")
os.environ["TRAD_HOME"] = HOME
os.environ["DATABASE_URL"] = f"sqlite:///{HOME}/trad.sqlite3"
os.environ.setdefault("TRAD_LOG_LEVEL", "WARNING")

from app.config import load_settings  # noqa: E402
from app.data.synthetic import trending_candles  # noqa: E402
from app.db import market_data as md  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.services import jobs  # noqa: E402

# (optimizer, trials) for the i-th case of each kind, cycled.
PLAN = [("random", 5000), ("bayesian", 300), ("genetic", 1000), ("random", 100),
        ("bayesian", 100), ("genetic", 300), ("random", 1000), ("random", 2000)]
START = 1_400_000_000_000 // 3_600_000 * 3_600_000


def planted(kind: str, seed: int, bars: int):
    return trending_candles(bars, seed=seed, strength=0.09 if kind == "edge" else 0.0, start=START)


def body(symbol: str, optimizer: str, trials: int, seed: int) -> dict:
    return {"strategy": "SMA_CROSS", "symbol": symbol, "exchange": "planted", "timeframe": "1h",
            "optimizer": optimizer, "n_iterations": trials, "start": START, "seed": seed,
            "params": {"allow_short": False}, "search_space": {"fast": [2, 60], "slow": [10, 200]},
            "validation": {"method": "holdout", "test_fraction": 0.3}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--bars", type=int, default=70_000)
    args = parser.parse_args()
    from workers.pipeline import enqueue_start

    settings = load_settings()
    upgrade(settings.database_url)
    right = {"noise": 0, "edge": 0}
    print(f"{'case':<10} {'optimizer':<9} {'trials':>6} {'stage':<15} {'IS SR':>6} {'OOS SR':>6} "
          f"{'DSR':>6} {'PSR oos':>7} {'evid.':>6} {'PBO':>5} {'K eff':>6} {'conf.':>6} {'s':>5}")
    for kind in ("noise", "edge"):
        for i in range(args.first_seed, args.first_seed + args.seeds):
            optimizer, trials = PLAN[i % len(PLAN)]
            symbol = f"{kind.upper()}{i}"
            with session_scope(settings.database_url) as session:
                md.upsert_candles(session, "planted", symbol, "1h", planted(kind, 1000 + i, args.bars))
            t0 = time.perf_counter()
            job = jobs.submit(settings, body(symbol, optimizer, trials, i), enqueue_start)
            job = jobs.get_job(settings, job["job_id"])
            seconds = time.perf_counter() - t0
            result = job["result"]
            trust = result["trust"]
            stage = result["lifecycle_stage"]
            ok = (stage == "REJECTED") == (kind == "noise")
            right[kind] += ok
            pbo = (trust.get("pbo") or {}).get("pbo")
            print(f"{symbol:<10} {optimizer:<9} {trials:>6} {stage:<15} "
                  f"{result['in_sample']['sharpe_ratio']:>6.2f} "
                  f"{result['out_of_sample']['sharpe_ratio']:>6.2f} "
                  f"{trust['deflated_sharpe']['dsr']:>6.3f} {trust['psr_oos']:>7.3f} "
                  f"{trust['evidence']:>6.3f} {'' if pbo is None else f'{pbo:.2f}':>5} "
                  f"{trust['effective_trials']:>6.1f} {result['confidence']:>6.3f} {seconds:>5.1f}"
                  + ("" if ok else "   <- wrong"))
    n = args.seeds
    print(f"\nnoise REJECTED: {right['noise']}/{n}; edges PAPER or better: {right['edge']}/{n}; "
          f"accuracy {(right['noise'] + right['edge']) / (2 * n):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

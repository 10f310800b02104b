"""The workers' side of a training job, one module per step of its life (they also run
in-process on the embedded default). Which process runs what:

- ``start``: ``start_job`` (control queue): candles, fingerprint, lookahead gate, round 0;
- ``trials``: ``run_chunk`` (trials queue): one chunk of backtests, written idempotently;
- ``finish``: ``finish_round`` (the chord callback, control queue): the next round, or
  the best trial, its validation, its verdict and its configuration;
- ``walk_forward``: folds as child jobs, their finish and the stitched record;
- ``recovery``: the watchdog's expiries and repairs (beat);
- ``export``: the optuna study copy for optuna-dashboard;
- ``plan``, ``candle_cache``, ``context``: what the steps share.

The Celery tasks in ``workers/`` are thin adapters over these functions; the steps
return plans (which chunks to run next) and never import Celery.
"""
from app.services.training.context import (
    FINISH_RETRIES,
    MAX_RECOVERIES,
    ChildJob,
    Chunk,
    Done,
    Folds,
    JobFailed,
    Round,
    Wait,
    fail_job,
    request_of,
    round_of,
)
from app.services.training.export import export_study
from app.services.training.finish import finish_round
from app.services.training.recovery import (
    Repair,
    expire_overdue_jobs,
    repair_stalled_jobs,
)
from app.services.training.start import mark_dispatched, start_job
from app.services.training.trials import asked_part, run_chunk

__all__ = [
    "FINISH_RETRIES",
    "MAX_RECOVERIES",
    "ChildJob",
    "Chunk",
    "Done",
    "Folds",
    "JobFailed",
    "Round",
    "Wait",
    "Repair",
    "asked_part",
    "expire_overdue_jobs",
    "export_study",
    "fail_job",
    "finish_round",
    "mark_dispatched",
    "repair_stalled_jobs",
    "request_of",
    "round_of",
    "run_chunk",
    "start_job",
]

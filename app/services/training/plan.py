"""A round's parameter sets and how they split into chunks (runs where the round is planned:
start_job, finish_round)."""
from __future__ import annotations

import math
import time

from app.config import Settings
from app.db.models import TrainingJob
from app.optimize.rounds import SEQUENTIAL_OPTIMIZERS, PastTrial, ask_round, part_bounds
from app.services.job_request import TrainingRequest
from app.services.training.context import Chunk
from app.strategies.runner import score_params

# A chunk should carry at least this much work (a Celery task costs ~3 ms however small)
# and at most this much (so progress moves and a lost worker loses little).
CHUNK_MIN_S = 0.05


CHUNK_TARGET_S = 1.0


MIN_CHUNKS = 8


MAX_CHUNK = 5_000


def _chunk_size(n: int, per_trial_s: float) -> int:
    by_time = max(1, int(CHUNK_TARGET_S / max(per_trial_s, 1e-7)))
    floor = max(1, int(math.ceil(CHUNK_MIN_S / max(per_trial_s, 1e-7))))
    size = max(floor, min(by_time, int(math.ceil(n / MIN_CHUNKS))))
    return max(1, min(size, MAX_CHUNK))


def _chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Chunks of ``size``, shrinking to a quarter of it over the last few (guided
    scheduling): the round's last chunks are short, so no worker waits long on one that
    is still running at the end."""
    bounds, start, smallest = [], 0, max(1, size // 4)
    while start < n:
        step = min(size, max(smallest, -(-(n - start) // 4)))
        bounds.append((start, min(n, start + step)))
        start += step
    return bounds


def _ask_chunks(plan: dict) -> list[Chunk]:
    """A round asked in parts: part k asks and runs the trials of its share of the batch."""
    first, batch = plan["first"], plan["batch"]
    return [Chunk(list(range(first + a, first + b)), [], [],
                  {"part": k, "first": first, "batch": batch})
            for k, (a, b) in enumerate(part_bounds(batch, plan["parts"]))]


def _split(numbers: list[int], params: list[dict], attrs: list[dict], size: int) -> list[Chunk]:
    return [Chunk(numbers[a:b], params[a:b], attrs[a:b]) for a, b in _chunk_bounds(len(numbers), size)]


def per_trial_seconds(strategy, candles, cache, config, space) -> float:
    params = space.complete({p.name: p.default for p in space.free})
    if not strategy.feasible(params):
        params = space.sample(1, 0)[0]
    score_params(strategy, candles, params, config, cache)  # compile and warm the cache
    t0 = time.perf_counter()
    for _ in range(3):
        score_params(strategy, candles, params, config, cache)
    return (time.perf_counter() - t0) / 3


def plan_round(settings: Settings, job: TrainingJob, request: TrainingRequest, round_no: int,
                first_number: int, history: list[PastTrial], per_trial_s: float
                ) -> tuple[list[Chunk], dict | None]:
    space = request.space()
    remaining = job.n_trials - first_number
    if request.optimizer == "grid":
        params = space.grid()
        attrs = [{}] * len(params)
        state = None
    elif request.optimizer == "random":
        params = space.sample(job.n_trials, job.seed)
        attrs = [{}] * len(params)
        state = None
    elif request.parts > 1:
        # Asked in parts by the workers (see app.optimize.rounds); one chunk per part.
        job.round_plan = {"round": round_no, "first": first_number,
                          "batch": min(request.rounds_batch, remaining), "parts": request.parts}
        return _ask_chunks(job.round_plan), None
    else:
        batch = min(request.rounds_batch, remaining)
        asked, state = ask_round(space, request.optimizer, job.seed, round_no, batch, history,
                                 job.sampler_state or {})
        params = [a.params for a in asked]
        attrs = [a.system_attrs for a in asked]
    numbers = list(range(first_number, first_number + len(params)))
    size = _chunk_size(len(numbers), per_trial_s)
    # Enough to send this round again, the same trials in the same chunks, if the worker
    # dies between this commit and the chord (see planned_chunks). Grid and random params are
    # derived again from the seed; a sequential round's asked params are kept (a batch).
    job.round_plan = {"round": round_no, "size": size}
    if request.optimizer in SEQUENTIAL_OPTIMIZERS:
        job.round_plan |= {"first": first_number, "params": params, "attrs": attrs}
    return _split(numbers, params, attrs, size), state


def planned_chunks(job: TrainingJob, request: TrainingRequest) -> list[Chunk]:
    """The chunks of the job's current round as planned, or [] if it has none (finishing)."""
    plan = job.round_plan or {}
    if plan.get("round") != job.round:
        return []
    if "parts" in plan:
        return _ask_chunks(plan)
    if "params" in plan:
        first, params, attrs = plan["first"], plan["params"], plan["attrs"]
    else:
        space = request.space()
        params = space.grid() if job.optimizer == "grid" else space.sample(job.n_trials, job.seed)
        first, attrs = 0, [{}] * len(params)
    return _split(list(range(first, first + len(params))), params, attrs, plan["size"])

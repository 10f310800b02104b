"""A round's parameter sets and how they split into chunks, drafted outside any lock or
session (start_job and finish_round then commit the draft with a compare-and-set on the
job's round), and the planned round rebuilt from what was committed (a resume, a repair)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from app.optimize.chunks import chunk_bounds, chunk_size
from app.optimize.rounds import SEQUENTIAL_OPTIMIZERS, PastTrial, ask_round, part_bounds
from app.schemas import TrainingRequest
from app.services.training.context import Chunk
from app.strategies.runner import score_params

__all__ = ["RoundDraft", "draft_round", "per_trial_seconds", "planned_chunks"]


@dataclass(frozen=True)
class RoundDraft:
    """A round as planned: its chunks, the sampler's state after asking it, and the
    ``round_plan`` to store so the very same chunks can be sent again after a lost worker;
    ``sampler_s``: what asking took (the space, the sampler's asks or draws; not the
    chunks' planning)."""

    chunks: list[Chunk]
    sampler_state: dict | None
    round_plan: dict
    sampler_s: float


def _ask_chunks(plan: dict) -> list[Chunk]:
    """A round asked in parts: part k asks and runs the trials of its share of the batch."""
    first, batch = plan["first"], plan["batch"]
    return [Chunk(list(range(first + a, first + b)), [], [],
                  {"part": k, "first": first, "batch": batch})
            for k, (a, b) in enumerate(part_bounds(batch, plan["parts"]))]


def _split(numbers: list[int], params: list[dict], attrs: list[dict], size: int) -> list[Chunk]:
    return [Chunk(numbers[a:b], params[a:b], attrs[a:b]) for a, b in chunk_bounds(len(numbers), size)]


def per_trial_seconds(strategy, candles, cache, config, space) -> float:
    params = space.complete({p.name: p.default for p in space.free})
    if not strategy.feasible(params):
        params = space.sample(1, 0)[0]
    score_params(strategy, candles, params, config, cache)  # compile and warm the cache
    t0 = time.perf_counter()
    for _ in range(3):
        score_params(strategy, candles, params, config, cache)
    return (time.perf_counter() - t0) / 3


def draft_round(request: TrainingRequest, n_trials: int, seed: int, sampler_state: dict | None,
                round_no: int, first_number: int, history: list[PastTrial],
                per_trial_s: float) -> RoundDraft:
    """Round ``round_no`` of a job of ``n_trials``, its first trial numbered
    ``first_number``: every grid point or random draw (one round), a round asked in parts
    (each chunk asks its own), or a sequential sampler's batch asked here from ``history``."""
    t0 = time.perf_counter()
    space = request.space()
    remaining = n_trials - first_number
    if request.optimizer == "grid":
        params, attrs, state = space.grid(), None, None
    elif request.optimizer == "random":
        params, attrs, state = space.sample(n_trials, seed), None, None
    elif request.parts > 1:
        # Asked in parts by the workers (see app.optimize.rounds); one chunk per part.
        plan = {"round": round_no, "first": first_number,
                "batch": min(request.rounds_batch, remaining), "parts": request.parts}
        return RoundDraft(_ask_chunks(plan), None, plan, 0.0)
    else:
        asked, state = ask_round(space, request.optimizer, seed, round_no,
                                 min(request.rounds_batch, remaining), history, sampler_state or {})
        params, attrs = [a.params for a in asked], [a.system_attrs for a in asked]
    asked_s = time.perf_counter() - t0
    attrs = attrs if attrs is not None else [{}] * len(params)
    numbers = list(range(first_number, first_number + len(params)))
    size = chunk_size(len(numbers), per_trial_s)
    # Enough to send this round again, the same trials in the same chunks, if the worker
    # dies between the commit and the chord (see planned_chunks). Grid and random params are
    # derived again from the seed; a sequential round's asked params are kept (a batch).
    plan = {"round": round_no, "size": size}
    if request.optimizer in SEQUENTIAL_OPTIMIZERS:
        plan |= {"first": first_number, "params": params, "attrs": attrs}
    return RoundDraft(_split(numbers, params, attrs, size), state, plan, asked_s)


def planned_chunks(round_plan: dict | None, current_round: int, request: TrainingRequest,
                   n_trials: int, seed: int) -> list[Chunk]:
    """The chunks of the job's current round as committed, or [] if it has none (finishing)."""
    plan = round_plan or {}
    if plan.get("round") != current_round:
        return []
    if "parts" in plan:
        return _ask_chunks(plan)
    if "params" in plan:
        first, params, attrs = plan["first"], plan["params"], plan["attrs"]
    else:
        space = request.space()
        params = space.grid() if request.optimizer == "grid" else space.sample(n_trials, seed)
        first, attrs = 0, [{}] * len(params)
    return _split(list(range(first, first + len(params))), params, attrs, plan["size"])

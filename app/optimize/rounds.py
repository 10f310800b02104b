"""Batched ask/tell: ask a round, run it as a chord, tell, ask again.

Between rounds the study lives in our own ``trials`` table, not in an optuna storage: a
round is asked from the finished trials alone, a pure function of (history, seed, round):
the same job gives the same parameters whichever worker runs which round, and whether or
not a worker died in between.

``bayesian`` is a batched TPE (app.optimize.batch_tpe): one fit of the good and bad
densities a round, the whole batch drawn from it at once, every point feasible and new.
It replaced optuna's TPE (kept as OPTUNA_TPE, for bench/sampler.py), whose ask of 3-40 ms
a trial, growing with the history, made a bayesian job 85-99 % sampler. bench/sampler.py,
8 seeds, rounds of 32, a trial costing a 1,000-candle LIQUIDITY_SWEEP backtest (46 us
there) on 2 workers: the batched TPE asked in 41-51 us a trial (since, with the same
output, 25-45: a round of 32 from 2,500 trials in 1.4 ms), optuna's TPE (in 2 parts, as
jobs asked it) in 2.7-11 ms. After 400 trials its mean best is higher on three of four
objectives and level on branin (sweep7 0.507 against 0.476, hartmann6 3.24 against 3.00,
rosenbrock4 -1.33 against -1.65); after 100, level on sweep7, higher on hartmann6, lower
on rosenbrock4. It reaches optuna's 400-trial best in 0.01-0.05 s of job time instead of
0.4-1.3 s. Since, its inner loops compiled (app/optimize/_tpe_kernel.py: on a grid, a
round's fit and pool in one call, its new trials read in another) and the history read
once a job, a round of 32 from 5,000 trials costs 0.4-0.5 ms in-process; in
bench/job.py [3]'s job of 5,000 trials over 1,000 candles in rounds of 32 the asks cost
0.69 of the backtests' core time for LIQUIDITY_SWEEP, 0.85-0.98 for SMA_CROSS (a 14-28
us backtest); in rounds of 64, 0.67-0.71 for SMA_CROSS. A worker's ask, and its
backtests, run about 2x slower than the same work in a loop: no page faults and no
preemption (measured), but every cache cold after a round's database and broker work, so
each Python or numpy call costs several times what it does in a loop; the ask is built
from few, large compiled calls for that reason.
What a job waits for is mostly each round's broker, database and history read. Its state between rounds is one number (TPE_DRAWS): how
many draws a slot the next round's first pool makes.

A bayesian round can still be asked in parts (``sampler_parts``): each part draws its own
slots from the same fit (its bad-trial sample seeded by the round) with its own seed, and
is backtested by the worker that asked it. The parts do not see each other's picks (in
SMA_CROSS's 2-integer space about 4 % of a parted round repeats a point the other part
took; none in sweep7's 7 parameters) and each pays the fit: two parts cost 1.5-1.9 times
the core time of the whole round, for a job time within 20 % and a mixed search quality
(bench, 3 seeds, 1,000 trials: better on two objectives, worse on two). The parts are fixed by the request, not by the workers
alive, so a job stays a pure function of its request.

``cmaes`` and ``genetic`` rebuild an in-memory optuna study from the finished trials and
ask the round from it. ``genetic`` is shown the whole history; ``cmaes`` only the trials
CmaEsSampler reads (``_history_for``: the last finished trial carrying its pickled
optimizer, that optimizer's generation, the last finished trial), numbered as in the
whole history, which asks the same parameters, attributes and state (checked round after
round, tests/unit/test_round_history.py). A cmaes round of 16 from 5,000 trials (their
attributes hold ~4 KB of pickled optimizer each) took 0.6 s to rebuild and 8 ms an ask,
44-57 ms an asked trial in all (21-24 ms at 2,000); now 1.4 ms (1.9 ms at 2,000; SMA_CROSS
0.8 and 1.1 ms against 27 and 9-13 ms), which is mostly CMA-ES's own unpickle, tell and
pickle on each ask. NSGA-II keeps its parents as trial ids in the study state and may
keep a parent for any number of generations, so no fixed suffix of the history is
provably the same to it. An infeasible suggestion (a constraint such as
``fast < slow`` broken) is told FAIL to that study and replaced by a feasible random draw
(seeded by the round), which the next round's history then teaches the sampler; asking
again until it proposes something feasible would cost a full ask per try. (The batched
TPE drops infeasible candidates before it picks.) OPTUNA_TPE, past TPE_HISTORY trials, is
shown the TPE_KEEP_BEST best and a seeded uniform sample of the rest (``tpe_history``),
which keeps its per-ask cost from growing with the job.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from app.errors import InputError
from app.optimize.batch_tpe import ask_batch_in_state
from app.optimize.optuna_adapter import (
    add_trials_in_bulk,
    numbered_storage,
    set_study_system_attr,
    study_system_attrs,
    trial_system_attrs,
)
from app.optimize.space import SearchSpace

__all__ = ["SEQUENTIAL_OPTIMIZERS", "PARTED_OPTIMIZERS", "OPTUNA_TPE", "PastTrial", "AskedTrial",
           "ask_round", "part_bounds", "tpe_history", "export_study"]

log = logging.getLogger(__name__)

SEQUENTIAL_OPTIMIZERS = ("bayesian", "cmaes", "genetic")
# Samplers whose round can be asked in parts: no study-level state between asks. CMA-ES and
# NSGA-II evolve one population per round, which a split would break.
PARTED_OPTIMIZERS = ("bayesian",)
# optuna's TPE as bayesian jobs asked it before the batched TPE: no request can name it;
# it is kept so that bench/sampler.py measures the two side by side.
OPTUNA_TPE = "optuna_tpe"
TPE_DRAWS = "tpe:draws_per_slot"   # the bayesian state: its next first pool's draws a slot


@dataclass(frozen=True)
class PastTrial:
    """A finished trial as the sampler needs it; ``value`` None means it failed."""

    number: int
    params: dict
    value: float | None
    system_attrs: dict


class AskedTrial(NamedTuple):
    """A parameter set a sampler asked for (a tuple: a round makes dozens, a dataclass
    costs twice as much to make)."""

    params: dict
    system_attrs: dict


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(optimizer: str, seed: int, batch_size: int, n_params: int):
    """The optuna sampler behind an optimizer name.

    - ``OPTUNA_TPE``: TPE with the constant liar, so the trials of one batch, asked before
      any is told, spread out instead of piling on one point.
    - ``cmaes``: CMA-ES with one generation per round (population = batch size);
      categorical parameters fall back to random sampling.
    - ``genetic``: NSGA-II with one generation per round.
    """
    optuna = _quiet_optuna()
    if optimizer == OPTUNA_TPE:
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True,
                                          n_startup_trials=max(10, min(batch_size, 50)))
    if optimizer == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, popsize=max(batch_size, 4),
                                            warn_independent_sampling=False)
    if optimizer == "genetic":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(batch_size, 2))
    raise InputError(f"optimizer {optimizer!r} does not run in rounds", field="optimizer")


def _round_seed(seed: int, round_no: int, part: int | None = None) -> int:
    """The sampler's seed for a round, or for one part of it (``part`` from 0)."""
    base = seed * 1_000_003 + round_no * 7_919
    if part is not None:
        base = base * 31 + 104_729 * (part + 1)
    return base % (2**32)


def part_bounds(batch: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of each part of a round of ``batch`` trials, offsets from its first;
    never more parts than trials."""
    parts = min(parts, batch)
    return [(k * batch // parts, (k + 1) * batch // parts) for k in range(parts)]


TPE_HISTORY = 1_000
TPE_KEEP_BEST = 100


def tpe_history(history: list[PastTrial], seed: int) -> list[PastTrial]:
    """What TPE is shown of a long history: the TPE_KEEP_BEST best trials and a uniform
    sample (seeded) of the other finished ones, TPE_HISTORY in all, in number order.
    Failed trials, which TPE ignores, are left out. Short histories pass unchanged."""
    if len(history) <= TPE_HISTORY:
        return history
    import numpy as np

    finished = [t for t in history if t.value is not None]
    if len(finished) <= TPE_HISTORY:
        return finished
    ranked = sorted(finished, key=lambda t: (-t.value, t.number))
    best, rest = ranked[:TPE_KEEP_BEST], ranked[TPE_KEEP_BEST:]
    picked = np.random.default_rng(seed).choice(len(rest), TPE_HISTORY - TPE_KEEP_BEST,
                                                replace=False)
    return sorted(best + [rest[i] for i in picked.tolist()], key=lambda t: t.number)


CMA_PREFIX = "cma:"  # make_sampler's CmaEsSampler (not separable, no margin): test_round_history


def _history_for(optimizer: str, history: list[PastTrial]) -> list[int] | None:
    """The positions in ``history`` of the trials the sampler needs to be shown, or None
    for all of them (every optimizer but cmaes). CmaEsSampler reads, of the finished
    trials only: whether there is one; the last one carrying a pickled optimizer (which
    it restores); the trials of that optimizer's generation (which it tells it once there
    are a population of them); the intersection of their distributions (the same for all
    of ours). Failed trials it never reads. So those are kept, in order; the study then
    numbers them, and the trials asked after them, as the whole history would (the seed
    of each CMA ask adds the trial's number)."""
    if optimizer != "cmaes":
        return None
    done = [i for i, t in enumerate(history) if t.value is not None]
    if not done:
        return []
    attrs = [history[i].system_attrs or {} for i in done]
    opt_key, gen_key = CMA_PREFIX + "optimizer", CMA_PREFIX + "generation"
    last = next((k for k in reversed(range(len(done)))
                 if any(key.startswith(opt_key) for key in attrs[k])), None)
    if last is not None and gen_key not in attrs[last]:
        return None  # not a state this module knows: show all
    gen = 0 if last is None else attrs[last][gen_key]  # a new optimizer is generation 0
    # ``last`` is one of its generation's; the last finished trial keeps "there is one".
    keep = {k for k in range(len(done)) if attrs[k].get(gen_key, -1) == gen} | {len(done) - 1}
    return [done[k] for k in sorted(keep)]


def _study(space: SearchSpace, sampler, history: list[PastTrial], study_attrs: dict,
           shown: list[int] | None = None):
    """The in-memory study of ``history``, or of its trials at positions ``shown``."""
    optuna = _quiet_optuna()
    from optuna.trial import TrialState, create_trial

    storage = None
    if shown is not None:
        storage = numbered_storage(shown, len(history))
        history = [history[i] for i in shown]
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage)
    for key, value in study_attrs.items():
        set_study_system_attr(study, key, value)
    dists = space.distributions()
    free = list(dists)
    study.add_trials([
        create_trial(
            state=TrialState.COMPLETE if t.value is not None else TrialState.FAIL,
            value=t.value,
            params={k: t.params[k] for k in free},
            distributions=dists,
            system_attrs=t.system_attrs or {},
        )
        for t in history
    ])
    return study


def ask_round(space: SearchSpace, optimizer: str, seed: int, round_no: int, batch_size: int,
              history: list[PastTrial], study_attrs: dict | None = None, part: int | None = None,
              round_size: int | None = None) -> tuple[list[AskedTrial], dict]:
    """Ask ``batch_size`` feasible parameter sets; returns them (with the sampler's
    per-trial state) and the study-level sampler state to keep for the next round.
    ``part``: this is one part, of ``batch_size`` trials, of a round of ``round_size``
    asked in parts (its own seed; the sampler set up for the whole round, see above).
    ``bayesian`` is the batched TPE; ``OPTUNA_TPE`` the optuna TPE it replaced."""
    if part is not None and optimizer not in PARTED_OPTIMIZERS + (OPTUNA_TPE,):
        raise InputError(f"optimizer {optimizer!r} cannot ask a round in parts", field="optimizer")
    if optimizer == "bayesian":
        # One fit a round (its g sample seeded by the round), each part its own draws; the
        # state is the size of the next round's first pool (see ask_batch_in_state).
        asked, draws = ask_batch_in_state(space, history, batch_size, _round_seed(seed, round_no),
                                          _round_seed(seed, round_no, part),
                                          round_size or batch_size,
                                          (study_attrs or {}).get(TPE_DRAWS))
        return (list(map(AskedTrial._make, asked)),
                {TPE_DRAWS: draws} if draws is not None else {})
    return _ask_optuna(space, optimizer, seed, round_no, batch_size, history, study_attrs or {},
                       part, round_size)


def _ask_optuna(space: SearchSpace, optimizer: str, seed: int, round_no: int, batch_size: int,
                history: list[PastTrial], study_attrs: dict, part: int | None,
                round_size: int | None, trim: bool = True) -> tuple[list[AskedTrial], dict]:
    from optuna.trial import TrialState

    round_seed = _round_seed(seed, round_no, part)
    sampler = make_sampler(optimizer, round_seed, round_size or batch_size, len(space.free))
    if optimizer == OPTUNA_TPE:
        history = tpe_history(history, _round_seed(seed, round_no))
    with warnings.catch_warnings():
        # Constant liar and NSGA-II's internals are marked experimental in some optuna
        # releases; we pin the behaviour in tests, so the notice is noise here.
        warnings.filterwarnings("ignore", category=Warning, module="optuna")
        study = _study(space, sampler, history, study_attrs,
                       _history_for(optimizer, history) if trim else None)
        dists = space.distributions()
        asked: list[AskedTrial] = []
        repairs = None
        for i in range(batch_size):
            trial = study.ask(dists)
            params = space.complete(trial.params)
            if space.strategy.feasible(params):
                asked.append(AskedTrial(params, _jsonable(trial_system_attrs(study, trial))))
            else:
                study.tell(trial, state=TrialState.FAIL)
                if repairs is None:
                    repairs = space.sample(batch_size, round_seed + 1)
                asked.append(AskedTrial(repairs[i], {"trad:repaired": True}))
        state = _jsonable(study_system_attrs(study))
    return asked, state


def _jsonable(attrs: dict) -> dict:
    # Sampler state is JSON in optuna's own storages too; check once so a sampler that
    # ever stores something else fails here, loudly, not in the database.
    json.dumps(attrs)
    return dict(attrs)


def export_study(storage_url: str, study_name: str, space: SearchSpace,
                 history: list[PastTrial], fail_reasons: dict[int, str] | None = None) -> None:
    """Write the finished study to an optuna storage in one go, for optuna-dashboard.

    A trial with no value goes in as FAIL, with ``fail_reasons[number]`` (why: too few
    trades, an infeasible draw) in its ``trad_fail_reason`` user attribute, so the
    dashboard's history plot shows the values the search found and not a -1e9 floor."""
    fail_reasons = fail_reasons or {}
    optuna = _quiet_optuna()
    from optuna.trial import TrialState, create_trial

    storage = optuna.storages.RDBStorage(storage_url)
    try:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:
            pass
        study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
        dists = space.distributions()
        try:
            add_trials_in_bulk(storage, storage.get_study_id_from_name(study_name), dists,
                               [(t.value, t.params, user_attrs(t, fail_reasons)) for t in history])
            return
        except (ImportError, AttributeError) as exc:  # an optuna whose table models moved
            log.warning("study export trial by trial study=%s reason=%r", study_name, str(exc))
        study.add_trials([
            create_trial(state=TrialState.COMPLETE if t.value is not None else TrialState.FAIL,
                         value=t.value, params={k: t.params[k] for k in dists},
                         distributions=dists, user_attrs=user_attrs(t, fail_reasons))
            for t in history
        ])
    finally:
        storage.engine.dispose()




def user_attrs(trial: PastTrial, fail_reasons: dict[int, str]) -> dict:
    """What the optuna copy keeps of a trial besides its value: its number here, and why it
    failed when it did."""
    attrs = {"trad_number": trial.number}
    if trial.value is None and trial.number in fail_reasons:
        attrs["trad_fail_reason"] = fail_reasons[trial.number]
    return attrs

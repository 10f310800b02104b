"""A round reads only the trials stored since the last one it read (the per-process
history of app.services.training.context): what it returns must be exactly what reading
the whole job from the database returns, whatever order the chunks arrive in."""
from __future__ import annotations

from app.db import training as repo
from app.db.session import session_scope
from app.services import training
from app.services.training import context
from tests.steps import run_round, submit_sma

BAYES = {"optimizer": "bayesian", "batch_size": 8, "n_iterations": 40}


def _from_the_database(settings, job_id, before=None):
    with session_scope(settings.database_url) as session:
        rows = repo.finished_trials(session, job_id, before)
    return [(r.number, r.params, r.state, r.value) for r in rows]


def _read(settings, job_id, before=None):
    with session_scope(settings.database_url) as session:
        history = context.job_history(session, job_id, before)
    state = {context.REJECTED_VALUE: "rejected", None: "failed"}
    return [(t.number, t.params, state.get(t.value, "complete"),
             None if t.value in state else t.value) for t in history]


def _as_stored(rows):
    # A rejected trial's value is the sampler's floor, a failed one's None: compare states.
    return [(n, p, s, v if s == "complete" else None) for n, p, s, v in rows]


def test_each_round_reads_what_the_database_holds(five_minute_settings):
    settings = five_minute_settings
    job_id = submit_sma(settings, **BAYES)
    plan = training.start_job(settings, job_id)
    rounds = 0
    while isinstance(plan, training.Round):
        # Chunks in reverse: a history read between them has a gap and keeps only 0..k-1.
        for chunk in reversed(plan.chunks):
            training.run_chunk(settings, job_id, plan.number, chunk)
            assert _read(settings, job_id) == _as_stored(_from_the_database(settings, job_id))
        plan = training.finish_round(settings, job_id, plan.number, plan.expected)
        rounds += 1
    assert plan == training.Done(job_id, "succeeded") and rounds == 5
    whole = _as_stored(_from_the_database(settings, job_id))
    assert len(whole) == 40 and _read(settings, job_id) == whole
    assert _read(settings, job_id, before=13) == whole[:13]
    kept = context._HISTORIES[job_id]
    assert [t.number for t in kept] == list(range(40))


def test_a_gap_is_not_kept_and_the_cache_is_bounded(five_minute_settings):
    settings = five_minute_settings
    job_id = submit_sma(settings, optimizer="random", n_iterations=30)
    plan = training.start_job(settings, job_id)
    (whole,) = plan.chunks
    last = training.Chunk(whole.numbers[20:], whole.params[20:], whole.system_attrs[20:])
    training.run_chunk(settings, job_id, 0, last)     # the last trials first: 0..19 missing
    assert [n for n, *_ in _read(settings, job_id)] == list(range(20, 30))
    assert context._HISTORIES.get(job_id) is None
    run_round(settings, plan)
    assert [n for n, *_ in _read(settings, job_id)] == list(range(30))
    for _ in range(context._HISTORIES_KEPT + 2):
        other = submit_sma(settings, optimizer="random", n_iterations=4)
        run_round(settings, training.start_job(settings, other))
        _read(settings, other)
    assert len(context._HISTORIES) == context._HISTORIES_KEPT and job_id not in context._HISTORIES

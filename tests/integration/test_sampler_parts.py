"""A bayesian round asked in parts: each chunk asks its share from the round's history.

The parts must give a job that is a function of its request alone: the same parameters
whichever worker asks which part, however often a part runs (a redelivery, a repair),
and whether the other parts of the round are stored yet.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Trial
from app.db.session import session_scope
from app.services import jobs, training
from tests.steps import chunks_of, drive, run_round, submit_sma

BAYES = {"optimizer": "bayesian", "batch_size": 8, "n_iterations": 32}


@pytest.fixture
def settings(five_minute_settings):
    return five_minute_settings


def trial_params(settings, job_id) -> list[dict]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(Trial.params).where(Trial.job_id == job_id)
                                    .order_by(Trial.number)))


def test_a_round_goes_out_as_one_asking_chunk_per_part(settings):
    job_id = submit_sma(settings, **BAYES, sampler_parts=3)
    chunks = training.start_job(settings, job_id).chunks
    assert [c.numbers for c in chunks] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert [c.ask for c in chunks] == [{"part": k, "first": 0, "batch": 8} for k in range(3)]
    assert all(c.params == [] for c in chunks)
    message = chunks[1].to_message()
    assert training.Chunk.from_message(message) == chunks[1]


def test_the_same_request_gives_the_same_trials_and_parts_change_them(settings):
    submitted = [submit_sma(settings, **BAYES, sampler_parts=parts) for parts in (2, 2, 1)]
    for job_id in submitted:
        assert drive(settings, training.start_job(settings, job_id)) == training.Done(job_id, "succeeded")
    two, again, one = (trial_params(settings, job_id) for job_id in submitted)
    assert len(two) == 32 and two == again
    # Round 0 is TPE's random start-up either way, but each part draws with its own seed.
    assert two[:8] != one[:8]
    assert len({tuple(sorted(p.items())) for p in two}) > 16


def test_a_part_asked_again_gives_the_same_trials_whatever_else_is_stored(settings):
    job_id = submit_sma(settings, **BAYES, sampler_parts=2)
    plan = training.start_job(settings, job_id)
    while plan.number < 2:  # two rounds of history, so TPE is past its random start-up
        plan = run_round(settings, plan)
    first, second = plan.chunks
    training.run_chunk(settings, job_id, 2, second)   # part 1 first: part 0 must not see it
    training.run_chunk(settings, job_id, 2, first)
    stored = trial_params(settings, job_id)
    assert len(stored) == 24
    # A redelivered part: same history (trials below the round's first), same answer.
    redelivered = training.run_chunk(settings, job_id, 2, first)
    assert redelivered["inserted"] == 0 and redelivered["ask_s"] > 0
    assert training.asked_part(settings, _job(settings, job_id), _request(settings, job_id), 2,
                           first).params == stored[16:20]


def test_the_watchdog_sends_again_the_lost_part_whole(settings):
    job_id = submit_sma(settings, **BAYES, sampler_parts=2)
    chunks = training.start_job(settings, job_id).chunks
    training.mark_dispatched(settings, job_id, 0)
    training.run_chunk(settings, job_id, 0, chunks[0])  # part 1's message was lost
    [repair] = training.repair_stalled_jobs(settings, stall_after_s=0)
    assert chunks_of(repair) == [(c.numbers, c.params, c.system_attrs) for c in chunks[1:]]
    assert repair.chunks[0].ask == chunks[1].ask and repair.expected == 8
    for chunk in repair.chunks:
        training.run_chunk(settings, job_id, 0, chunk)
    assert training.finish_round(settings, job_id, 0, 8).number == 1


def _job(settings, job_id):
    from app.db.models import TrainingJob

    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        session.expunge(job)
        return job


def _request(settings, job_id):
    return training.request_of(_job(settings, job_id))


@pytest.mark.parametrize("optimizer", ["cmaes", "genetic"])
def test_population_samplers_ask_their_round_whole(settings, optimizer):
    job_id = submit_sma(settings, optimizer=optimizer, batch_size=8, n_iterations=16)
    chunks = training.start_job(settings, job_id).chunks
    assert all(c.ask is None and len(c.params) == len(c.numbers) for c in chunks)
    assert jobs.get_job(settings, job_id)["request"]["sampler_parts"] is None


def test_the_parts_asking_time_is_added_to_the_jobs_sampler_time(settings):
    job_id = submit_sma(settings, **BAYES, sampler_parts=2)
    chunks = training.start_job(settings, job_id).chunks
    before = jobs.get_job(settings, job_id)["stats"]["sampler_s"]
    assert all(training.run_chunk(settings, job_id, 0, c)["ask_s"] > 0 for c in chunks)
    # What the chord's callback sums from its chunks' results (workers/tasks.py).
    assert training.finish_round(settings, job_id, 0, 8, asked_s=2.5).number == 1
    after = jobs.get_job(settings, job_id)["stats"]["sampler_s"]
    assert 2.5 <= after - before < 2.6
    # A duplicate of that finish (the chord's callback sent twice) adds nothing.
    assert training.finish_round(settings, job_id, 0, 8, asked_s=2.5) == training.Done(job_id, "running")
    assert jobs.get_job(settings, job_id)["stats"]["sampler_s"] == after

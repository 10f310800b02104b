"""A control task redelivered after its worker died resumes the job where it stopped.

The worker that runs start_job or finish_round commits a step (job running, round + 1)
and then sends the next chord; killed between the two, the broker redelivers the message
(flagged ``redelivered``) and the step's chunks must go out again, or the finish run again,
instead of leaving the job running forever. These tests drive the services the tasks call,
on both databases; test_worker_loss kills real workers.
"""
from __future__ import annotations

import pytest

from app.db.session import session_scope
from app.services import configurations, jobs, training
from tests.steps import chunks_of, drive, run_round, submit_sma


@pytest.fixture
def settings(five_minute_settings):
    return five_minute_settings


def done(job_id, status):
    return training.Done(job_id, status)


GRID = {"n_iterations": 40, "search_space": {"fast": {"low": 5, "high": 45, "step": 10},
                                            "slow": {"low": 50, "high": 200, "step": 50},
                                            "allow_short": [False, True]}}


@pytest.mark.parametrize("optimizer,extra", [("random", {}), ("grid", GRID),
                                             ("bayesian", {"batch_size": 8})])
def test_a_redelivered_start_sends_round_0_again_until_it_went_out(settings, optimizer, extra):
    job_id = submit_sma(settings, optimizer=optimizer, **extra)
    first = training.start_job(settings, job_id)
    assert isinstance(first, training.Round) and first.chunks and first.number == 0
    # A duplicate start (not a redelivery) does nothing; a redelivery plans the same chunks.
    assert training.start_job(settings, job_id) == done(job_id, "running")
    again = training.start_job(settings, job_id, resume=True)
    assert chunks_of(again) == chunks_of(first) and again.priority == first.priority == 5
    training.mark_dispatched(settings, job_id, 0)
    assert training.start_job(settings, job_id, resume=True) == done(job_id, "running")
    progress = jobs.list_progress(settings, job_id)["progress"]
    assert any("resuming after a lost worker: start" in p["message"] for p in progress)


def test_a_redelivered_finish_round_sends_the_planned_round_again(settings):
    job_id = submit_sma(settings, optimizer="bayesian", batch_size=10)
    round0 = training.start_job(settings, job_id)
    training.mark_dispatched(settings, job_id, 0)
    outcome = run_round(settings, round0)
    assert outcome.number == 1
    # The worker died before sending round 1: the redelivered finish_round sends it.
    assert training.finish_round(settings, job_id, 0, 10) == done(job_id, "running")
    again = training.finish_round(settings, job_id, 0, 10, resume=True)
    assert again.number == 1 and chunks_of(again) == chunks_of(outcome)
    training.mark_dispatched(settings, job_id, 1)
    assert training.finish_round(settings, job_id, 0, 10, resume=True) == done(job_id, "running")


def test_a_redelivered_finish_round_finishes_a_job_whose_finish_was_lost(settings):
    job_id = submit_sma(settings)
    for chunk in training.start_job(settings, job_id).chunks:
        training.run_chunk(settings, job_id, 0, chunk)
    # What finish_round commits before the job's finish: the claim of the finish. The worker
    # dies there; the redelivered message must finish the job, and only once.
    from app.db import training as repo

    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        job.round = 1
    assert training.finish_round(settings, job_id, 0, 30) == done(job_id, "running")
    assert training.finish_round(settings, job_id, 0, 30, resume=True) == done(job_id, "succeeded")
    finished = jobs.get_job(settings, job_id)
    assert finished["status"] == "succeeded" and finished["trials_done"] == 30
    assert training.finish_round(settings, job_id, 0, 30, resume=True) == done(job_id, "succeeded")
    configs = configurations.list_configurations(settings)["configurations"]
    assert [c["name"] for c in configs] == [finished["result"]["configuration"]]


def test_a_step_that_keeps_losing_its_worker_fails_the_job(settings):
    job_id = submit_sma(settings)
    training.start_job(settings, job_id)
    for _ in range(training.MAX_RECOVERIES):
        assert training.start_job(settings, job_id, resume=True).chunks
    with pytest.raises(training.JobFailed, match="lost 3 times"):
        training.start_job(settings, job_id, resume=True)


def test_a_redelivered_walk_forward_start_starts_the_folds_still_queued(settings):
    job_id = submit_sma(settings, n_iterations=40, validation={"method": "walk_forward", "folds": 2})
    children = training.start_job(settings, job_id).folds
    assert len(children) == 2
    # fold 0 started, fold 1 was lost
    assert isinstance(training.start_job(settings, children[0].job_id), training.Round)
    again = training.start_job(settings, job_id, resume=True)
    assert [c.job_id for c in again.folds] == [children[1].job_id]


def test_the_watchdog_sends_again_the_trials_of_a_lost_chunk(settings):
    job_id = submit_sma(settings)
    chunks = list(training.start_job(settings, job_id).chunks)
    training.mark_dispatched(settings, job_id, 0)
    training.run_chunk(settings, job_id, 0, chunks[0])  # the other chunks' messages are lost
    assert training.repair_stalled_jobs(settings, stall_after_s=3600) == []
    [repair] = training.repair_stalled_jobs(settings, stall_after_s=0)
    assert (repair.job_id, repair.round, repair.expected, repair.finish) == (job_id, 0, 30, False)
    assert [n for c in repair.chunks for n in c.numbers] == list(range(len(chunks[0].numbers), 30))
    assert chunks_of(repair) == [(c.numbers, c.params, c.system_attrs) for c in chunks[1:]]
    # Repaired just now: not stalled again until stall_after_s passes once more.
    assert training.repair_stalled_jobs(settings, stall_after_s=5) == []
    for chunk in repair.chunks:
        training.run_chunk(settings, job_id, 0, chunk)
    assert training.finish_round(settings, job_id, 0, repair.expected) == done(job_id, "succeeded")
    assert jobs.get_job(settings, job_id)["trials_done"] == 30


def test_the_watchdog_sends_again_a_lost_chord_callback_and_a_lost_finish(settings):
    job_id = submit_sma(settings)
    for chunk in training.start_job(settings, job_id).chunks:
        training.run_chunk(settings, job_id, 0, chunk)
    [repair] = training.repair_stalled_jobs(settings, stall_after_s=0)
    assert (list(repair.chunks), repair.expected, repair.finish) == ([], 30, False)
    from app.db import training as repo

    with session_scope(settings.database_url) as session:
        repo.lock_job(session, job_id).round = 1  # the finish was claimed, then lost
    [repair] = training.repair_stalled_jobs(settings, stall_after_s=0)
    assert (repair.round, repair.finish) == (0, True)
    assert training.finish_round(settings, job_id, repair.round, 0, resume=True) == done(job_id, "succeeded")
    assert training.repair_stalled_jobs(settings, stall_after_s=0) == []


def test_the_watchdog_starts_again_the_folds_of_a_stalled_walk_forward(settings):
    job_id = submit_sma(settings, n_iterations=40, validation={"method": "walk_forward", "folds": 2})
    children = training.start_job(settings, job_id).folds
    training.mark_dispatched(settings, job_id, 0)
    [repair] = training.repair_stalled_jobs(settings, stall_after_s=0)  # both starts were lost
    assert (repair.job_id, list(repair.folds)) == (job_id, list(children))


def test_the_watchdog_finishes_a_walk_forward_whose_finish_was_lost(settings):
    from app.db import training as repo

    job_id = submit_sma(settings, n_iterations=40, validation={"method": "walk_forward", "folds": 2})
    children = training.start_job(settings, job_id).folds
    training.mark_dispatched(settings, job_id, 0)
    drive(settings, training.start_job(settings, children[0].job_id))
    with session_scope(settings.database_url) as session:
        repo.lock_job(session, job_id).round = 1  # the walk-forward's finish claimed, then lost
    drive(settings, training.start_job(settings, children[1].job_id))
    assert jobs.get_job(settings, job_id)["status"] == "running"
    assert training.repair_stalled_jobs(settings, stall_after_s=0) == []  # finished in place
    done = jobs.get_job(settings, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert len(done["result"]["walk_forward"]["folds"]) == 2

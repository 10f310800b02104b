"""Trial rows are written once per (job_id, number), however often a chunk is delivered."""
from __future__ import annotations

from sqlalchemy import func, select, text

from app.db import training as repo
from app.db.models import TrainingJob, Trial
from app.db.session import session_scope


def rows(numbers, value=1.0):
    return [{"number": n, "params": {"fast": n}, "state": "complete", "value": value + n,
             "metrics": {"sharpe_ratio": 0.5, "num_trades": 3}, "duration": 0.001,
             "system_attrs": {"k": n} if n % 2 else {}} for n in numbers]


def new_job(session, job_id="j1"):
    now = repo.utcnow()
    session.add(TrainingJob(id=job_id, status="running", request={}, strategy="SMA_CROSS",
                            exchange="x", symbol="BTC/USDT", timeframe="5m", optimizer="random",
                            objective="sharpe_ratio", priority=5, seed=1, n_trials=10, round=0,
                            trials_done=0, cancel_requested=False, created_at=now, updated_at=now))


def test_a_redelivered_chunk_inserts_nothing_and_an_overlapping_one_only_its_new_rows(db_url):
    with session_scope(db_url) as s:
        new_job(s)
    with session_scope(db_url) as s:
        assert repo.insert_trials(s, "j1", 0, rows(range(0, 5))) == 5
    with session_scope(db_url) as s:
        assert repo.insert_trials(s, "j1", 0, rows(range(0, 5), value=99.0)) == 0
    with session_scope(db_url) as s:
        assert repo.insert_trials(s, "j1", 0, rows(range(3, 8), value=50.0)) == 3
    with session_scope(db_url) as s:
        job = s.get(TrainingJob, "j1")
        assert (job.trials_done, job.best_value) == (8, 57.0)
        stored = {t.number: t for t in s.scalars(select(Trial).where(Trial.job_id == "j1"))}
        assert sorted(stored) == list(range(8))
        assert stored[4].value == 5.0 and stored[5].value == 55.0  # first writes kept
        assert stored[5].system_attrs == {"k": 5} and stored[5].params == {"fast": 5}
        assert s.scalar(select(func.count()).select_from(Trial)) == 8
    # The transaction stays usable after the fallback: a later write in it lands.
    with session_scope(db_url) as s:
        assert repo.insert_trials(s, "j1", 1, rows(range(7, 10))) == 2
        repo.add_progress(s, s.get(TrainingJob, "j1"), "trials", "after a merge")
    with session_scope(db_url) as s:
        assert s.get(TrainingJob, "j1").trials_done == 10


def test_text_with_backslashes_tabs_quotes_and_unicode_round_trips(db_url):
    with session_scope(db_url) as s:
        new_job(s)
    odd = {"mode": 'a\\b\tc\n"d" é ✓', "path": "C:\\\\x"}
    row = {**rows([0])[0], "params": odd, "system_attrs": {"note": "\\N"}, "value": None,
           "metrics": None, "state": "rejected"}
    with session_scope(db_url) as s:
        assert repo.insert_trials(s, "j1", 0, [row]) == 1
    with session_scope(db_url) as s:
        t = s.scalars(select(Trial).where(Trial.job_id == "j1")).one()
        assert (t.params, t.system_attrs, t.value, t.metrics) == (odd, {"note": "\\N"}, None, None)


def test_a_web_workers_warm_up_checks_a_post_and_writes_nothing(five_minute_settings):
    # app.api.warm runs the reading part of a POST (jobs.warm_submit) before the first
    # request: on a database with candles, and on one without, it stores no job, no
    # progress row, and raises nothing.
    from app.db.models import TrainingProgress
    from app.services.jobs import warm_submit

    def counts():
        with session_scope(five_minute_settings.database_url) as s:
            return (s.scalar(select(func.count()).select_from(TrainingJob)),
                    s.scalar(select(func.count()).select_from(TrainingProgress)))

    before = counts()
    warm_submit(five_minute_settings)
    assert counts() == before
    with session_scope(five_minute_settings.database_url) as s:   # no candles at all
        s.execute(text("DELETE FROM market_data"))
    warm_submit(five_minute_settings)
    assert counts() == before

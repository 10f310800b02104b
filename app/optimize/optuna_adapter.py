"""Every use Trad makes of optuna beyond its public API, in one place, for one version range.

Optuna's public API has no way to (a) set a study's system attributes (where CMA-ES and
NSGA-II keep their state between our rounds), (b) read a trial's or a study's system
attributes back once they are deprecated, (c) write a finished study in bulk (its
``add_trials`` costs 7-14 ms a trial), or (d) number a study's trials as a longer history
would (a cmaes round is shown only the trials CMA-ES reads, app.optimize.rounds). This module does those through optuna's storage
and table models, for the versions in ``OPTUNA_RANGE`` (setup.cfg pins the same);
tests/unit/test_optuna_adapter.py exercises each and fails when optuna moves them.
"""
from __future__ import annotations

import json

__all__ = ["OPTUNA_RANGE", "add_trials_in_bulk", "numbered_storage", "set_study_system_attr",
           "study_system_attrs", "trial_system_attrs"]

OPTUNA_RANGE = (">=4.5", "<6")


def set_study_system_attr(study, key: str, value) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def study_system_attrs(study) -> dict:
    return dict(study._storage.get_study_system_attrs(study._study_id))


def trial_system_attrs(study, trial) -> dict:
    """The system attributes a sampler gave a trial it was asked for (constant liar,
    NSGA-II's generation, ...)."""
    return dict(study._storage.get_trial(trial._trial_id).system_attrs)


def add_trials_in_bulk(storage, study_id: int, dists: dict, trials: list[tuple]) -> None:
    """The rows ``study.add_trials`` would write for ``(value, params, user_attrs)``
    trials (value None: FAIL), one statement per table in one transaction, through
    optuna's own table definitions. add_trials runs about ten
    statements a trial (7-14 ms: a minute and more for 5,000 trials, a worker busy all
    along); this writes 5,000 in 0.9 s on Postgres and 0.3 s on SQLite, 95 and 171 times
    faster (bench/study_export.py). tests/integration/test_study_export.py checks that
    optuna reads back the same study either way."""
    from datetime import datetime, timezone

    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy import insert, select

    if not trials:
        return
    table = models.TrialModel.__table__
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # optuna stores naive UTC
    as_json = {name: distribution_to_json(d) for name, d in dists.items()}
    with storage.engine.begin() as conn:
        conn.execute(insert(table), [
            {"number": i, "study_id": study_id,
             "state": TrialState.COMPLETE if value is not None else TrialState.FAIL,
             "datetime_start": now, "datetime_complete": now}
            for i, (value, _, _) in enumerate(trials)])
        ids = dict(conn.execute(select(table.c.number, table.c.trial_id)
                                .where(table.c.study_id == study_id)).all())
        conn.execute(insert(models.TrialParamModel.__table__), [
            {"trial_id": ids[i], "param_name": name, "distribution_json": as_json[name],
             "param_value": d.to_internal_repr(params[name])}
            for i, (_, params, _) in enumerate(trials) for name, d in dists.items()])
        values = []
        for i, (value, _, _) in enumerate(trials):
            if value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": ids[i], "objective": 0, "value": stored,
                               "value_type": kind})
        if values:
            conn.execute(insert(models.TrialValueModel.__table__), values)
        conn.execute(insert(models.TrialUserAttributeModel.__table__), [
            {"trial_id": ids[i], "key": key, "value_json": json.dumps(attr)}
            for i, (_, _, attrs) in enumerate(trials) for key, attr in attrs.items()])


def numbered_storage(numbers: list[int], first_new: int):
    """An in-memory storage numbering its trials ``numbers`` then ``first_new`` on, not
    0, 1, 2...: a trimmed history keeps the numbers it had in the whole one."""
    import itertools

    from optuna.storages import InMemoryStorage

    class NumberedStorage(InMemoryStorage):
        def __init__(self):
            super().__init__()
            self._numbers = itertools.chain(numbers, itertools.count(first_new))

        def create_new_trial(self, study_id, template_trial=None):
            trial_id = super().create_new_trial(study_id, template_trial)
            self._get_trial(trial_id).number = next(self._numbers)
            return trial_id

    return NumberedStorage()

"""A finished study copied for optuna-dashboard: the bulk write reads back, through optuna,
exactly as the study optuna's own add_trials writes, on SQLite and on Postgres."""
from __future__ import annotations

import math

import optuna
import pytest

from app.config import load_settings
from app.optimize import rounds
from app.optimize.rounds import PastTrial, export_study
from app.optimize.space import build_space
from app.strategies import get_strategy


def _seen(storage_url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=storage_url)
    return [(t.number, t.state, t.params, t.values, t.user_attrs, t.distributions)
            for t in study.get_trials(deepcopy=False)]


def test_the_bulk_copy_reads_back_as_optuna_writes_it(db_url, tmp_path, monkeypatch):
    url = load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)}).optuna_storage_url
    space = build_space(get_strategy("LIQUIDITY_SWEEP"))
    values = [1.5, None, -1e9, 0.25, math.inf, 3.0] * 5
    history = [PastTrial(i, p, values[i], {}) for i, p in enumerate(space.sample(30, 4))]

    export_study(url, "bulk", space, history)

    def unavailable(*_args):
        raise ImportError("no bulk path")

    monkeypatch.setattr(rounds, "add_trials_in_bulk", unavailable)
    export_study(url, "by-optuna", space, history)
    bulk, by_optuna = _seen(url, "bulk"), _seen(url, "by-optuna")
    assert len(bulk) == 30 and bulk == by_optuna
    study = optuna.load_study(study_name="bulk", storage=url)
    assert study.best_value == math.inf and study.best_trial.user_attrs == {"trad_number": 4}
    assert all(t.datetime_complete is not None for t in study.trials)


def test_exporting_again_replaces_the_study(db_url, tmp_path):
    url = load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)}).optuna_storage_url
    space = build_space(get_strategy("SMA_CROSS"))
    first = [PastTrial(i, p, float(i), {}) for i, p in enumerate(space.sample(5, 1))]
    export_study(url, "again", space, first)
    export_study(url, "again", space, first[:3])
    assert [t[0] for t in _seen(url, "again")] == [0, 1, 2]
    with pytest.raises(KeyError):
        optuna.load_study(study_name="never", storage=url)

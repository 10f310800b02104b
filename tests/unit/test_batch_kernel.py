"""The batch route (many trials per compiled call) gives each trial exactly what the
per-trial route gives it: the same metrics dicts, float for float."""
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from app.backtest import BacktestConfig, evaluate
from app.backtest import engine as engine_module
from app.backtest import metrics as metrics_module
from app.backtest.engine import evaluate_batch
from app.backtest.metrics import METRIC_NAMES, metrics_from_stats
from app.data.synthetic import synthetic_candles
from app.errors import InputError
from app.optimize.space import build_space
from app.services.training import trials as trials_module
from app.services.training.context import Chunk, JobFailed
from app.strategies import IndicatorCache, Strategy, get_strategy
from app.strategies.base import IntParam
from app.strategies.registry import builtin_strategies
from app.strategies.runner import run_trials, score_batch, score_params

BARS = 600
CANDLES = synthetic_candles(BARS, timeframe="1h", seed=11, start=0, wild_vol=3.0)

# The job's own costs, and ones with every kind of stop the engine has.
CONFIGS = {
    "costs": BacktestConfig(fee=0.001, slippage_bps=5.0, periods_per_year=8760.0),
    "fraction stops": BacktestConfig(fee=0.0005, stop_loss=0.01, take_profit=0.03),
    "atr stops": BacktestConfig(fee=0.001, stop_loss_atr=1.5, take_profit_atr=3.0, atr_period=7),
    "no fees": BacktestConfig(fee=0.0, periods_per_year=365.0),
}


def per_trial(strategy, candles, params, config):
    """The per-trial route, written out: positions, the set's settings, one evaluate."""
    cache = IndicatorCache(candles)
    overrides = strategy.execution(params)
    cfg = config.replace(**overrides) if overrides else config
    atr = cache.atr(int(cfg.atr_period)) if cfg.uses_atr else None
    return evaluate(candles, strategy.positions(candles, params, cache), cfg, atr=atr)


def param_sets(strategy, count, seed):
    """Valid random sets, the defaults first; shorts on wherever the strategy has them."""
    sets = [strategy.validate(None)] + [strategy.validate(p) for p in
                                        build_space(strategy).sample(count, seed)]
    if any(p.name == "allow_short" for p in strategy.space):
        sets.append(strategy.validate({**sets[-1], "allow_short": True}))
    return sets


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("strategy", builtin_strategies(), ids=lambda s: s.name)
def test_every_builtin_strategy_scores_the_same_in_a_batch_as_trial_by_trial(strategy,
                                                                             config_name):
    config = CONFIGS[config_name]
    sets = param_sets(strategy, 6, seed=len(strategy.name))
    try:
        expected = [per_trial(strategy, CANDLES, p, config) for p in sets]
    except InputError as exc:  # the strategy's ATR stops on top of the config's own
        with pytest.raises(InputError, match=str(exc)):
            score_batch(strategy, CANDLES, sets, config, IndicatorCache(CANDLES))
        return
    assert score_batch(strategy, CANDLES, sets, config, IndicatorCache(CANDLES)) == expected
    assert run_trials(strategy, CANDLES, sets, config) == expected
    assert [score_params(strategy, CANDLES, p, config, IndicatorCache(CANDLES))
            for p in sets] == expected


def test_a_large_batch_takes_the_vectorised_metrics_and_still_matches():
    # Enough trials in one block for the numpy route over the statistics (64 and up).
    strategy = get_strategy("LIQUIDITY_SWEEP")
    sets = param_sets(strategy, 90, seed=5)
    config = CONFIGS["costs"]
    got = score_batch(strategy, CANDLES, sets, config, IndicatorCache(CANDLES))
    assert len(sets) >= 64 and got == [per_trial(strategy, CANDLES, p, config) for p in sets]


def random_trials(count, seed):
    """Targets that trade, go short, lever up until the account is closed out, hold NaN;
    under configs with and without stops, ATRs given or left to the engine."""
    rng = np.random.default_rng(seed)
    cache = IndicatorCache(CANDLES)
    targets, configs, atrs = [], [], []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            target = rng.choice([-1.0, 0.0, 1.0], BARS)
        elif kind == 1:
            target = np.sign(np.sin(np.arange(BARS) / rng.uniform(2.0, 40.0)))
        elif kind == 2:
            target = rng.choice([-25.0, -2.0, 0.0, 0.5, 3.0, 25.0, np.nan], BARS)
        else:
            target = np.repeat(rng.uniform(-2.0, 2.0, BARS // 50), 50)
        config = list(CONFIGS.values())[i % len(CONFIGS)]
        if i % 3 == 0:
            config = config.replace(initial_capital=float(rng.uniform(100.0, 1e6)))
        targets.append(target)
        configs.append(config)
        atrs.append(cache.atr(config.atr_period) if config.uses_atr and i % 2 else None)
    return targets, configs, atrs


@pytest.mark.parametrize("count", [1, 2, 63, 64, 100])
def test_evaluate_batch_is_evaluate_per_trial_float_for_float(count):
    targets, configs, atrs = random_trials(count, seed=count)
    expected = [evaluate(CANDLES, t, c, atr=a) for t, c, a in zip(targets, configs, atrs)]
    assert evaluate_batch(CANDLES, targets, configs, atrs) == expected
    assert evaluate_batch(CANDLES, np.stack(targets), configs, atrs) == expected
    assert any(m["num_trades"] > 0 for m in expected)


def test_one_config_for_the_whole_batch_is_that_config_for_each_trial():
    targets, _, _ = random_trials(70, seed=3)
    config = CONFIGS["atr stops"]
    assert evaluate_batch(CANDLES, targets, config) == [evaluate(CANDLES, t, config)
                                                        for t in targets]


def test_the_vectorised_metrics_are_metrics_from_stats_row_by_row():
    targets, configs, atrs = random_trials(100, seed=8)
    stats = _stats(targets, configs, atrs)
    batch = metrics_module.metrics_from_stats_batch(stats, np.array([c.initial_capital for c in configs]),
                                   np.array([c.periods_per_year for c in configs]))
    reference = [metrics_from_stats(s, c.initial_capital, c.periods_per_year)
                 for s, c in zip(stats, configs)]
    assert len(stats) >= metrics_module._VECTOR_ROWS and batch == reference
    assert all(list(m) == list(METRIC_NAMES) for m in batch)
    assert all(type(m["num_trades"]) is int and all(type(m[k]) is float for k in METRIC_NAMES
                                                    if k != "num_trades") for m in batch)


def _stats(targets, configs, atrs):
    out = []
    for t, c, a in zip(targets, configs, atrs):
        target, atr = engine_module._prepare(CANDLES, t, c, a)
        out.append(engine_module._run(CANDLES, target, c, atr, False, *engine_module._NO_RECORD))
    return np.array(out)


@pytest.mark.parametrize("block_bytes", [1, 8 * BARS * 16, 8 * BARS * 17, 8 * BARS * 1000])
def test_blocks_of_any_size_give_the_same_scores(block_bytes):
    strategy = get_strategy("LIQUIDITY_SWEEP")
    sets = param_sets(strategy, 40, seed=2)
    config = CONFIGS["costs"]
    durations = []
    got = score_batch(strategy, CANDLES, iter(sets), config, IndicatorCache(CANDLES),
                      block_bytes=block_bytes, durations=durations)
    assert got == [per_trial(strategy, CANDLES, p, config) for p in sets]
    assert len(durations) == len(sets) and all(d > 0.0 for d in durations)


def test_an_empty_batch_scores_nothing():
    strategy = get_strategy("SMA_CROSS")
    durations = []
    assert score_batch(strategy, CANDLES, [], BacktestConfig(), IndicatorCache(CANDLES),
                       durations=durations) == []
    assert durations == []
    assert run_trials(strategy, CANDLES, []) == []
    assert evaluate_batch(CANDLES, [], BacktestConfig()) == []
    assert evaluate_batch(CANDLES, np.empty((0, BARS))) == []


def test_one_trial_is_a_batch_of_one():
    strategy = get_strategy("MACD")
    params = strategy.validate(None)
    expected = per_trial(strategy, CANDLES, params, CONFIGS["costs"])
    assert score_batch(strategy, CANDLES, [params], CONFIGS["costs"],
                       IndicatorCache(CANDLES)) == [expected]
    assert evaluate_batch(CANDLES, [np.ones(BARS)], CONFIGS["costs"]) == \
        [evaluate(CANDLES, np.ones(BARS), CONFIGS["costs"])]


def test_a_batch_of_the_wrong_length_is_refused():
    with pytest.raises(InputError, match="target has shape"):
        evaluate_batch(CANDLES, [np.ones(BARS), np.ones(BARS - 1)])
    with pytest.raises(InputError, match="targets have"):
        evaluate_batch(CANDLES, np.ones((3, BARS + 1)))
    with pytest.raises(InputError, match="as many configs"):
        evaluate_batch(CANDLES, [np.ones(BARS)] * 2, [BacktestConfig()])


class Explodes(Strategy):
    """Long always; raises above a threshold, returns a short array at 13."""

    name = "EXPLODES_HERE"
    space = (IntParam("threshold", 1, 100, default=5),)

    def positions(self, candles, params, cache):
        if params["threshold"] > 50:
            raise ValueError(f"threshold {params['threshold']} is too big")
        return np.ones(len(candles) - (params["threshold"] == 13))


def test_a_strategy_error_names_its_trial_through_on_error():
    sets = [{"threshold": t} for t in (5, 6, 7, 60, 8)]
    seen = []

    def on_error(index, exc):
        seen.append((index, str(exc)))
        raise RuntimeError(f"trial {index}") from exc

    with pytest.raises(RuntimeError, match="trial 3"):
        score_batch(Explodes(), CANDLES, sets, BacktestConfig(), IndicatorCache(CANDLES),
                    on_error=on_error)
    assert seen == [(3, "threshold 60 is too big")]
    with pytest.raises(ValueError, match="threshold 60 is too big"):
        run_trials(Explodes(), CANDLES, sets)


def test_a_target_of_the_wrong_shape_is_the_engines_error_for_its_trial():
    seen = []
    with pytest.raises(InputError, match="target has shape"):
        score_batch(Explodes(), CANDLES, [{"threshold": 5}, {"threshold": 13}],
                    BacktestConfig(), IndicatorCache(CANDLES),
                    on_error=lambda index, exc: seen.append(index))
    assert seen == [1]


# -- the workers' chunk loop ---------------------------------------------------------------


class _Session:
    def __init__(self, job):
        self.job = job

    def get(self, _model, _job_id):
        return self.job

    def expunge(self, _job):
        pass

    def execute(self, _statement):
        pass


def _run_chunk(monkeypatch, strategy_name, chunk):
    """``run_chunk`` with its database, request and candles stood in for; returns the rows
    it stored."""
    job = SimpleNamespace(id="job-1", status="running", cancel_requested=False, parent_id=None,
                          bars_per_year=8760.0)
    request = SimpleNamespace(strategy=strategy_name, optimizer="random", objective="sharpe_ratio",
                              min_trades=3)
    stored = []

    @contextmanager
    def session_scope(_url):
        yield _Session(job)

    def insert_trials(_session, _job_id, _round, rows):
        stored.extend(rows)
        return len(rows)

    monkeypatch.setattr(trials_module, "session_scope", session_scope)
    monkeypatch.setattr(trials_module, "request_of", lambda _job: request)
    monkeypatch.setattr(trials_module, "load_job_candles",
                        lambda _settings, _job: (CANDLES, IndicatorCache(CANDLES)))
    monkeypatch.setattr(trials_module, "backtest_config", lambda _request, _bars: CONFIGS["costs"])
    monkeypatch.setattr(trials_module.repo, "insert_trials", insert_trials)
    monkeypatch.setattr(trials_module.repo, "add_progress", lambda *args: None)
    monkeypatch.setattr(trials_module, "get_strategy", lambda name: (
        Explodes() if name == Explodes.name else get_strategy(name)))
    out = trials_module.run_chunk(SimpleNamespace(database_url="unused"), "job-1", 0, chunk)
    return out, stored


def test_the_chunk_loop_stores_the_per_trial_scores(monkeypatch):
    strategy = get_strategy("LIQUIDITY_SWEEP")
    sets = param_sets(strategy, 12, seed=9)
    numbers = list(range(100, 100 + len(sets)))
    attrs = [{"k": i} for i in range(len(sets))]
    out, rows = _run_chunk(monkeypatch, strategy.name, Chunk(numbers, sets, attrs))
    expected = [per_trial(strategy, CANDLES, p, CONFIGS["costs"]) for p in sets]
    assert [r["number"] for r in rows] == numbers and [r["params"] for r in rows] == sets
    assert [r["system_attrs"] for r in rows] == attrs
    assert [r["metrics"] for r in rows] == expected
    assert [r["value"] for r in rows] == [m["sharpe_ratio"] for m in expected]
    assert [r["state"] for r in rows] == ["complete" if m["num_trades"] >= 3 else "rejected"
                                          for m in expected]
    assert all(r["duration"] > 0.0 for r in rows)
    assert out["inserted"] == len(sets)


def test_the_chunk_loop_fails_the_job_naming_the_trial(monkeypatch):
    chunk = Chunk([7, 8, 9], [{"threshold": 5}, {"threshold": 77}, {"threshold": 6}], [{}, {}, {}])
    with pytest.raises(JobFailed) as failed:
        _run_chunk(monkeypatch, Explodes.name, chunk)
    assert str(failed.value) == ('strategy EXPLODES_HERE failed on trial 8 with params '
                                 '{"threshold": 77}: ValueError: threshold 77 is too big')
    assert isinstance(failed.value.__cause__, ValueError)

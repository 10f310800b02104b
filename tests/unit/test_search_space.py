"""Search spaces: fixed and narrowed parameters, grids, random draws, optuna rounds."""
import pytest

from app.errors import InputError
from app.optimize.rounds import PastTrial, ask_round
from app.optimize.space import build_space
from app.strategies import get_strategy

SMA = get_strategy("SMA_CROSS")


def test_grid_holds_only_feasible_points_in_a_fixed_order():
    space = build_space(SMA, {"allow_short": False}, {"fast": {"low": 5, "high": 20, "step": 5},
                                                      "slow": {"low": 10, "high": 20, "step": 5}})
    assert space.grid_size() == 4 * 3
    points = [(p["fast"], p["slow"]) for p in space.grid()]
    assert points == [(5, 10), (5, 15), (5, 20), (10, 15), (10, 20), (15, 20)]
    assert all(p["allow_short"] is False for p in space.grid())


def test_random_draws_are_feasible_and_repeat_for_a_seed():
    space = build_space(SMA, narrowed={"fast": [2, 60], "slow": [3, 61]})
    a, b = space.sample(300, seed=4), space.sample(300, seed=4)
    assert a == b and a != space.sample(300, seed=5)
    assert all(2 <= p["fast"] < p["slow"] <= 61 for p in a)


@pytest.mark.parametrize("fixed,narrowed,field", [
    ({"fats": 3}, None, "params.fats"),
    ({"fast": 1}, None, "params.fast"),
    (None, {"slow": [50, 10]}, "search_space.slow"),
    (None, {"slow": [1, 10]}, "search_space.slow"),
    (None, {"slow": {"low": 10, "hi": 20}}, "search_space.slow"),
    (None, {"allow_short": []}, "search_space.allow_short"),
    ({"fast": 5}, {"fast": [5, 9]}, "search_space.fast"),
])
def test_bad_spaces_name_the_field(fixed, narrowed, field):
    with pytest.raises(InputError) as info:
        build_space(SMA, fixed, narrowed)
    assert info.value.field == field


def test_an_empty_feasible_region_is_reported():
    space = build_space(SMA, narrowed={"fast": [100, 200], "slow": [3, 50]})
    assert space.grid() == []
    with pytest.raises(InputError, match="no feasible parameters"):
        space.sample(1, seed=0)


@pytest.mark.parametrize("optimizer", ["bayesian", "cmaes", "genetic"])
def test_rounds_are_a_pure_function_of_history_seed_and_round(optimizer):
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 40], "slow": [5, 80]})

    def run():
        history, state = [], {}
        for round_no in range(4):
            asked, state = ask_round(space, optimizer, 11, round_no, 8, history, state)
            assert len(asked) == 8
            for a in asked:
                assert a.params["fast"] < a.params["slow"]
                value = -abs(a.params["fast"] - 10) - abs(a.params["slow"] - 40) / 4
                history.append(PastTrial(len(history), a.params, value, a.system_attrs))
        return [t.params for t in history]

    first = run()
    assert first == run()
    assert len({(p["fast"], p["slow"]) for p in first}) > 8


def test_bayesian_moves_toward_better_values():
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 100], "slow": [3, 200]})
    history = []
    for round_no in range(8):
        asked, _ = ask_round(space, "bayesian", 3, round_no, 16, history)
        for a in asked:
            value = -abs(a.params["fast"] - 20) - abs(a.params["slow"] - 120) / 2
            history.append(PastTrial(len(history), a.params, value, a.system_attrs))
    first, last = history[:16], history[-16:]
    assert max(t.value for t in last) > max(t.value for t in first)


def test_bayesian_in_parts_moves_toward_better_values_with_distinct_parts():
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 100], "slow": [3, 200]})

    def value(p):
        return -abs(p["fast"] - 20) - abs(p["slow"] - 120) / 2

    history = []
    for round_no in range(8):
        parts = [ask_round(space, "bayesian", 3, round_no, 8, history, part=k)[0] for k in (0, 1)]
        again = ask_round(space, "bayesian", 3, round_no, 8, history, part=1)[0]
        assert [a.params for a in again] == [a.params for a in parts[1]]
        assert [a.params for a in parts[0]] != [a.params for a in parts[1]]
        for a in parts[0] + parts[1]:
            history.append(PastTrial(len(history), a.params, value(a.params), a.system_attrs))
    first, last = history[:16], history[-16:]
    assert max(t.value for t in last) > max(t.value for t in first)
    assert sum(t.value for t in last) / 16 > sum(t.value for t in first) / 16


@pytest.mark.parametrize("optimizer", ["cmaes", "genetic"])
def test_population_samplers_refuse_a_round_in_parts(optimizer):
    space = build_space(SMA)
    with pytest.raises(InputError, match="cannot ask a round in parts"):
        ask_round(space, optimizer, 3, 0, 8, [], part=0)


def test_tpe_sees_the_best_and_a_seeded_sample_of_a_long_history():
    from app.optimize.rounds import TPE_HISTORY, TPE_KEEP_BEST, tpe_history

    values = [float((i * 7_919) % 4_001) for i in range(4_000)]
    history = [PastTrial(i, {"fast": i}, None if i % 97 == 0 else v, {})
               for i, v in enumerate(values)]
    assert tpe_history(history[:TPE_HISTORY], 1) == history[:TPE_HISTORY]
    shown = tpe_history(history, 1)
    assert len(shown) == TPE_HISTORY and shown == tpe_history(history, 1) != tpe_history(history, 2)
    assert [t.number for t in shown] == sorted(t.number for t in shown)
    assert all(t.value is not None for t in shown)
    finished = sorted((t for t in history if t.value is not None), key=lambda t: -t.value)
    assert {t.number for t in finished[:TPE_KEEP_BEST]} <= {t.number for t in shown}
    # The rest is a uniform sample: its numbers spread over the whole job, not its end.
    rest = sorted(t.number for t in shown if t.number not in {u.number for u in finished[:TPE_KEEP_BEST]})
    assert rest[len(rest) // 4] < 1_300 and rest[3 * len(rest) // 4] > 2_700


def test_bayesian_keeps_improving_past_the_history_it_shows_tpe():
    from app.optimize.rounds import TPE_HISTORY

    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 100], "slow": [3, 200]})

    def value(p):
        return -abs(p["fast"] - 20) - abs(p["slow"] - 120) / 2

    history = [PastTrial(i, p, value(p), {}) for i, p in enumerate(space.sample(TPE_HISTORY + 500, 4))]
    asked, _ = ask_round(space, "bayesian", 3, 50, 32, history)
    random_mean = sum(t.value for t in history) / len(history)
    assert sum(value(a.params) for a in asked) / 32 > random_mean + 10


def test_a_request_builds_its_space_once_for_the_same_strategy_and_bounds():
    # A job asks for its space every round; the sampler keeps what it derives from it by
    # identity, so the same request (or an equal one) must hand back the same object, and
    # a request that narrows a bound a different one.
    from app.schemas import TrainingRequest

    body = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "bayesian", "n_iterations": 50}
    first = TrainingRequest.model_validate(body)
    assert first.space() is first.space() is TrainingRequest.model_validate(body).space()
    narrowed = TrainingRequest.model_validate(body | {"search_space": {"fast": {"high": 20}}})
    assert narrowed.space() is not first.space()
    assert max(p["fast"] for p in narrowed.space().sample(50, 0)) <= 20

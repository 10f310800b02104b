"""The batched TPE: a round is a pure function of its inputs, always feasible, on the grid,
new, split into parts without overlap, and it finds a planted optimum random search misses."""
import math

import numpy as np
import pytest

from app.optimize.batch_tpe import ask_batch, n_startup
from app.optimize.rounds import TPE_DRAWS, PastTrial, ask_round
from app.optimize.space import build_space
from app.strategies import get_strategy
from app.strategies.registry import builtin_strategies
from app.strategies.base import CategoricalParam, FloatParam, IntParam, Strategy

SMA = get_strategy("SMA_CROSS")


class Mixed(Strategy):
    """Every kind of parameter the space knows (a test strategy: it never trades)."""

    name = "TEST_MIXED"
    space = (
        IntParam("n", 2, 500, default=10, log=True),
        FloatParam("rate", 1e-4, 1.0, default=0.01, log=True),
        FloatParam("k", 0.5, 4.0, default=2.0, step=0.25),
        IntParam("w", 3, 60, default=9, step=3),
        FloatParam("x", -1.0, 1.0, default=0.0),
        CategoricalParam("mode", ("a", "b", "c"), default="a"),
    )

    def positions(self, candles, params, cache):
        raise NotImplementedError


def mixed_value(p: dict) -> float:
    """Best at n=40, rate=0.01, k=3.0, w=30, x=0.25, mode "b"."""
    return -(math.log(p["n"] / 40) ** 2 + math.log10(p["rate"] / 0.01) ** 2 + (p["k"] - 3) ** 2
             + ((p["w"] - 30) / 10) ** 2 + 4 * (p["x"] - 0.25) ** 2) - (p["mode"] != "b")


def run(space, value, rounds: int, batch: int, seed: int, history=None) -> list[PastTrial]:
    history, state = list(history or []), {}
    for round_no in range(rounds):
        # The state carried from round to round as a job carries it: the next first pool's size.
        asked, state = ask_round(space, "bayesian", seed, round_no, batch, history, state)
        assert set(state) <= {TPE_DRAWS}
        for a in asked:
            history.append(PastTrial(len(history), a.params, value(a.params), a.system_attrs))
    return history


def key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def test_the_same_history_seed_and_round_give_the_same_batch():
    space = build_space(Mixed)
    first = run(space, mixed_value, 5, 16, seed=7)
    again = run(space, mixed_value, 5, 16, seed=7)
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.params for t in first] != [t.params for t in run(space, mixed_value, 5, 16, seed=8)]
    # And past start-up, from any given history: asked twice, the same.
    a, _ = ask_round(space, "bayesian", 3, 9, 32, first)
    b, _ = ask_round(space, "bayesian", 3, 9, 32, list(first))
    assert [t.params for t in a] == [t.params for t in b]


def test_sma_cross_never_gets_fast_at_or_above_slow():
    # The best values sit on the constraint's edge (fast just below slow), where half of
    # what the model draws breaks it.
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 120], "slow": [3, 121]})
    history = run(space, lambda p: -abs(p["slow"] - p["fast"] - 1) - abs(p["fast"] - 60) / 10,
                  12, 32, seed=1)
    assert all(t.params["fast"] < t.params["slow"] for t in history)
    assert all(SMA.feasible(t.params) for t in history)
    # It found the edge all the same.
    assert max(t.value for t in history) > -3


def test_draws_stay_on_the_grid_in_bounds_with_valid_choices():
    space = build_space(Mixed)
    history = run(space, mixed_value, 8, 32, seed=2)
    for t in history:
        p = t.params
        assert type(p["n"]) is int and 2 <= p["n"] <= 500
        assert type(p["rate"]) is float and 1e-4 <= p["rate"] <= 1.0
        assert p["k"] in [0.5 + 0.25 * i for i in range(15)]
        assert type(p["w"]) is int and p["w"] in range(3, 61, 3)
        assert type(p["x"]) is float and -1.0 <= p["x"] <= 1.0
        assert p["mode"] in ("a", "b", "c")
        assert Mixed.validate(p) == p
    # Log parameters are searched on their log scale: the model's draws cover decades.
    late = history[-64:]
    assert min(t.params["rate"] for t in late) < 0.01 < max(t.params["rate"] for t in late)


def test_no_parameter_set_twice_until_the_space_runs_out():
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 10], "slow": [3, 12]})
    assert space.feasible_grid_size() == 54
    history = run(space, lambda p: -abs(p["fast"] - 5) - abs(p["slow"] - 9), 6, 8, seed=4)
    keys = [key(t.params) for t in history]
    assert len(set(keys)) == len(keys) == 48
    # The seventh round has 6 new points left for 8 slots: it takes all 6, then repeats.
    more = run(space, lambda p: 0.0, 1, 8, seed=4, history=history)[48:]
    assert len(more) == 8 and all(SMA.feasible(t.params) for t in more)
    assert len({key(t.params) for t in more} - set(keys)) == 6
    assert len(set(keys) | {key(t.params) for t in more}) == 54


def test_a_round_has_no_duplicate_inside_it_even_when_the_model_has_converged():
    space = build_space(SMA, {"allow_short": False}, {"fast": [2, 30], "slow": [3, 60]})
    history = run(space, lambda p: -abs(p["fast"] - 8) - abs(p["slow"] - 21), 10, 32, seed=5)
    for start in range(0, len(history), 32):
        keys = [key(t.params) for t in history[start:start + 32]]
        assert len(set(keys)) == len(keys)
    assert len({key(t.params) for t in history}) == len(history)


def test_parts_are_disjoint_and_the_same_whoever_asks_them():
    # Each part dedups against the history and itself; across parts the draws are apart
    # by their own seeds, which in a space with a continuous parameter never meet (in a
    # 2-integer space a few percent do: see app.optimize.rounds).
    space = build_space(Mixed)
    history = run(space, mixed_value, 4, 32, seed=6)
    for round_no in (0, 4):   # start-up draws, then the model's
        past = [] if round_no == 0 else history
        parts = [ask_round(space, "bayesian", 6, round_no, 11, past, part=k, round_size=32)[0]
                 for k in range(3)]
        again = ask_round(space, "bayesian", 6, round_no, 11, past, part=1, round_size=32)[0]
        assert [a.params for a in again] == [a.params for a in parts[1]]
        keys = [key(a.params) for part in parts for a in part]
        assert len(set(keys)) == len(keys) == 33
        assert not set(keys) & {key(t.params) for t in past}
        whole = ask_round(space, "bayesian", 6, round_no, 32, past)[0]
        assert [a.params for a in whole] != [a.params for a in parts[0]]


def test_start_up_is_seeded_random_until_enough_trials_have_values():
    space = build_space(Mixed)
    assert n_startup(32) == 32 and n_startup(4) == 10 and n_startup(500) == 50
    failed = [PastTrial(i, p, None, {}) for i, p in enumerate(space.sample(40, 1))]
    first = ask_batch(space, failed, 16, 1, 2, round_size=32)
    assert [p for p, _ in first] == [p for p, _ in ask_batch(space, failed, 16, 1, 2, round_size=32)]
    assert len({key(p) for p, _ in first}) == 16
    assert not {key(p) for p, _ in first} & {key(t.params) for t in failed}


def _failing_share(drop_failed: bool, seed: int) -> float:
    """Share of failed trials among the last three rounds' of eight, when everything
    below x = 0 fails and the best value is at x = 0.15, near that edge."""
    space = build_space(Mixed, {"n": 40, "rate": 0.01, "k": 3.0, "w": 30, "mode": "b"})
    history = []
    for round_no in range(8):
        shown = [t for t in history if t.value is not None] if drop_failed else history
        for a in ask_round(space, "bayesian", seed, round_no, 32, shown)[0]:
            value = None if a.params["x"] < 0 else -abs(a.params["x"] - 0.15)
            history.append(PastTrial(len(history), a.params, value, {}))
    return sum(t.value is None for t in history[-96:]) / 96


def test_failed_trials_count_as_bad_and_keep_the_search_out_of_a_failing_region():
    assert np.mean([_failing_share(False, seed) for seed in range(3)]) < 0.1
    # Why they are not dropped (as optuna's TPE drops them): the good trials' kernels
    # spill over the edge, where no bad trial is left to hold them back, and the search
    # ends up almost only there.
    assert np.mean([_failing_share(True, seed) for seed in range(3)]) > 0.5


def test_a_space_with_nothing_free_repeats_its_fixed_point():
    space = build_space(SMA, {"fast": 5, "slow": 20, "allow_short": True})
    asked = ask_batch(space, [], 3, 0, 0)
    assert [p for p, _ in asked] == [{"fast": 5, "slow": 20, "allow_short": True}] * 3


def _bowl(p: dict) -> float:
    """A quadratic bowl over three parameters of different kinds, optimum 0."""
    return -(((p["n"] - 123) / 100) ** 2 + ((p["k"] - 1.25) / 2) ** 2 + (p["x"] + 0.4) ** 2)


def _planted_bests(seeds) -> tuple[float, float]:
    space = build_space(Mixed, {"rate": 0.01, "w": 30, "mode": "b"},
                        {"n": {"low": 2, "high": 500, "log": False}})
    tpe, rand = [], []
    for seed in seeds:
        history = run(space, _bowl, 10, 32, seed=seed)
        tpe.append(max(t.value for t in history))
        rand.append(max(_bowl(p) for p in space.sample(len(history), seed)))
    return float(np.mean(tpe)), float(np.mean(rand))


@pytest.mark.parametrize("seeds", [(0, 1, 2, 3)])
def test_a_planted_optimum_is_found_far_closer_than_by_random_search(seeds):
    # 320 trials: random search's best misses the optimum by 0.024-0.10 (mean of four
    # seeds), the batched TPE's by 0.00005-0.0007. Over 20 sets of four seeds the ratio
    # was at most 0.014: a tenth leaves room, and fails a sampler merely better than random.
    tpe, rand = _planted_bests(seeds)
    assert -tpe < 0.1 * -rand, (tpe, rand)


def test_a_warmed_worker_asks_its_first_round_without_compiling():
    # workers/warmup.py runs one ask at a worker's start: after it, a job's real round
    # (a grid space, a long history, several pools) finds every compiled loop it calls
    # ready, for each type it calls it with.
    import subprocess
    import sys

    code = """
from numba.core.registry import CPUDispatcher
from app.optimize import _tpe_kernel
from app.strategies import get_strategy
from app.strategies.registry import builtin_strategies
from workers.warmup import warm_sampler
warm_sampler(get_strategy("SMA_CROSS"))
def compiled():
    return {name: len(f.signatures) for name, f in vars(_tpe_kernel).items()
            if isinstance(f, CPUDispatcher)}
before = compiled()
from tests.unit.test_batch_tpe import SMA, run
from app.optimize.space import build_space
run(build_space(SMA), lambda p: -abs(p["slow"] - 3 * p["fast"]) - abs(p["fast"] - 40), 12, 64, seed=3)
print(before == compiled(), before, compiled())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True"), done.stdout


@pytest.mark.parametrize("name", [s.name for s in builtin_strategies()])
def test_the_compiled_grid_pool_keeps_what_the_numpy_route_keeps(name):
    # Every built-in space is a grid: its pools go through _tpe_kernel.grid_round in one
    # call. The numpy route (other spaces', and any with a rule grid_pool cannot read) must
    # agree on the same draws: as many live, the same picks in the same order, values of
    # the same types, and none of them a point the history holds.
    from app.optimize import _tpe_kernel
    from app.optimize.batch_tpe import _draws, _for_space, _Mixtures, _numpy_pool, _Seen
    from app.optimize.tpe_encoding import Encoder

    space = build_space(get_strategy(name))
    enc = Encoder.of(space)
    ctx = _for_space(space, enc)
    assert enc.radix is not None and ctx.grid_rules is not None
    points = space.sample(400, 3)
    seen = _Seen(enc)
    seen._read([PastTrial(i, p, float(i % 9), {}) for i, p in enumerate(points)])
    fit = _Mixtures(*_tpe_kernel.fit(seen.units[:60], seen.cats[:60], np.arange(10), 128, 7,
                                     enc.offsets))
    liar = (8, 0.04, 2.0, 1.0)   # block, width, choice match, peak
    flags = seen.taken_cells.copy()   # a grid's pool marks its points while it reads them
    for seed in range(5):
        random = _draws(np.random.default_rng(seed), 500, len(enc.numeric), len(enc.cats))
        a = _tpe_kernel.grid_round(fit.l_mus, fit.l_sigmas, fit.l_cum, enc.offsets, *random,
                                   enc.cells, enc.radix,
                                   seen.codes, seen.taken_cells, enc.low, enc.step,
                                   *ctx.grid_rules, *fit.scoring(), ctx.no_units, ctx.no_cats,
                                   40, fit.n_bad + 1, *liar)
        live, kept, units, cats = _numpy_pool(space, enc, seen, fit, random)
        chosen = _tpe_kernel.score_and_pick(units, cats, *fit.scoring(), enc.offsets, ctx.no_units,
                                            ctx.no_cats, 40, fit.n_bad + 1, *liar, ctx.cells)
        b = (live, kept[chosen], units[chosen], cats[chosen])
        assert np.array_equal(seen.taken_cells, flags)   # ... and leaves the history's as they were
        # A round's first pool is fitted in the same call (grid_ask): the same fit, the same picks.
        cat_match, peak = _tpe_kernel.liar_kernel(fit.n_bad, ctx.choices_count, len(enc.numeric), 0.04)
        fitted, liar_kernel, *first = _tpe_kernel.grid_ask(
            seen.units[:60], seen.cats[:60], np.arange(10), 128, 7, enc.offsets, ctx.choices_count,
            8, 0.04, *random, enc.cells, enc.radix, seen.codes, seen.taken_cells, enc.low, enc.step,
            *ctx.grid_rules, ctx.no_units, ctx.no_cats, 40)
        again = _tpe_kernel.grid_round(fit.l_mus, fit.l_sigmas, fit.l_cum, enc.offsets, *random,
                                       enc.cells, enc.radix, seen.codes, seen.taken_cells, enc.low,
                                       enc.step, *ctx.grid_rules, *fit.scoring(), ctx.no_units,
                                       ctx.no_cats, 40, fit.n_bad + 1, 8, 0.04, cat_match, peak)
        assert liar_kernel == (cat_match, peak) and all(
            np.array_equal(x, y) for x, y in zip(fitted, fit)) and all(
            np.array_equal(x, y) for x, y in zip(first, again))
        assert 0 < len(a[1]) <= a[0] == b[0]
        for x, y in zip(a[1:], b[1:]):   # the picks' values, units and choices
            assert x.dtype == y.dtype and np.array_equal(x, y)
        x, y = ctx.points(a[1], a[3]), ctx.points(b[1], b[3])
        assert [[(type(v), v) for v in p] for p in x] == [[(type(v), v) for v in p] for p in y]
        assert not any(enc.key(dict(zip(enc.names, p))) in seen.keys for p in x)


def test_the_compiled_mixture_density_integrates_to_one_and_matches_a_direct_sum():
    # l and g are mixtures of normals truncated to [0, 1] with categorical factors: each
    # must be a density (over a fine grid of [0, 1]^2 and the choices, it sums to 1) and
    # log_density must be log(sum_k exp(features . coef[k])) + shift, read directly.
    from scipy.special import logsumexp

    from app.optimize import _tpe_kernel

    rng = np.random.default_rng(4)
    offsets = np.array([0, 3], np.int64)   # one categorical of 3 choices
    for n in (1, 7, 40):
        units, cats = rng.random((n, 2)) ** 2, rng.integers(0, 3, (n, 1))
        _, _, coef, shift, _ = _tpe_kernel.mixture(units, cats, offsets)
        coef_t = np.ascontiguousarray(coef.T)
        side = (np.arange(400) + 0.5) / 400
        x = np.stack(np.meshgrid(side, side, indexing="ij"), -1).reshape(-1, 2)
        total = 0.0
        for choice in range(3):
            c = np.full((len(x), 1), choice, np.int64)
            log_p = _tpe_kernel.log_density(x, c, coef_t, 0, len(coef), shift, offsets,
                                            np.empty(len(coef)))
            total += np.exp(log_p).sum() / len(x)
            onehot = np.zeros((len(x), 3))
            onehot[:, choice] = 1.0
            features = np.concatenate([x * x, x, onehot, np.ones((len(x), 1))], 1)
            direct = logsumexp(features @ coef.T, axis=1) + shift
            assert np.allclose(log_p, direct, rtol=0, atol=1e-9)
        assert abs(total - 1.0) < 2e-3, (n, total)


@pytest.mark.parametrize("choices", [(), (("a", "b", "c"),), (("a", "b"), (True, False, 1, 0))])
def test_a_table_of_new_trials_reads_what_the_column_encoders_read(choices):
    # Encoder.table, the one pass a round reads its new trials with, against the column by
    # column encoders: the same values, choice indices (True and 1 different choices), and
    # NaN for a failed trial.
    from app.optimize.tpe_encoding import Encoder

    class Cats(Strategy):
        name = "TEST_CATS"
        space = (IntParam("n", 2, 50, default=10), FloatParam("k", 0.5, 4.0, default=2.0, step=0.5),
                 *(CategoricalParam(f"c{j}", c, default=c[0]) for j, c in enumerate(choices)))

        def positions(self, candles, params, cache):
            raise NotImplementedError

    space = build_space(Cats())
    enc = Encoder.of(space)
    points = space.sample(60, 2)
    trials = [PastTrial(i, p, None if i % 7 == 3 else float(i), {}) for i, p in enumerate(points)]
    table = enc.table(trials)
    d, c = len(enc.numeric), len(enc.cats)
    assert table.shape == (60, d + c + 1)
    assert np.array_equal(table[:, :d], enc.numeric_values(points))
    assert np.array_equal(table[:, d:d + c], enc.encode_cats(points))
    assert np.array_equal(np.isnan(table[:, -1]), [i % 7 == 3 for i in range(60)])
    if c == 2:   # every choice of the mixed-type categorical is read as itself
        assert sorted(set(table[:, d + 1].tolist())) == [0.0, 1.0, 2.0, 3.0]

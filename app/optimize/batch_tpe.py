"""A batched Tree-structured Parzen Estimator: one fit per round, a batch of distinct,
feasible parameter sets drawn from it. numpy, and numba for its inner loops
(app/optimize/_tpe_kernel.py).

The rules:

- Space. Each free numeric parameter maps onto [0, 1]: an int or a stepped float by its
  grid cell (cell k of K spans [k/K, (k+1)/K]; a draw is rounded back onto the grid); a
  log int onto log [low - 0.5, high + 0.5], as optuna does; a log float onto its log
  range; any other float linearly. A categorical parameter is a choice index.
- Split. Finished trials with a value are ranked (ties: the earlier trial first); the
  best ``min(ceil(0.1 n), 25)`` are good (optuna's default gamma), the others bad, and so
  is every failed trial (value None or NaN): its point is not a good one, and g is how
  the search learns to stop asking for it. Dropped (as optuna's TPE drops them), the good
  kernels spill into a failing region beside them with nothing there to hold them back:
  in tests/unit/test_batch_tpe.py's edge case, most late trials then fail; under a tenth
  when they count as bad.
- Densities. Good l(x) and bad g(x) are mixtures of product kernels, one a trial, plus
  one broad prior kernel (centre 0.5, width 1; uniform over choices), all of equal
  weight. Numeric kernels are normals truncated to [0, 1], their width in a dimension
  the larger gap to the trial's neighbours there, clipped to [1/min(100, n+2), 1]
  (optuna's TPE bandwidth and "magic clip"). Categorical kernels put 1 on the trial's
  choice plus 1/(n+1) on each. g is fitted on at most MAX_BAD_KERNELS bad trials, a
  seeded uniform sample (Floyd's) that keeps its shape: its cost stays the same at 500
  trials or 50,000. The history is read once a job (``_Seen``: each round reads only
  the trials that are new to it).
- Batch. A round draws one pool of candidates from l, drops those that break a
  constraint or that the history holds (on a grid, before they are converted: a flag or
  a sorted integer a point), and scores the rest at once by log l(x) - log g(x). The
  pool is sized for CANDIDATES_PER_SLOT live candidates a slot. (optuna draws 24 for each
  ask and keeps the best; a shared pool of 4 a slot found as good values on
  bench/sampler.py's objectives, 32 seeds, from a sixth of the draws; 3 as good as 4,
  mean bests after 400 trials sweep7 0.503/0.505, branin -0.4004/-0.4002, hartmann6
  3.199/3.179, rosenbrock4 -1.82/-1.84, for a quarter less work a round; 2 a slot lost
  on three of four, 16 seeds: sweep7 0.495/0.507, branin -0.4020/-0.4006, rosenbrock4
  -1.79/-1.53, hartmann6 3.200/3.179. Halving g's kernels to 64 lost a little on all
  four.) A model that has
  converged onto points the history holds needs many draws for each live one, so the
  round's state (``ask_batch_in_state``) carries the draws a slot its last pool needed to
  the next round's first pool; within a round, a pool that ran out is followed by one
  sized by its yield (MAX_POOLS in all, at most MAX_POOL_SLOT draws a slot). The batch is
  picked LIAR_BLOCK at a time, best score first, passing over copies of picks; after each
  block the picks join g as bad trials (one kernel of LIAR_WIDTH each), so that the next
  block spreads out instead of piling onto the best region: optuna's constant liar, once
  a block instead of once an ask. Slots still empty take new feasible random draws
  (marked ``trad:repaired``); only a space whose every point is taken repeats one.
- Start-up. Until ``n_startup`` trials have a value: seeded feasible random draws, new first.
- Seeds. ``fit_seed`` picks g's sample (the same for every part of a round, so the parts
  share one fit); ``draw_seed`` draws the candidates and the random fills (a part's own).
  The same (history, seeds, size, state) give the same parameters, in the same order.
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from contextlib import contextmanager
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from app.errors import InputError
from app.optimize import _tpe_kernel
from app.optimize.tpe_encoding import Encoder

__all__ = ["CANDIDATES_PER_SLOT", "MAX_BAD_KERNELS", "MAX_GOOD", "ask_batch", "ask_batch_in_state",
           "n_startup"]

CANDIDATES_PER_SLOT = 3 # live candidates a round's pool is drawn to hold, a slot
MAX_POOLS = 3           # pools a round draws before its last slots fall back to random
MAX_POOL_SLOT = 64      # draws a pool makes, at most, for each slot of the round
BITMAP_CELLS = 1 << 22  # a grid this small keeps a flag a point (4 MB): taken or not
MAX_GOOD = 25           # optuna's default gamma caps the good set here
MAX_BAD_KERNELS = 128   # g's kernels: a round's scoring cost is linear in them
LIAR_BLOCK = 8          # slots picked between two updates of the liar
# A pick's kernel width in g, a fraction of each range. Chosen on bench/sampler.py's four
# objectives (32 seeds): l's narrowest width (1/(n_good+2), 1/6 in the first rounds)
# spread the early rounds too thin; 0.02-0.05 did better everywhere, 0.04 best overall.
LIAR_WIDTH = 0.04
REPAIRED = {"trad:repaired": True}
FILL_GRID_MAX = 20_000  # a space this small is listed to find its last new points


def n_startup(round_size: int) -> int:
    """Finished trials needed before the model is used (as optuna's TPE was set up)."""
    return max(10, min(round_size, 50))


class _Mixtures(NamedTuple):
    """A round's fit (``_tpe_kernel.fit``): l's kernels (centres, widths, cumulated choice
    probabilities), l's and g's log-density coefficients (stacked, transposed), l's kernel
    count, their shifts, and g's trial count."""

    l_mus: np.ndarray
    l_sigmas: np.ndarray
    l_cum: np.ndarray
    coef_t: np.ndarray
    l_kernels: int
    l_shift: float
    g_shift: float
    n_bad: int

    def scoring(self) -> tuple:
        """What ``_tpe_kernel.score_and_pick`` reads of the fit."""
        return self.coef_t, self.l_kernels, self.l_shift, self.g_shift


def _draws(rng: np.random.Generator, m: int, d: int, c: int) -> tuple:
    """The random numbers ``_tpe_kernel.draw`` reads for ``m`` draws of ``d`` numeric and
    ``c`` categorical parameters: a kernel and each choice's (uniform), the normals, spare
    normals for redraws past [0, 1], and uniforms for the few still outside after three."""
    uniform = rng.random(m * (1 + c) + m * d // 16 + 16)
    normal = rng.standard_normal(m * d + m * d // 4 + 16)
    return (uniform[:m * (1 + c)].reshape(m, -1), normal[:m * d].reshape(m, d), normal[m * d:],
            uniform[m * (1 + c):])


def _seed32(seed: int) -> int:
    """A uint32 seed for numba's generator from any int seed (a hash: nearby seeds land far
    apart)."""
    return int.from_bytes(hashlib.blake2b(b"%d" % seed, digest_size=4).digest(), "little")


_GENERATORS = threading.local()


def _generator(seed: int, stream: int) -> np.random.Generator:
    """numpy's PCG64 generator for (``seed``, ``stream``): its 128-bit state and increment
    are a hash of the pair. One generator a thread, its state set again each call:
    ``default_rng([seed, stream])`` costs 4x as much (its SeedSequence), most of the setup
    a round paid for its draws."""
    g = getattr(_GENERATORS, "g", None)
    if g is None:
        g = _GENERATORS.g = np.random.Generator(np.random.PCG64(0))
        _GENERATORS.state = g.bit_generator.state
    h = hashlib.blake2b(b"%d:%d" % (seed, stream), digest_size=32).digest()
    state = _GENERATORS.state
    state["state"]["state"] = int.from_bytes(h[:16], "little")
    state["state"]["inc"] = int.from_bytes(h[16:], "little") | 1
    state["has_uint32"], state["uinteger"] = 0, 0
    g.bit_generator.state = state
    return g


def ask_batch(space, history, n: int, fit_seed: int, draw_seed: int,
              round_size: int | None = None) -> list[tuple[dict, dict]]:
    """``n`` feasible parameter sets (complete, with the fixed ones) and each one's
    system attributes, from ``history`` (objects with ``params`` and ``value``, value
    None for a failed trial); ``round_size``: the whole round's, when this is a part of
    it (it sets the start-up). See the module docstring for the rules."""
    return ask_batch_in_state(space, history, n, fit_seed, draw_seed, round_size)[0]


def ask_batch_in_state(space, history, n: int, fit_seed: int, draw_seed: int,
                       round_size: int | None = None, draws: float | None = None
                       ) -> tuple[list[tuple[dict, dict]], float | None]:
    """``ask_batch``, its first pool ``draws`` draws a slot (None: CANDIDATES_PER_SLOT);
    also returns the draws a slot the next round's first pool should make: what would
    have given this round's last pool CANDIDATES_PER_SLOT live candidates a slot (a
    converged model's first pool is then large enough on its own)."""
    enc = Encoder.of(space)
    if not enc.names or n <= 0:
        return [(space.complete({}), {}) for _ in range(n)], draws
    with _Seen.taken(history, enc) as seen:
        return _ask(space, enc, seen, n, fit_seed, draw_seed, round_size, draws)


def _ask(space, enc: Encoder, seen: _Seen, n: int, fit_seed: int, draw_seed: int,
         round_size: int | None, draws: float | None) -> tuple[list, float | None]:
    values = seen.values
    n_valued = len(values) - seen.failed
    if n_valued < n_startup(round_size or n):
        return _random_fill(space, enc.key, n, draw_seed, set(), seen.keys), draws

    n_good = min(math.ceil(0.1 * n_valued), MAX_GOOD)
    if n_good == MAX_GOOD:
        best = seen.top
    else:
        best = _sorted_head(-np.where(np.isnan(values), -np.inf, values), n_good)[:n_good]
    # l of the best, g of the rest and the failed (a seeded uniform sample past
    # MAX_BAD_KERNELS): on a grid, fitted with the first pool, in one compiled call.
    ctx = _for_space(space, enc)
    picks_units, picks_cats = ctx.no_units, ctx.no_cats
    out: list = []
    rng = _generator(draw_seed, 1)
    fit, liar = None, None
    size = math.ceil(min(max(draws or 0.0, CANDIDATES_PER_SLOT), MAX_POOL_SLOT) * n)
    for _ in range(MAX_POOLS):
        want = n - len(out)
        random = _draws(rng, size, len(enc.numeric), len(enc.cats))
        if fit is None and ctx.grid_rules is not None:
            fitted, (cat_match, peak), live, chosen_values, chosen_units, chosen_cats = \
                _tpe_kernel.grid_ask(seen.units, seen.cats, best, MAX_BAD_KERNELS,
                                     _seed32(fit_seed), enc.offsets, ctx.choices_count,
                                     LIAR_BLOCK, LIAR_WIDTH, *random, enc.cells, enc.radix,
                                     seen.codes, seen.taken_cells, enc.low, enc.step,
                                     *ctx.grid_rules, picks_units, picks_cats, want)
            fit, liar = _Mixtures(*fitted), (LIAR_BLOCK, LIAR_WIDTH, cat_match, peak)
        elif ctx.grid_rules is not None:
            live, chosen_values, chosen_units, chosen_cats = _tpe_kernel.grid_round(
                fit.l_mus, fit.l_sigmas, fit.l_cum, enc.offsets, *random, enc.cells, enc.radix,
                seen.codes, seen.taken_cells, enc.low, enc.step, *ctx.grid_rules,
                *fit.scoring(), picks_units, picks_cats, want, fit.n_bad + 1, *liar)
        else:
            if fit is None:
                fit = _Mixtures(*_tpe_kernel.fit(seen.units, seen.cats, best, MAX_BAD_KERNELS,
                                                 _seed32(fit_seed), enc.offsets))
                liar = (LIAR_BLOCK, LIAR_WIDTH, *_tpe_kernel.liar_kernel(
                    fit.n_bad, ctx.choices_count, len(enc.numeric), LIAR_WIDTH))
            live, kept, units, cats = _numpy_pool(space, enc, seen, fit, random)
            chosen = _tpe_kernel.score_and_pick(units, cats, *fit.scoring(), enc.offsets,
                                                picks_units, picks_cats, want, fit.n_bad + 1,
                                                *liar, ctx.cells)
            chosen_values, chosen_units, chosen_cats = kept[chosen], units[chosen], cats[chosen]
        draws = round(CANDIDATES_PER_SLOT * size / max(live, 1), 2)
        out += [(params, {}) for params in ctx.complete(ctx.points(chosen_values, chosen_cats))]
        if len(out) == n:
            return out, draws
        picks_units = np.concatenate([picks_units, chosen_units])
        picks_cats = np.concatenate([picks_cats, chosen_cats])
        # The next pool is drawn to hold CANDIDATES_PER_SLOT new points a slot left at this
        # one's yield (picks a draw): a model that has converged onto points the history
        # holds draws a larger pool, up to MAX_POOL_SLOT draws a slot of the round.
        size = min(MAX_POOL_SLOT * n, math.ceil(CANDIDATES_PER_SLOT * (n - len(out)) * size
                                                / max(len(chosen_values), 1)))
    used = set(map(enc.key, (params for params, _ in out)))
    return out + [(params, dict(REPAIRED)) for params, _ in
                  _random_fill(space, enc.key, n - len(out), draw_seed + 1, used, seen.keys)], draws


def _numpy_pool(space, enc: Encoder, seen: _Seen, fit: _Mixtures, random: tuple) -> tuple:
    """A pool's draws off a grid (or with a rule grid_pool cannot read), in numpy: draws
    from l (``random``: what ``_draws`` drew), of which the live ones are kept:
    feasible, not in the history, each point once (its first draw). Returns how many draws
    were live, and the kept ones' values, unit positions and choices."""
    raw, cats = _tpe_kernel.draw(fit.l_mus, fit.l_sigmas, fit.l_cum, enc.offsets, *random)
    m = len(raw)
    values = enc.to_values(raw)
    units = enc.to_units(values)
    columns = {name: values[:, i].astype(np.int64) if enc.is_int[i] else values[:, i]
               for i, name in enumerate(enc.numeric)}
    for j, p in enumerate(enc.cats):
        columns[p.name] = np.array(p.choices, dtype=object)[cats[:, j]]
    live = space.feasible_mask(columns, m)
    points = list(zip(*(columns[name].tolist() for name in enc.names)))
    live &= np.fromiter((p not in seen.keys for p in points), bool, m)
    live = np.flatnonzero(live)
    first: dict = {}
    kept = np.array([i for i in live.tolist() if first.setdefault(points[i], i) == i], np.int64)
    return len(live), values[kept], units[kept], cats[kept]


class _SpaceContext(NamedTuple):
    """What a round needs of its space beyond the encoder (``_for_space``)."""

    complete: object          # points (free values in Encoder.names order) -> complete params
    grid_rules: tuple | None  # a grid's constraints as grid_round reads them, or None
    cells: np.ndarray         # the grid's cells, when the liar can read it (else empty)
    is_int: list              # each numeric parameter's: an int or not
    choices_count: np.ndarray # each categorical's number of choices
    choices: list             # each categorical's choices, an object array
    no_units: np.ndarray      # no picks yet
    no_cats: np.ndarray

    def points(self, values: np.ndarray, cats: np.ndarray) -> list[tuple]:
        """Points (free values: ints, floats, choices) of values and choice indices."""
        columns = [values[:, i].astype(np.int64) if is_int else values[:, i]
                   for i, is_int in enumerate(self.is_int)]
        columns += [choices[cats[:, j]] for j, choices in enumerate(self.choices)]
        return list(zip(*(column.tolist() for column in columns)))


_PER_SPACE: dict = {}   # (space, what _for_space made of it) by the space's id


def _for_space(space, enc: Encoder) -> _SpaceContext:
    """What a round needs of its space beyond the encoder, made once for the same space
    object (jobs reuse theirs: TrainingRequest.space)."""
    hit = _PER_SPACE.get(id(space))
    if hit is None or hit[0] is not space:
        rules = enc.rules(space)
        grid = enc.radix is not None and rules is not None
        ctx = _SpaceContext(_completer(space, enc), rules if grid else None,
                            enc.cells if grid else np.zeros(0), enc.is_int.tolist(),
                            np.array(enc.choices, np.int64),
                            [np.array(p.choices, dtype=object) for p in enc.cats],
                            np.zeros((0, len(enc.numeric))), np.zeros((0, len(enc.cats)), np.int64))
        if len(_PER_SPACE) >= 64:
            _PER_SPACE.clear()
        hit = _PER_SPACE[id(space)] = (space, ctx)
    return hit[1]


def _completer(space, enc: Encoder):
    """points (each the free values in ``enc.names`` order) -> ``space.complete`` of each,
    at a third of the cost: the strategy's parameters in order, fixed ones from the space."""
    names = [p.name for p in space.strategy.space]
    if names == enc.names:   # every parameter free, in the strategy's order
        return lambda points: [dict(zip(names, point)) for point in points]
    fixed = tuple(space.fixed.get(name) for name in names)
    at = {name: i for i, name in enumerate(enc.names)}
    where = [at[name] if name in at else len(at) + i for i, name in enumerate(names)]
    if len(names) == 1:
        return lambda points: [{names[0]: (point + fixed)[where[0]]} for point in points]
    pick = itemgetter(*where)
    return lambda points: [dict(zip(names, pick(point + fixed))) for point in points]


class _Seen:
    """What a round reads of the history, encoded: the trials' values (NaN: failed), unit
    positions, choice indices and point keys (``Encoder.key``). A job asks round after
    round from the same trials and more (the services' history cache hands out the same
    objects), so what the last round read is kept, its trials held, and only the new ones
    are read: a history of 5,000 used to cost ~1.5 ms a round to read again. Kept for
    MAX_SEEN histories, each by its first trial and its encoder; a history that is not the
    kept one's trials and more (compared by identity first, then by value) is read whole."""

    MAX_SEEN = 16
    _kept: OrderedDict = OrderedDict()
    _lock = threading.Lock()

    def __init__(self, enc: Encoder):
        self.enc, self.trials, self._keys, self._keyed = enc, [], set(), 0
        self.failed = 0   # trials without a value
        # Grown by doubling (a round adds a few dozen trials to thousands): values, units
        # and cats are views of their first len(trials) rows.
        self._values = np.empty(0)
        self._units = np.zeros((0, len(enc.numeric)))
        self._cats = np.zeros((0, len(enc.cats)), np.int64)
        self.codes = np.zeros(0, np.int64)   # sorted; on a large grid only (Encoder.codes)
        self.top = np.zeros(0, np.int64)     # the MAX_GOOD best, best first (ties: earlier)
        # And on a grid of at most BITMAP_CELLS points, a flag a point: taken or not.
        small = enc.radix is not None and enc.grid_points <= BITMAP_CELLS
        self.taken_cells = np.zeros(enc.grid_points if small else 0, np.bool_)

    @classmethod
    @contextmanager
    def taken(cls, history, enc: Encoder):
        """The history read, this round's alone while it asks (a thread asking for the same
        job meanwhile reads its own), kept again after."""
        history = history if isinstance(history, list) else list(history)
        slot = (id(history[0]), id(enc)) if history else None
        with cls._lock:
            seen = cls._kept.pop(slot, None) if slot else None
        k = len(seen.trials) if seen is not None else 0
        if seen is None or k > len(history) or history[:k] != seen.trials:
            seen = cls(enc)
        seen._read(history[len(seen.trials):])
        yield seen
        if slot:
            with cls._lock:
                cls._kept[slot] = seen
                while len(cls._kept) > cls.MAX_SEEN:
                    cls._kept.popitem(last=False)

    @property
    def keys(self) -> set:
        """The history's points as ``Encoder.key`` tuples (read when first asked for: a
        grid's pools check ``codes`` instead, so only random fills and other spaces do)."""
        if self._keyed < len(self.trials):
            self._keys.update(map(self.enc.key, (t.params for t in self.trials[self._keyed:])))
            self._keyed = len(self.trials)
        return self._keys

    @property
    def values(self) -> np.ndarray:
        return self._values[:len(self.trials)]

    @property
    def units(self) -> np.ndarray:
        return self._units[:len(self.trials)]

    @property
    def cats(self) -> np.ndarray:
        return self._cats[:len(self.trials)]

    def _read(self, trials: list) -> None:
        if not trials:
            return
        start, end = len(self.trials), len(self.trials) + len(trials)
        if end > len(self._values):
            size = max(end, 2 * len(self._values), 256)
            self._values = np.resize(self._values, size)
            self._units = np.resize(self._units, (size, self._units.shape[1]))
            self._cats = np.resize(self._cats, (size, self._cats.shape[1]))
        enc = self.enc
        if enc.radix is not None:   # a grid: stored, flagged and ranked in one compiled pass
            codes, self.top, failed = _tpe_kernel.read_grid(
                enc.table(trials), enc.low, enc.step, enc.cells, enc.radix, self.taken_cells,
                self._units, self._cats, self._values, start, self.top, MAX_GOOD)
            if not len(self.taken_cells):
                codes.sort()
                self.codes = np.insert(self.codes, np.searchsorted(self.codes, codes), codes)
        else:
            values = np.array([t.value for t in trials], dtype=float)   # None: NaN
            self._units[start:end], self._cats[start:end] = enc.encode([t.params for t in trials])
            self._values[start:end] = values
            failed = int(np.isnan(values).sum())
            # The best of the kept best and the new trials is the best of all.
            self.top = _tpe_kernel.merge_top(self.top, self._values[:end], start, MAX_GOOD)
        self.failed += failed
        self.trials.extend(trials)


def _sorted_head(key: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(key, kind="stable")``'s first k and the ties at the cut, by a partition."""
    cut = np.partition(key, k - 1)[k - 1] if k < len(key) else math.nan
    if math.isnan(cut):
        return np.argsort(key, kind="stable")
    head = np.flatnonzero(key <= cut)
    return head[np.argsort(key[head], kind="stable")]


def _random_fill(space, key, n: int, seed: int, used: set,
                 taken: set = frozenset()) -> list[tuple[dict, dict]]:
    """``n`` seeded feasible random points, new ones (``key`` in neither ``used`` nor
    ``taken``) first; ``used`` grows with them. When a few hundred draws find too few new points, a small
    space's grid is searched in a seeded order; only then are points repeated."""
    out, spare = [], []

    def take(points) -> bool:
        for point in points:
            k = key(point)
            if k in used or k in taken:
                spare.append(point)
                continue
            used.add(k)
            out.append((space.complete(point), {}))
            if len(out) == n:
                return True
        return False

    for attempt in range(4):
        if take(space.sample(max(2 * n, 16) << attempt, seed + 7_919 * attempt)):
            return out
    try:
        small = space.feasible_grid_size() <= FILL_GRID_MAX
    except InputError:   # a group too large to count: not small
        small = False
    if small:
        grid = space.grid()
        if take(grid[i] for i in np.random.default_rng([seed, 2]).permutation(len(grid)).tolist()):
            return out
    while len(out) < n:  # every point is taken: the space is exhausted
        out.append((space.complete(spare[len(out) % len(spare)]), {}))
    return out

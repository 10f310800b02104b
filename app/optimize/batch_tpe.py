"""A batched Tree-structured Parzen Estimator: one fit per round, a batch of distinct,
feasible parameter sets drawn from it. Pure numpy.

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
  seeded uniform sample that keeps its shape: its cost stays the same at 500 trials or
  50,000 (what grows with the history is reading it and the duplicate check, ~0.2 us a
  past trial).
- Batch. A round draws one pool of CANDIDATES_PER_SLOT candidates a slot from l and
  scores them all at once by log l(x) - log g(x). (optuna draws 24 for each ask and keeps
  the best; a shared pool of 4 a slot found as good values on bench/sampler.py's
  objectives, 32 seeds, from a sixth of the draws.) Infeasible candidates go first. The
  batch is picked LIAR_BLOCK at a time, best score first, skipping points in the history
  or already picked; after each block the picks join g as bad trials (one kernel of
  LIAR_WIDTH each), so that the next block spreads out instead of piling onto the
  best region: optuna's constant liar, once a block instead of once an ask. A pool with
  nothing new and feasible left is followed by another (MAX_POOLS in all); slots still
  empty take new feasible random draws (marked ``trad:repaired``); only a space whose
  every point is taken repeats one.
- Start-up. Until ``n_startup`` trials have a value: seeded feasible random draws, new first.
- Seeds. ``fit_seed`` picks g's sample (the same for every part of a round, so the parts
  share one fit); ``draw_seed`` draws the candidates and the random fills (a part's own).
  The same (history, seeds, size) give the same parameters, in the same order.
"""
from __future__ import annotations

import math
from itertools import chain
from operator import itemgetter

import numpy as np

from app.errors import InputError
from app.optimize.tpe_encoding import Encoder

__all__ = ["CANDIDATES_PER_SLOT", "MAX_BAD_KERNELS", "MAX_GOOD", "ask_batch", "n_startup"]

CANDIDATES_PER_SLOT = 4 # a round's pool holds this many draws from l for each slot
MAX_POOLS = 3           # pools a round draws before its last slots fall back to random
MAX_GOOD = 25           # optuna's default gamma caps the good set here
MAX_BAD_KERNELS = 128   # g's kernels: a round's scoring cost is linear in them
LIAR_BLOCK = 8          # slots picked between two updates of the liar
# A pick's kernel width in g, a fraction of each range. Chosen on bench/sampler.py's four
# objectives (32 seeds): l's narrowest width (1/(n_good+2), 1/6 in the first rounds)
# spread the early rounds too thin; 0.02-0.05 did better everywhere, 0.04 best overall.
LIAR_WIDTH = 0.04
REPAIRED = {"trad:repaired": True}
FILL_GRID_MAX = 20_000  # a space this small is listed to find its last new points
_LOG_2PI = math.log(2 * math.pi)
# OpenBLAS runs a product above ~2.6e5 multiply-adds on all its threads, which on a busy
# worker wait for each other (22 ms instead of 1.3); smaller blocks stay on this thread.
_BLAS_SINGLE_THREAD = 200_000
# Most of a kernel's log density at a far point is below -700: numpy's exp takes a slow
# path for results that underflow (8x slower here), and e^-700 already adds nothing.
_EXP_FLOOR = -700.0


def n_startup(round_size: int) -> int:
    """Finished trials needed before the model is used (as optuna's TPE was set up)."""
    return max(10, min(round_size, 50))


def _log_mass(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log of the mass a normal (mu, sigma) puts on [0, 1]. With mu in [0, 1] and
    sigma <= 1 the mass is in [0.34, 1], so Abramowitz & Stegun's erf (7.1.26,
    |error| < 1.5e-7) is exact enough and keeps this numpy only."""
    def erf(x):
        s, x = np.sign(x), np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * x)
        poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
                + 0.254829592) * t
        return s * (1.0 - poly * np.exp(-x * x))

    k = 1.0 / (sigma * math.sqrt(2.0))
    both = erf(np.stack([(1.0 - mu) * k, -mu * k]))
    return np.log(0.5 * (both[0] - both[1]))


def _bandwidths(mus: np.ndarray) -> np.ndarray:
    """optuna's TPE widths, per kernel and dimension: the larger gap to the neighbours in
    that dimension (the outermost kernels use their inner gap), clipped to
    [1/min(100, n+2), 1]."""
    n, d = mus.shape
    if n == 0:
        return np.zeros((0, d))
    order = np.argsort(mus, axis=0, kind="stable")
    columns = np.arange(d)
    padded = np.concatenate([np.zeros((1, d)), mus[order, columns], np.ones((1, d))])
    gaps = np.maximum(padded[1:-1] - padded[:-2], padded[2:] - padded[1:-1])
    if n >= 2:
        gaps[0] = padded[2] - padded[1]
        gaps[-1] = padded[-2] - padded[-3]
    sigmas = np.empty_like(gaps)
    sigmas[order, columns] = gaps
    return np.minimum(np.maximum(sigmas, 1.0 / min(100.0, n + 2.0)), 1.0)


class _Parzen:
    """A mixture of product kernels, one per observation plus the prior, equal weights."""

    @classmethod
    def fit(cls, units: np.ndarray, cats: np.ndarray, choices: list, split: int) -> list:
        """The mixtures of the first ``split`` points and of the rest, fitted together:
        each step that is the same for every kernel taken once for both (half the calls)."""
        d = units.shape[1]
        sets = [(units[:split], cats[:split]), (units[split:], cats[split:])]
        # The prior kernel is each one's last row: centre 0.5, width 1, uniform choices.
        mus = np.concatenate([r for u, _ in sets for r in (u, np.full((1, d), 0.5))])
        sigmas = np.concatenate([r for u, _ in sets for r in (_bandwidths(u), np.ones((1, d)))])
        # log kernel(x) = [x*x, x, onehot, 1] . coef: one matrix product scores many
        # points. ``shift`` is the highest kernel's peak: exp(score - shift) <= 1 never
        # overflows, and the prior kernel, never more than ~6 a dimension below the
        # peak, keeps a sum from underflowing (so no per-point maximum is needed).
        a = 1.0 / (sigmas * sigmas)
        peak = -np.log(sigmas).sum(1) - _log_mass(mus, sigmas).sum(1) - 0.5 * d * _LOG_2PI
        quad, linear = 0.5 * (mus * mus * a).sum(1), np.concatenate([-0.5 * a, mus * a], 1)
        out, lo = [], 0
        for u, c in sets:
            rows = slice(lo, lo + len(u) + 1)
            out.append(cls(mus[rows], sigmas[rows], c, choices,
                           peak[rows] - math.log(len(u) + 1.0), quad[rows], linear[rows]))
            lo = rows.stop
        return out

    def __init__(self, mus, sigmas, cats, choices, peak, quad, linear):
        n = len(cats)
        self.mus, self.sigmas, self.choices = mus, sigmas, choices
        self.cat_p = []
        for j, c in enumerate(choices):
            p = np.full((n + 1, c), 1.0 / (n + 1.0))
            p[np.arange(n), cats[:, j]] += 1.0
            self.cat_p.append(p / p.sum(1, keepdims=True))
        self.shift = float(peak.max())
        const = peak - quad - self.shift
        self.coef = np.concatenate([linear] + [np.log(p) for p in self.cat_p] + [const[:, None]], 1)

    @staticmethod
    def features(units: np.ndarray, onehot: np.ndarray) -> np.ndarray:
        return np.concatenate([units * units, units, onehot, np.ones((units.shape[0], 1))], 1)

    def log_pdf(self, features: np.ndarray) -> np.ndarray:
        out = np.empty(features.shape[0])
        rows = max(16, _BLAS_SINGLE_THREAD // self.coef.size)
        for i in range(0, features.shape[0], rows):
            s = features[i:i + rows] @ self.coef.T
            out[i:i + rows] = np.exp(np.maximum(s, _EXP_FLOOR, out=s), out=s).sum(1)
        return np.log(out) + self.shift

    def sample(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``m`` draws: a kernel each, then its normal truncated to [0, 1] and its choices.
        A draw outside [0, 1] is drawn again, three times, then uniformly (the few left
        after three tries are from wide kernels, which are nearly uniform there)."""
        k = rng.integers(0, self.mus.shape[0], size=m)
        mu, sd = self.mus[k], self.sigmas[k]
        units = mu + sd * rng.standard_normal(mu.shape)
        flat, mu, sd = units.reshape(-1), mu.reshape(-1), sd.reshape(-1)
        out = np.flatnonzero((flat < 0.0) | (flat > 1.0))   # redrawn in this order
        for _ in range(3):
            if not out.size:
                break
            flat[out] = redrawn = mu[out] + sd[out] * rng.standard_normal(out.size)
            out = out[(redrawn < 0.0) | (redrawn > 1.0)]
        flat[out] = rng.random(out.size)
        cats = np.zeros((m, len(self.choices)), np.int64)
        for j, c in enumerate(self.choices):
            cdf = np.cumsum(self.cat_p[j][k], 1)
            cats[:, j] = np.minimum((rng.random(m)[:, None] > cdf).sum(1), c - 1)
        return units, cats


def ask_batch(space, history, n: int, fit_seed: int, draw_seed: int,
              round_size: int | None = None) -> list[tuple[dict, dict]]:
    """``n`` feasible parameter sets (complete, with the fixed ones) and each one's
    system attributes, from ``history`` (objects with ``params`` and ``value``, value
    None for a failed trial); ``round_size``: the whole round's, when this is a part of
    it (it sets the start-up). See the module docstring for the rules."""
    enc = Encoder.of(space)
    if not enc.names or n <= 0:
        return [(space.complete({}), {}) for _ in range(n)]
    key = itemgetter(*enc.names) if len(enc.names) > 1 else (lambda d: (d[enc.names[0]],))
    past = [t.params for t in history]
    values = np.array([t.value for t in history], dtype=float)  # None: NaN
    valued = ~np.isnan(values)
    if int(valued.sum()) < n_startup(round_size or n):
        return _random_fill(space, key, n, draw_seed, set(map(key, past)))

    n_good = min(math.ceil(0.1 * int(valued.sum())), MAX_GOOD)
    best = _sorted_head(-np.where(valued, values, -np.inf), n_good)[:n_good]
    bad = np.delete(np.arange(len(values)), best)   # the rest and the failed, in order
    if len(bad) > MAX_BAD_KERNELS:
        pick = np.random.default_rng([fit_seed, 0]).choice(len(bad), MAX_BAD_KERNELS, replace=False)
        bad = bad[np.sort(pick)]
    units, cats = enc.encode([past[i] for i in chain(best.tolist(), bad.tolist())])
    good, worse = _Parzen.fit(units, cats, enc.choices, n_good)

    rng = np.random.default_rng([draw_seed, 1])
    liar = _Liar(enc.choices, LIAR_WIDTH, len(bad) + 1)
    used: set = set()
    out: list = []
    for _ in range(MAX_POOLS):
        pool = _Pool(space, enc, good, worse, rng, CANDIDATES_PER_SLOT * (n - len(out)))
        used |= enc.seen(past, key, pool.lists)
        liar.start(pool)
        gone = np.zeros(len(pool.points), bool)   # picked or found in ``used``: skipped
        while len(out) < n:
            rank = liar.log_g(pool.log_g) - pool.log_l   # best (lowest) first; inf: infeasible
            rank[gone] = np.inf
            picked = []
            for i, r in _best_first(rank, 2 * LIAR_BLOCK):
                if r == math.inf or len(picked) == LIAR_BLOCK or len(out) == n:
                    break
                gone[i] = True
                if pool.points[i] not in used:
                    used.add(pool.points[i])
                    picked.append(i)
                    out.append((space.complete(dict(zip(enc.names, pool.points[i]))), {}))
            if not picked:
                break   # nothing new and feasible left in this pool
            if len(out) < n:   # (the last block's picks have nothing left to spread)
                liar.tell(pool, picked)
        if len(out) == n:
            return out
    used |= set(map(key, past))   # random fills may repeat any past trial: check them all
    return out + [(params, dict(REPAIRED))
                  for params, _ in _random_fill(space, key, n - len(out), draw_seed + 1, used)]


def _sorted_head(key: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(key, kind="stable")``'s first k and the ties at the cut, by a partition."""
    cut = np.partition(key, k - 1)[k - 1] if k < len(key) else math.nan
    if math.isnan(cut):
        return np.argsort(key, kind="stable")
    head = np.flatnonzero(key <= cut)
    return head[np.argsort(key[head], kind="stable")]


def _best_first(key: np.ndarray, k: int):
    """(index, key) in ``np.argsort(key, kind="stable")`` order, the rest sorted if read."""
    head = _sorted_head(key, k)
    yield from zip(head.tolist(), key[head].tolist())
    rest = np.argsort(key, kind="stable")[len(head):]
    yield from zip(rest.tolist(), key[rest].tolist())


class _Pool:
    """``m`` candidates drawn from l: unit positions back on the grid (a point scores the
    same however drawn), parameter values, log l (-inf where a constraint breaks), log g."""

    def __init__(self, space, enc: Encoder, good: _Parzen, worse: _Parzen,
                 rng: np.random.Generator, m: int):
        raw, cats = good.sample(rng, m)
        values = enc.to_values(raw)
        self.units = enc.to_units(values)
        columns = {name: values[:, i].astype(np.int64) if enc.is_int[i] else values[:, i]
                   for i, name in enumerate(enc.numeric)}
        for j, p in enumerate(enc.cats):
            columns[p.name] = np.array(p.choices, dtype=object)[cats[:, j]]
        self.onehot = enc.onehot(cats)
        features = _Parzen.features(self.units, self.onehot)   # the same for l and g
        self.log_l = np.where(space.feasible_mask(columns, m), good.log_pdf(features), -np.inf)
        self.log_g = worse.log_pdf(features)
        self.lists = [columns[name].tolist() for name in enc.names]  # ints, floats, choices
        self.points = list(zip(*self.lists))


class _Liar:
    """The round's picks, told to g as bad trials, so that later picks spread out instead
    of piling onto one region (optuna's constant liar, once per LIAR_BLOCK picks). A pick
    is one more kernel in g's mixture of ``n_kernels``, ``sigma`` wide in each numeric
    dimension."""

    def __init__(self, choices: list[int], sigma: float, n_kernels: int):
        self.sigma, self.n, self.cats = sigma, n_kernels, len(choices)
        alpha = 1.0 / (n_kernels + 1.0)               # a categorical kernel's smoothing
        self.cat_match = math.log((1 + alpha) / alpha)
        # A kernel's peak (at its pick, every choice equal): the shift that keeps exp <= 1.
        self.peak = sum(math.log((1 + alpha) / (1 + c * alpha)) for c in choices)
        self.picks: list[tuple[np.ndarray, np.ndarray]] = []   # (units, onehot) a block

    def start(self, pool: _Pool) -> None:
        """Score ``pool`` from now on, the picks so far (from earlier pools) told to it."""
        self.pool = pool
        self.norms = (pool.units * pool.units).sum(1)
        self.lie = np.full(pool.units.shape[0], -np.inf)   # log of the picks' kernels' sum
        if self.picks:
            units, onehot = (np.concatenate(x) for x in zip(*self.picks))
            self._add(units, onehot)

    def log_g(self, log_g: np.ndarray) -> np.ndarray:
        if not self.picks:
            return log_g
        total = self.n + sum(len(units) for units, _ in self.picks)
        return np.logaddexp(log_g + math.log(self.n / total), self.lie - math.log(total))

    def tell(self, pool: _Pool, picked: list[int]) -> None:
        self.picks.append((pool.units[picked], pool.onehot[picked]))
        self._add(*self.picks[-1])

    def _add(self, units: np.ndarray, onehot: np.ndarray) -> None:
        d2 = self.norms[:, None] + (units * units).sum(1)[None, :] - 2.0 * self.pool.units @ units.T
        lk = d2 * (-0.5 / (self.sigma * self.sigma))   # <= 0 with the choices' term below
        if self.cats:
            lk += self.cat_match * (self.pool.onehot @ onehot.T - self.cats)
        np.maximum(lk, _EXP_FLOOR, out=lk)
        peak = self.peak - units.shape[1] * (math.log(self.sigma) + 0.5 * _LOG_2PI)
        self.lie = np.logaddexp(self.lie, np.log(np.exp(lk, out=lk).sum(1)) + peak)


def _random_fill(space, key, n: int, seed: int, used: set) -> list[tuple[dict, dict]]:
    """``n`` seeded feasible random points, new ones (``key`` not in ``used``) first;
    ``used`` grows with them. When a few hundred draws find too few new points, a small
    space's grid is searched in a seeded order; only then are points repeated."""
    out, spare = [], []

    def take(points) -> bool:
        for point in points:
            k = key(point)
            if k in used:
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

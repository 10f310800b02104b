"""How the batched TPE (app.optimize.batch_tpe) sees a search space: each free numeric
parameter a column of unit positions in [0, 1] (an int or a stepped float by its grid
cell, a log one on its log range, as that module's docstring states), each categorical a
column of choice indices; and back to parameter values. Pure numpy."""
from __future__ import annotations

import math
from itertools import chain
from operator import itemgetter

import numpy as np

from app.strategies.base import CategoricalParam, IntParam

__all__ = ["Encoder"]

_ENCODERS: dict = {}   # (a space's free parameters, their Encoder) by the parameters' ids


class Encoder:
    """The space's free parameters as unit positions (numeric, one column each) and choice
    indices (categorical), all columns of a kind converted at once: a round converts a few
    hundred points, and numpy's per-call cost, not the arithmetic, is what it pays."""

    def __init__(self, space):
        numeric = [p for p in space.free if not isinstance(p, CategoricalParam)]
        self.cats = [p for p in space.free if isinstance(p, CategoricalParam)]
        self.numeric = [p.name for p in numeric]
        self.names = self.numeric + [p.name for p in self.cats]
        self.choices = [len(p.choices) for p in self.cats]
        self.offsets = np.cumsum([0] + self.choices).astype(np.int64)   # a choice's onehot column
        # A grid: ints (log ones excepted) and stepped floats, cell k of K = [k/K, (k+1)/K].
        self.grid = np.array([isinstance(p, IntParam) and not p.log or
                              not isinstance(p, IntParam) and bool(p.step) for p in numeric], bool)
        self.is_int = np.array([isinstance(p, IntParam) for p in numeric], bool)
        self.low = np.array([p.low for p in numeric], float)
        self.high = np.array([p.high for p in numeric], float)
        self.step = np.array([(p.step or 1) for p in numeric], float)
        self.cells = np.array([(p.high - p.low) // p.step + 1 if isinstance(p, IntParam)
                               else math.floor((p.high - p.low) / p.step + 1e-9) + 1 if p.step
                               else 0 for p in numeric], float)
        # Off the grid, unit = (t(v) - a) / (b - a), t = log for log parameters (log ints
        # over [low - 0.5, high + 0.5], as optuna does).
        self.log = np.array([p.log and not self.grid[i] for i, p in enumerate(numeric)], bool)
        logint = self.log & self.is_int
        lo = np.where(logint, self.low - 0.5, self.low)
        hi = np.where(logint, self.high + 0.5, self.high)
        self.a = np.where(self.log, np.log(np.maximum(lo, 1e-300)), lo)
        self.span = np.where(self.log, np.log(np.maximum(hi, 1e-300)), hi) - self.a
        self.flat = self.span == 0   # low == high: always the middle
        self.span = np.where(self.flat, 1.0, self.span)
        self.cells1 = np.maximum(self.cells, 1)
        self.all_grid, self.any_log = bool(self.grid.all()), bool(self.log.any())
        self.getter = itemgetter(*self.numeric) if len(self.numeric) > 1 else (
            (lambda d, name=self.numeric[0]: (d[name],)) if self.numeric else None)
        # A point's key: its free parameters' values in ``names`` order (as a pool lists them).
        self.key = itemgetter(*self.names) if len(self.names) > 1 else (
            lambda d, name=self.names[0]: (d[name],)) if self.names else (lambda d: ())
        # A point of a grid (every numeric parameter on one) as one integer: its cells and
        # choices in mixed radix, when they all fit in 62 bits; None otherwise.
        radix = [int(c) for c in self.cells.tolist()] + self.choices
        self.radix, self.grid_points = None, math.prod(radix)
        if self.all_grid and self.grid_points < 2**62:
            self.radix = np.cumprod([1] + radix[:-1]).astype(np.int64)
        # A choice's index by (type, value): True and 1 are different choices.
        self.index = [{(type(c), c): i for i, c in enumerate(p.choices)} for p in self.cats]
        self.codes_of = self._choice_codes()   # a point -> its choice indices, a tuple

    @classmethod
    def of(cls, space) -> Encoder:
        """Made once for the same (immutable) parameter objects: a job builds its space each
        round from its strategy's own, unless narrowed. Kept with them, their ids stay theirs."""
        hit = _ENCODERS.get(key := tuple(map(id, space.free)))
        if hit is None:
            if len(_ENCODERS) >= 64:
                _ENCODERS.clear()
            hit = _ENCODERS[key] = (space.free, cls(space))
        return hit[1]

    def to_units(self, values: np.ndarray) -> np.ndarray:
        """Unit positions (n x numeric) of parameter values (n x numeric)."""
        k = np.minimum(np.maximum(np.rint((values - self.low) / self.step), 0), self.cells - 1)
        on_grid = (k + 0.5) / self.cells1
        if self.all_grid:   # most strategies' spaces: ints and stepped floats only
            return on_grid
        t = np.log(np.maximum(values, 1e-300)) if self.any_log else values
        if self.any_log:
            t = np.where(self.log, t, values)
        off = np.where(self.flat, 0.5, np.minimum(np.maximum((t - self.a) / self.span, 0), 1))
        return np.where(self.grid, on_grid, off)

    def to_values(self, units: np.ndarray) -> np.ndarray:
        """Parameter values (floats; on the grid, in bounds) of unit positions."""
        k = np.minimum(np.floor(units * self.cells), self.cells - 1)
        on_grid = np.round(self.low + k * self.step, 12)   # as SearchSpace.sample rounds
        if self.all_grid:
            return on_grid
        t = self.a + units * self.span
        if self.any_log:
            t = np.where(self.log, np.exp(np.where(self.log, t, 0.0)), t)  # no overflow warning
        t = np.where(self.is_int, np.rint(t), t)
        return np.where(self.grid, on_grid, np.minimum(np.maximum(t, self.low), self.high))

    def encode(self, dicts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(unit positions n x numeric, choice indices n x categorical) of points."""
        return self.to_units(self.numeric_values(dicts)), self.encode_cats(dicts)

    def numeric_values(self, dicts: list[dict]) -> np.ndarray:
        """The numeric parameters' values of points (n x numeric floats)."""
        n = len(dicts)
        if not self.numeric:
            return np.zeros((n, 0))
        flat = chain.from_iterable(map(self.getter, dicts))
        return np.fromiter(flat, float, n * len(self.numeric)).reshape(n, -1)

    def _choice_codes(self):
        """point -> its categorical parameters' choice indices (0 for an unknown value),
        one lookup a choice: (type, value), so True and 1 stay different choices."""
        if not self.cats:
            return lambda d: ()
        if len(self.cats) == 1:
            name, index = self.cats[0].name, self.index[0]
            return lambda d: (index.get((type(v := d[name]), v), 0),)
        pairs = [(p.name, index) for p, index in zip(self.cats, self.index)]
        return lambda d: tuple(index.get((type(v := d[name]), v), 0) for name, index in pairs)

    def table(self, trials: list) -> np.ndarray:
        """Trials (objects with ``params`` and ``value``, None: failed) as one float array,
        a row each: the numeric parameters' values, the choice indices, the value (NaN:
        failed). One pass and one array: a round reads its new trials so."""
        get, codes = self.getter or (lambda d: ()), self.codes_of
        rows = [get(p) + codes(p) + (t.value,) for t in trials for p in (t.params,)]
        out = np.array(rows, dtype=float)   # None: NaN
        return out.reshape(len(trials), len(self.numeric) + len(self.cats) + 1)

    def encode_cats(self, dicts: list[dict]) -> np.ndarray:
        """The categorical parameters' choice indices of points (n x categorical)."""
        codes = self.codes_of
        return np.array([codes(d) for d in dicts], np.int64).reshape(len(dicts), len(self.cats))

    def rules(self, space) -> tuple[np.ndarray, np.ndarray] | None:
        """The strategy's constraints over this space's numeric values, as
        ``_tpe_kernel.grid_pool`` reads them: rows of (op, left, right, kind), right a
        value's column (kind 0) or an index into the constants returned with them (kind
        1, a fixed parameter's value or a number); None if one cannot be written so (a
        categorical or a non-numeric side): SearchSpace.feasible_mask then checks them."""
        from app.optimize._tpe_kernel import OPS

        column = {name: i for i, name in enumerate(self.numeric)}
        rows, consts = [], []

        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        for c in space.strategy.constraints:
            left = column.get(c.left)
            right = c.right if not isinstance(c.right, str) else (
                column[c.right] if c.right in column else space.fixed.get(c.right))
            if left is None or c.op not in OPS:
                return None
            if isinstance(c.right, str) and c.right in column:
                rows.append((OPS[c.op], left, right, 0))
            elif number(right):
                rows.append((OPS[c.op], left, len(consts), 1))
                consts.append(float(right))
            else:
                return None
        return np.array(rows, np.int64).reshape(-1, 4), np.array(consts, float)

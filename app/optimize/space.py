"""The search space of a job: a strategy's declared parameters, some fixed by the request,
some narrowed, turned into grid points, random draws or optuna distributions."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from app.errors import InputError, did_you_mean
from app.strategies.base import CategoricalParam, FloatParam, IntParam, Param, Strategy

__all__ = ["SearchSpace", "build_space"]

# A float parameter with no step gets this many grid points.
FLOAT_GRID_POINTS = 10
# A group of parameters tied by constraints is counted on a grid of at most this many points.
GROUP_GRID_CAP = 5_000_000
# Random and optuna draws give up on a constraint after this many infeasible tries in a row.
MAX_INFEASIBLE_DRAWS = 1000


def _narrow(param: Param, spec, field: str) -> Param:
    """Apply a request's narrowing (``[low, high]``, ``{"low":..,"high":..,"step":..}``,
    ``{"choices": [...]}`` or a list of choices) inside the declared bounds."""
    if isinstance(param, CategoricalParam):
        choices = spec.get("choices") if isinstance(spec, dict) else spec
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{field} takes a non-empty list of choices", field=field)
        checked = tuple(param.check(c) for c in choices)
        return replace(param, choices=checked, default=checked[0])
    if isinstance(spec, list) and len(spec) == 2:
        spec = {"low": spec[0], "high": spec[1]}
    if not isinstance(spec, dict) or not set(spec) <= {"low", "high", "step", "log"}:
        raise InputError(f"{field} takes [low, high] or {{\"low\", \"high\", \"step\", \"log\"}}",
                         field=field)
    try:
        low = param.check(spec.get("low", param.low))
        high = param.check(spec.get("high", param.high))
    except InputError as exc:
        raise InputError(f"{field}: {exc.message}", field=field) from None
    if low > high:
        raise InputError(f"{field}: low {low} is above high {high}", field=field)
    changes = {"low": low, "high": high, "default": min(max(param.default, low), high)}
    if "step" in spec:
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise InputError(f"{field}: step must be a positive number", field=field)
        if isinstance(param, IntParam) and int(step) != step:
            raise InputError(f"{field}: step must be an integer", field=field)
        changes["step"] = int(step) if isinstance(param, IntParam) else float(step)
    if "log" in spec:
        changes["log"] = bool(spec["log"])
    return replace(param, **changes)


@dataclass(frozen=True)
class SearchSpace:
    """Free parameters (possibly narrowed) and fixed ones, for one strategy."""

    strategy: Strategy
    free: tuple[Param, ...]
    fixed: dict

    # -- sizes and points -------------------------------------------------------------

    def _axis(self, p: Param) -> list:
        if isinstance(p, FloatParam):
            return p.grid(FLOAT_GRID_POINTS)
        return p.grid()

    @staticmethod
    def _axis_len(p: Param) -> int:
        """Values of ``p`` on the grid, counted without listing them."""
        if isinstance(p, IntParam):
            return (p.high - p.low) // p.step + 1
        if isinstance(p, FloatParam):
            return int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1 if p.step else FLOAT_GRID_POINTS
        return len(p.choices)

    def grid_size(self) -> int:
        """Points of the full grid, before constraints (computed, never listed)."""
        return math.prod(self._axis_len(p) for p in self.free) if self.free else 1

    def _groups(self) -> list[tuple[list[Param], list]]:
        """The free parameters in groups that constraints tie together, each with its
        constraints (a parameter no constraint names is a group of its own, with none)."""
        names = {p.name: p for p in self.free}
        parent = {n: n for n in names}

        def root(n):
            while parent[n] != n:
                n = parent[n]
            return n

        for c in self.strategy.constraints:
            tied = [x for x in (c.left, c.right) if isinstance(x, str) and x in names]
            for a, b in zip(tied, tied[1:]):
                parent[root(a)] = root(b)
        groups: dict[str, tuple[list[Param], list]] = {}
        for p in self.free:
            groups.setdefault(root(p.name), ([], []))[0].append(p)
        for c in self.strategy.constraints:
            free_side = next((x for x in (c.left, c.right) if isinstance(x, str) and x in names), None)
            if free_side is not None:
                groups[root(free_side)][1].append(c)
        return list(groups.values())

    def _group_points(self, params: list[Param], constraints: list) -> np.ndarray:
        """Indices (rows) into each parameter's axis of the group's feasible points."""
        shape = [self._axis_len(p) for p in params]
        size = math.prod(shape)
        if size > GROUP_GRID_CAP:
            raise InputError(
                f"the grid of {', '.join(p.name for p in params)} has {size:,} points before "
                f"its constraints, over the {GROUP_GRID_CAP:,} Trad lists",
                field="search_space", hint="narrow search_space (a step or tighter bounds) or "
                "use optimizer random or bayesian")
        index = np.indices(shape).reshape(len(params), -1)
        if not constraints:
            return index.T
        columns = {p.name: np.asarray(self._axis(p), dtype=object)[index[i]]
                   for i, p in enumerate(params)}
        mask = self.feasible_mask(columns, index.shape[1])
        return index[:, mask].T

    def feasible_grid_size(self) -> int:
        """Feasible points of the grid, counted group by group: a grid of a trillion
        points is counted (or refused) in milliseconds, never listed."""
        total = 1
        for params, constraints in self._groups():
            if constraints:
                total *= int(self._group_points(params, constraints).shape[0])
            else:
                total *= math.prod(self._axis_len(p) for p in params)
        return total

    def grid(self) -> list[dict]:
        """Every feasible grid point, in a fixed order (list it only after
        ``feasible_grid_size`` said it is small)."""
        groups = self._groups()
        parts = []
        for params, constraints in groups:
            axes = [self._axis(p) for p in params]
            rows = self._group_points(params, constraints)
            parts.append([{p.name: axes[i][j] for i, (p, j) in enumerate(zip(params, row))}
                          for row in rows.tolist()])
        order = [p.name for p in self.free]
        points = []
        for combo in itertools.product(*parts):
            values = {k: v for part in combo for k, v in part.items()}
            points.append({**self.fixed, **{name: values[name] for name in order}})
        return points

    def _draw_columns(self, rng: np.random.Generator, m: int) -> dict[str, list]:
        """``m`` independent draws of every free parameter, one column (list) each."""
        columns: dict[str, list] = {}
        for p in self.free:
            if isinstance(p, CategoricalParam):
                picks = rng.integers(0, len(p.choices), size=m)
                columns[p.name] = [p.choices[i] for i in picks.tolist()]
            elif isinstance(p, IntParam):
                if p.log:
                    v = np.exp(rng.uniform(math.log(p.low), math.log(p.high + 1), size=m)).astype(np.int64)
                else:
                    v = rng.integers(0, (p.high - p.low) // p.step + 1, size=m) * p.step + p.low
                columns[p.name] = np.minimum(v, p.high).tolist()
            elif p.step:
                k = rng.integers(0, int((p.high - p.low) / p.step + 1e-9) + 1, size=m)
                columns[p.name] = np.round(p.low + k * p.step, 12).tolist()
            elif p.log:
                columns[p.name] = np.exp(rng.uniform(math.log(p.low), math.log(p.high), size=m)).tolist()
            else:
                columns[p.name] = rng.uniform(p.low, p.high, size=m).tolist()
        return columns

    def feasible_mask(self, columns: dict[str, list], m: int) -> np.ndarray:
        """Which of ``m`` complete parameter sets, given as columns (name -> m values),
        satisfy every constraint of the strategy."""
        import operator

        ops = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
               "!=": operator.ne}
        mask = np.ones(m, dtype=bool)
        for c in self.strategy.constraints:
            def column(name):
                if name in columns:
                    return np.asarray(columns[name])
                return np.full(m, self.fixed[name])
            right = column(c.right) if isinstance(c.right, str) else c.right
            mask &= ops[c.op](column(c.left), right)
        return mask

    def sample(self, n: int, seed: int) -> list[dict]:
        """``n`` feasible random points, the same for the same seed wherever they are
        drawn. Drawn in vectorised batches (a 100,000-trial job samples in milliseconds);
        infeasible draws are skipped."""
        rng = np.random.default_rng(seed)
        names = [p.name for p in self.free]
        out: list[dict] = []
        drawn = 0
        while len(out) < n:
            m = max(64, 2 * (n - len(out)))
            columns = self._draw_columns(rng, m)
            keep = np.flatnonzero(self.feasible_mask(columns, m))
            drawn += m
            for i in keep[: n - len(out)].tolist():
                out.append({**self.fixed, **{name: columns[name][i] for name in names}})
            if not out and drawn > MAX_INFEASIBLE_DRAWS:
                raise InputError(
                    f"no feasible parameters in the search space after {drawn} draws "
                    f"(constraints: {', '.join(map(str, self.strategy.constraints))})",
                    field="search_space")
        return out

    # -- optuna -----------------------------------------------------------------------

    def distributions(self) -> dict:
        """optuna distributions of the free parameters."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        out = {}
        for p in self.free:
            if isinstance(p, CategoricalParam):
                out[p.name] = CategoricalDistribution(list(p.choices))
            elif isinstance(p, IntParam):
                out[p.name] = IntDistribution(p.low, p.high, log=p.log, step=1 if p.log else p.step)
            else:
                out[p.name] = FloatDistribution(p.low, p.high, log=p.log and not p.step,
                                                step=p.step)
        return out

    def complete(self, free_values: dict) -> dict:
        params = {**self.fixed, **free_values}
        return {p.name: params[p.name] for p in self.strategy.space}

    def describe(self) -> dict:
        return {"free": [p.describe() for p in self.free], "fixed": dict(self.fixed)}


def build_space(strategy: Strategy, fixed: dict | None = None,
                narrowed: dict | None = None) -> SearchSpace:
    """The space a job searches. ``fixed`` pins parameters to values; ``narrowed``
    tightens bounds. Unknown names get a "did you mean" hint; a fixed parameter cannot
    also be narrowed."""
    fixed = dict(fixed or {})
    narrowed = dict(narrowed or {})
    names = [p.name for p in strategy.space]
    for where, mapping in (("params", fixed), ("search_space", narrowed)):
        for key in mapping:
            if key not in names:
                raise InputError(f"{strategy.name} has no parameter {key!r}",
                                 field=f"{where}.{key}", hint=did_you_mean(key, names))
    both = sorted(set(fixed) & set(narrowed))
    if both:
        raise InputError(f"{both[0]} is both fixed (params) and searched (search_space)",
                         field=f"search_space.{both[0]}", hint="drop it from one of them")
    checked = {}
    for key, value in fixed.items():
        try:
            checked[key] = strategy.param(key).check(value)
        except InputError as exc:
            raise InputError(exc.message, field=f"params.{key}") from None
    free = tuple(
        _narrow(p, narrowed[p.name], f"search_space.{p.name}") if p.name in narrowed else p
        for p in strategy.space if p.name not in checked
    )
    return SearchSpace(strategy=strategy, free=free, fixed=checked)

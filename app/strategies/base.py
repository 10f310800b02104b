"""What a strategy is: a name, a version, a parameter space declared as data, constraints
between parameters, and a vectorized function from candles and parameters to target
positions. Pure: numpy only.
"""
from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from app.backtest.candles import Candles
from app.errors import InputError, did_you_mean

__all__ = [
    "IntParam",
    "FloatParam",
    "CategoricalParam",
    "Constraint",
    "Strategy",
    "Param",
]


@dataclass(frozen=True)
class IntParam:
    """An integer in ``[low, high]`` on a grid of ``step`` from ``low``."""

    name: str
    low: int
    high: int
    default: int
    step: int = 1
    log: bool = False
    help: str = ""

    kind: ClassVar[str] = "int"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"{self.name} must be an integer, got {value!r}", field=self.name)
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise InputError(f"{self.name} must be an integer, got {value!r}", field=self.name)
        value = int(value)
        if not self.low <= value <= self.high:
            raise InputError(f"{self.name}={value} is out of bounds [{self.low}, {self.high}]",
                             field=self.name)
        return value

    def grid(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def describe(self) -> dict:
        return {"name": self.name, "type": self.kind, "low": self.low, "high": self.high,
                "step": self.step, "log": self.log, "default": self.default, "help": self.help}


@dataclass(frozen=True)
class FloatParam:
    """A real number in ``[low, high]``; ``step`` makes it discrete, ``log`` samples it on a
    log scale (both only shape the search; any value in bounds is accepted)."""

    name: str
    low: float
    high: float
    default: float
    step: float | None = None
    log: bool = False
    help: str = ""

    kind: ClassVar[str] = "float"

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"{self.name} must be a number, got {value!r}", field=self.name)
        value = float(value)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise InputError(f"{self.name}={value} is out of bounds [{self.low}, {self.high}]",
                             field=self.name)
        return value

    def grid(self, points: int = 10) -> list[float]:
        if self.step:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [round(self.low + i * self.step, 12) for i in range(count)]
        if self.log:
            return [float(v) for v in np.geomspace(self.low, self.high, points)]
        return [float(v) for v in np.linspace(self.low, self.high, points)]

    def describe(self) -> dict:
        return {"name": self.name, "type": self.kind, "low": self.low, "high": self.high,
                "step": self.step, "log": self.log, "default": self.default, "help": self.help}


@dataclass(frozen=True)
class CategoricalParam:
    """One of a fixed set of choices (str, int, float or bool)."""

    name: str
    choices: tuple
    default: Any
    help: str = ""

    kind: ClassVar[str] = "categorical"

    def check(self, value: Any) -> Any:
        for choice in self.choices:
            if value == choice and type(value) is type(choice):
                return choice
        raise InputError(f"{self.name}={value!r} is not one of {list(self.choices)}", field=self.name)

    def grid(self) -> list:
        return list(self.choices)

    def describe(self) -> dict:
        return {"name": self.name, "type": self.kind, "choices": list(self.choices),
                "default": self.default, "help": self.help}


Param = IntParam | FloatParam | CategoricalParam

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "!=": operator.ne}


@dataclass(frozen=True)
class Constraint:
    """``left op right`` between two parameters (or a parameter and a number), e.g.
    ``Constraint("fast", "<", "slow")``. Samplers skip sets that break one."""

    left: str
    op: str
    right: str | float

    def holds(self, params: dict) -> bool:
        right = params[self.right] if isinstance(self.right, str) else self.right
        return _OPS[self.op](params[self.left], right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


class Strategy(ABC):
    """Subclass, declare ``name``, ``version``, ``space`` (and ``constraints``), implement
    ``positions``. Register built-ins in ``app.strategies.registry``; third-party ones
    through the ``trad.strategies`` entry-point group.

    ``positions`` must use only bars ``<= t`` for ``target[t]``: the engine fills it at
    bar ``t+1``'s open. The lookahead check in the tests (and in jobs) holds every
    strategy to this.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    space: ClassVar[tuple[Param, ...]] = ()
    constraints: ClassVar[tuple[Constraint, ...]] = ()

    @abstractmethod
    def positions(self, candles: Candles, params: dict, cache) -> np.ndarray:
        """Target position per bar, a signed fraction of equity; see ``app.backtest.engine``.
        ``params`` is already validated; ``cache`` is an ``IndicatorCache`` over ``candles``."""

    def execution(self, params: dict) -> dict:
        """Engine settings this strategy's parameters control (stops), as
        ``BacktestConfig`` field overrides. Most strategies need none."""
        return {}

    # -- parameters ---------------------------------------------------------------------

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.space:
            if p.name == name:
                return p
        raise InputError(f"{cls.name} has no parameter {name!r}", field=name,
                         hint=did_you_mean(name, [p.name for p in cls.space]))

    @classmethod
    def defaults(cls) -> dict:
        return {p.name: p.default for p in cls.space}

    @classmethod
    def validate(cls, params: dict | None) -> dict:
        """Complete ``params`` with defaults, check names, types, bounds and constraints.

        Raises ``InputError`` naming the field; unknown names get a "did you mean" hint.
        """
        params = dict(params or {})
        names = [p.name for p in cls.space]
        for key in params:
            if key not in names:
                raise InputError(f"{cls.name} has no parameter {key!r}", field=key,
                                 hint=did_you_mean(key, names))
        out = {}
        for p in cls.space:
            out[p.name] = p.check(params[p.name]) if p.name in params else p.default
        for c in cls.constraints:
            if not c.holds(out):
                raise InputError(f"{cls.name} needs {c} (got {c.left}={out[c.left]}"
                                 + (f", {c.right}={out[c.right]})" if isinstance(c.right, str) else ")"),
                                 field=c.left)
        return out

    @classmethod
    def feasible(cls, params: dict) -> bool:
        """Whether a complete parameter set satisfies every constraint."""
        return all(c.holds(params) for c in cls.constraints)

    @classmethod
    def describe(cls) -> dict:
        return {
            "name": cls.name,
            "version": cls.version,
            "description": (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            "parameters": [p.describe() for p in cls.space],
            "constraints": [str(c) for c in cls.constraints],
        }

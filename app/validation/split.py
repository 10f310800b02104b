"""Train/test splits of a series: the optimizer sees only the train part."""
from __future__ import annotations

from dataclasses import dataclass

from app.errors import InputError

__all__ = ["ValidationPlan", "parse_validation", "holdout_split"]

DEFAULT_TEST_FRACTION = 0.3
MIN_TEST_BARS = 30


@dataclass(frozen=True)
class ValidationPlan:
    method: str  # "none", "holdout" or "walk_forward"
    test_fraction: float = 0.0
    folds: int = 0
    train_bars: int | None = None
    test_bars: int | None = None
    anchored: bool = False

    def to_dict(self) -> dict:
        if self.method == "walk_forward":
            return {"method": self.method, "folds": self.folds, "train_bars": self.train_bars,
                    "test_bars": self.test_bars, "anchored": self.anchored}
        return {"method": self.method, "test_fraction": self.test_fraction}


def parse_validation(spec: dict | None, run_validation: bool = False) -> ValidationPlan:
    """``{"method": "holdout", "test_fraction": 0.3}``; ``run_validation: true`` alone
    means holdout with the defaults.

    >>> parse_validation(None, True).to_dict()
    {'method': 'holdout', 'test_fraction': 0.3}
    """
    if not spec:
        return ValidationPlan("holdout", DEFAULT_TEST_FRACTION) if run_validation else ValidationPlan("none")
    method = spec.get("method", "holdout")
    unknown = set(spec) - {"method", "test_fraction"}
    if method == "holdout":
        if unknown:
            raise InputError(f"holdout validation has no field {sorted(unknown)[0]!r}",
                             field=f"validation.{sorted(unknown)[0]}")
        fraction = spec.get("test_fraction", DEFAULT_TEST_FRACTION)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.05 <= fraction <= 0.8:
            raise InputError("validation.test_fraction must be between 0.05 and 0.8",
                             field="validation.test_fraction")
        return ValidationPlan("holdout", float(fraction))
    if method == "none":
        return ValidationPlan("none")
    if method == "walk_forward":
        unknown = set(spec) - {"method", "folds", "train_bars", "test_bars", "anchored"}
        if unknown:
            key = sorted(unknown)[0]
            raise InputError(f"walk_forward validation has no field {key!r}", field=f"validation.{key}")
        values = {}
        for key, low, high in (("folds", 2, 50), ("train_bars", MIN_TEST_BARS, 10**8),
                               ("test_bars", MIN_TEST_BARS, 10**8)):
            value = spec.get(key, 5 if key == "folds" else None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high):
                raise InputError(f"validation.{key} must be an integer from {low} to {high}",
                                 field=f"validation.{key}")
            values[key] = value
        anchored = spec.get("anchored", False)
        if not isinstance(anchored, bool):
            raise InputError("validation.anchored must be true or false", field="validation.anchored")
        return ValidationPlan("walk_forward", folds=values["folds"], train_bars=values["train_bars"],
                              test_bars=values["test_bars"], anchored=anchored)
    raise InputError(f"unknown validation method {method!r}", field="validation.method",
                     hint="known: holdout, walk_forward, none")


def holdout_split(n_bars: int, test_fraction: float) -> int:
    """Index of the first test bar: train is ``[0, k)``, test ``[k, n)``.

    >>> holdout_split(1000, 0.3)
    700
    """
    k = int(round(n_bars * (1.0 - test_fraction)))
    if n_bars - k < MIN_TEST_BARS or k < MIN_TEST_BARS:
        raise InputError(f"{n_bars} bars are too few to hold out {test_fraction:.0%} "
                         f"(each part needs {MIN_TEST_BARS} bars)", field="validation")
    return k

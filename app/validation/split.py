"""Train/test splits of a series: the optimizer sees only the train part."""
from __future__ import annotations

from dataclasses import dataclass

from app.errors import InputError

__all__ = ["ValidationPlan", "parse_validation", "holdout_split", "VALIDATION_SCHEMAS"]

DEFAULT_TEST_FRACTION = 0.3
MIN_TEST_BARS = 30
TEST_FRACTION = (0.05, 0.8)
FOLDS = (2, 50)
MAX_BARS = 10**8

_BARS = {"anyOf": [{"type": "integer", "minimum": MIN_TEST_BARS, "maximum": MAX_BARS},
                   {"type": "null"}]}
# What parse_validation takes, as JSON Schema, for the OpenAPI document
VALIDATION_SCHEMAS = [
    {"title": "Holdout", "type": "object", "additionalProperties": False,
     "properties": {"method": {"const": "holdout"},
                    "test_fraction": {"type": "number", "minimum": TEST_FRACTION[0],
                                      "maximum": TEST_FRACTION[1]}}},
    {"title": "WalkForward", "type": "object", "additionalProperties": False,
     "required": ["method"],
     "properties": {"method": {"const": "walk_forward"},
                    "folds": {"type": "integer", "minimum": FOLDS[0], "maximum": FOLDS[1]},
                    "train_bars": _BARS, "test_bars": _BARS, "anchored": {"type": "boolean"}}},
    {"title": "NoValidation", "type": "object", "additionalProperties": False,
     "required": ["method"], "properties": {"method": {"const": "none"}}},
]


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
    if method in ("holdout", "none"):
        unknown = set(spec) - ({"method", "test_fraction"} if method == "holdout" else {"method"})
        if unknown:
            raise InputError(f"{method} validation has no field {sorted(unknown)[0]!r}",
                             field=f"validation.{sorted(unknown)[0]}")
    if method == "holdout":
        fraction = spec.get("test_fraction", DEFAULT_TEST_FRACTION)
        low, high = TEST_FRACTION
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not low <= fraction <= high:
            raise InputError(f"validation.test_fraction must be between {low} and {high}",
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
        for key, low, high in (("folds", *FOLDS), ("train_bars", MIN_TEST_BARS, MAX_BARS),
                               ("test_bars", MIN_TEST_BARS, MAX_BARS)):
            value = spec.get(key, 5 if key == "folds" else None)
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON's 30.0 is the integer 30
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

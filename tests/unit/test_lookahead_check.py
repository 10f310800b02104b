"""The lookahead check catches strategies that read later bars and passes honest ones."""
import numpy as np
import pytest

from app.backtest.candles import Candles
from app.errors import InputError
from app.strategies import IntParam, Strategy, get_strategy
from app.validation.lookahead import LookaheadViolation, check_lookahead, default_cuts
from tests.conftest import random_candles

JAN_1_2024_MS = 1_704_067_200_000


def five_minute_candles(n=300, seed=0):
    return random_candles(n, seed=seed, start_ms=JAN_1_2024_MS, step_ms=300_000)


class SmaPeek(Strategy):
    """Long when the next close is above the SMA: reads bar t+1 for target[t]."""

    name = "SMA_PEEK"
    space = (IntParam("period", 2, 50, default=10),)

    def positions(self, candles, params, cache):
        sma = cache.sma(params["period"])
        next_close = np.append(candles.close[1:], np.nan)   # close shifted by -1
        return np.where(np.isnan(next_close) | np.isnan(sma), np.nan,
                        (next_close > sma).astype(float))


class WholeSeriesZScore(Strategy):
    """Long above the mean close of the whole series: every target reads every bar."""

    name = "ZSCORE_PEEK"

    def positions(self, candles, params, cache):
        return (candles.close > candles.close.mean()).astype(float)


class CausalWithNaN(Strategy):
    """Causal, with NaN targets before its indicator exists (NaN must equal NaN)."""

    name = "CAUSAL_NAN"

    def positions(self, candles, params, cache):
        sma = cache.sma(20)
        return np.where(np.isnan(sma), np.nan, np.sign(candles.close - sma))


class WrongLength(Strategy):
    name = "WRONG_LENGTH"

    def positions(self, candles, params, cache):
        return np.zeros(len(candles) + 1)


def test_a_strategy_reading_the_next_close_is_caught_with_bar_and_time():
    violation = check_lookahead(SmaPeek(), five_minute_candles(), {"period": 5}, cuts=(151,))
    assert isinstance(violation, LookaheadViolation)
    # The cut at 151 shows it; bisecting below finds the first bar that peeks: bar 4, the
    # first with a 5-bar average, which opens 4 * 5 min = 20 minutes after midnight.
    assert (violation.bar, violation.cut, violation.time) == (4, 5, "2024-01-01T00:20:00Z")
    assert violation.message == ("SMA_PEEK peeks ahead: target at bar 4 (2024-01-01T00:20:00Z) "
                                 "changes when the data after bar 4 is removed or changed")
    assert str(violation) == violation.message
    assert np.isnan(violation.cut_value) and violation.full_value in (0.0, 1.0)
    assert violation.to_dict()["message"] == violation.message


def test_the_default_cuts_catch_it_at_the_earliest_bar():
    candles = five_minute_candles(1000)
    violation = check_lookahead(SmaPeek(), candles, {"period": 20})
    # the first spread cut (15) is before the 20-bar average exists; the next (31) shows
    # the peek at bar 30, and bisecting between them finds bar 19, the first that peeks
    assert (violation.bar, violation.cut) == (19, 20)


def test_a_whole_series_normalisation_is_caught():
    violation = check_lookahead(WholeSeriesZScore(), five_minute_candles(500, seed=3), {})
    assert violation is not None
    assert violation.message.startswith("ZSCORE_PEEK peeks ahead: target at bar ")


@pytest.mark.parametrize("params", [
    {"fast": 5, "slow": 20},
    {"fast": 10, "slow": 30, "allow_short": True},
])
def test_sma_cross_uses_no_later_bar(params):
    candles = random_candles(1500, seed=4)
    assert check_lookahead(get_strategy("SMA_CROSS"), candles, params) is None
    assert check_lookahead(get_strategy("SMA_CROSS"), candles, params, cuts=range(1, 60)) is None


def test_nan_targets_match_nan_targets():
    assert check_lookahead(CausalWithNaN(), five_minute_candles(400), {}, cuts=(5, 19, 20, 21, 399)) is None


def test_parameters_are_validated_and_completed():
    with pytest.raises(InputError, match="did you mean"):
        check_lookahead(get_strategy("SMA_CROSS"), random_candles(200), {"fsat": 3})
    assert check_lookahead(get_strategy("SMA_CROSS"), random_candles(200), None) is None


def test_cuts_must_be_inside_the_series():
    with pytest.raises(InputError, match="outside"):
        check_lookahead(SmaPeek(), five_minute_candles(100), {}, cuts=(0,))
    with pytest.raises(InputError, match="outside"):
        check_lookahead(SmaPeek(), five_minute_candles(100), {}, cuts=(100,))


def test_a_strategy_must_return_one_target_per_bar():
    with pytest.raises(InputError, match="WRONG_LENGTH returned"):
        check_lookahead(WrongLength(), five_minute_candles(100), {})


def test_a_single_bar_has_nothing_to_cut():
    one = Candles(np.array([JAN_1_2024_MS]), [1.0], [1.0], [1.0], [1.0], [1.0])
    assert default_cuts(1) == ()
    assert check_lookahead(SmaPeek(), one, {}) is None


def test_default_cuts():
    cuts = default_cuts(1000)
    assert len(cuts) >= 64 + 16 - 2 and cuts[-16:] == tuple(range(984, 1000))
    assert max(np.diff(cuts[:64])) <= 16
    assert {299, 300, 301} <= set(default_cuts(1000, marks=(300,)))
    assert default_cuts(3) == (1, 2)

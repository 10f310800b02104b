"""Built-in strategies on hand-made bars, and the registry's answers."""
import json
import sys
import textwrap

import numpy as np
import pytest

from app.backtest import Candles
from app.errors import InputError
from app.strategies import IndicatorCache, get_strategy, strategy_names


def closes(values):
    c = np.asarray(values, dtype=float)
    o = np.concatenate(([c[0]], c[:-1]))
    return Candles(np.arange(len(c)) * 3_600_000, o, np.maximum(o, c) + 0.5,
                   np.minimum(o, c) - 0.5, c, np.ones(len(c)))


def positions(name, candles, **params):
    s = get_strategy(name)
    return s.positions(candles, {**s.defaults(), **params}, IndicatorCache(candles)).tolist()


def test_sma_cross_is_long_while_fast_above_slow_and_flat_before_both_exist():
    c = closes([10, 10, 10, 11, 12, 13, 12, 10, 9, 9])
    # SMA2 vs SMA3 at each bar: n/a n/a =(10,10) (10.5,10.33) (11.5,11) (12.5,12) (12.5,12.33)
    # (11,11.67) (9.5,10.33) (9,9.33)
    assert positions("SMA_CROSS", c, fast=2, slow=3) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    assert positions("SMA_CROSS", c, fast=2, slow=3, allow_short=True) == [0, 0, -1, 1, 1, 1, 1, -1, -1, -1]


def test_ema_cross_follows_the_same_rule_on_emas():
    c = closes([10, 10, 10, 11, 12, 13, 12, 10, 9, 9])
    assert positions("EMA_CROSS", c, fast=2, slow=3) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_macd_waits_for_the_signal_line():
    c = closes((100 + 0.05 * np.arange(40) ** 2).tolist())
    out = positions("MACD", c, fast=3, slow=6, signal=3)
    assert out[:7] == [0] * 7          # the signal line exists from bar slow + signal - 2 = 7
    assert set(out[7:]) == {1.0}       # an accelerating rise keeps MACD above its signal
    falling = closes((200 - 0.05 * np.arange(40) ** 2).tolist())
    assert set(positions("MACD", falling, fast=3, slow=6, signal=3, allow_short=True)[7:]) == {-1.0}


def test_rsi_buys_oversold_and_holds_until_the_exit_level():
    c = closes([100, 99, 98, 97, 96, 97, 98, 99, 100, 101])
    # RSI(2) is 0 at bars 2-4 (losses only) -> long; bar 5's gain brings Wilder's averages
    # to 0.5 and 0.5, RSI 50 -> flat
    out = positions("RSI_MEAN_REVERSION", c, period=2, oversold=30.0, exit_level=50.0)
    assert out == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]


def test_bollinger_buys_below_the_lower_band_and_exits_at_the_middle():
    c = closes([100, 100, 100, 100, 90, 95, 101, 101])
    # bar 4 closes far below the 4-bar band; the middle is regained at bar 6
    out = positions("BOLLINGER_REVERSION", c, period=4, k=1.0)
    assert out == [0, 0, 0, 0, 1, 1, 0, 0]


def test_donchian_breaks_out_above_the_previous_highs_and_exits_below_previous_lows():
    c = closes([100, 101, 100, 101, 105, 106, 104, 99, 98, 98])
    # highs are close + 0.5 or open + 0.5; the entry channel excludes the current bar
    out = positions("DONCHIAN_BREAKOUT", c, entry_period=3, exit_period=2)
    assert out == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]


def test_every_strategy_describes_itself_as_json():
    for name in strategy_names():
        described = get_strategy(name).describe()
        json.dumps(described)
        assert described["name"] == name and described["parameters"]


def test_unknown_names_get_a_hint():
    with pytest.raises(InputError, match="did you mean SMA_CROSS"):
        get_strategy("SMA_CORSS")
    with pytest.raises(InputError, match="did you mean slow") as info:
        get_strategy("SMA_CROSS").validate({"slw": 10})
    assert info.value.field == "slw"
    with pytest.raises(InputError, match="out of bounds") as info:
        get_strategy("EMA_CROSS").validate({"fast": 1})
    assert info.value.field == "fast"
    with pytest.raises(InputError, match="needs fast < slow"):
        get_strategy("MACD").validate({"fast": 30, "slow": 20})


def test_a_third_party_strategy_plugs_in_through_entry_points(tmp_path, monkeypatch):
    (tmp_path / "my_strats.py").write_text(textwrap.dedent('''
        import numpy as np
        from app.strategies.base import IntParam, Strategy

        class AlwaysLong(Strategy):
            """Long from bar ``wait`` on."""
            name = "ALWAYS_LONG"
            space = (IntParam("wait", 0, 10, default=2),)

            def positions(self, candles, params, cache):
                out = np.ones(len(candles))
                out[:params["wait"]] = 0.0
                return out
    '''))
    dist = tmp_path / "my_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trad.strategies]\nALWAYS_LONG = my_strats:AlwaysLong\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_strats", raising=False)
    assert "ALWAYS_LONG" in strategy_names()
    s = get_strategy("always_long")
    assert positions("ALWAYS_LONG", closes([1, 2, 3, 4]), wait=1) == [0, 1, 1, 1]
    assert s.validate({}) == {"wait": 2}

"""The compiled engine against a slow, plain-Python reading of its documented rules.

``reference_backtest`` below is written from the rules in ``app.backtest.engine``'s
docstring and the conventions in ``app.backtest.metrics``'s, not from the kernel: one
bar at a time, Python floats, each trade kept as its list of fills. The engine must
agree with it on every trade, every bar's equity and position, and every metric.

Where the docstring leaves a case open, the reference makes the choice written next to
it (see ``_size_at_open`` and ``exposed`` in ``reference_backtest``).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

from app.backtest import BacktestConfig, Candles, backtest, evaluate
from tests.conftest import random_candles

DAY = 86_400_000
PROFIT_FACTOR_CAP = 100.0  # the documented cap, restated rather than imported


# ----------------------------------------------------------------------------------------
# The reference
# ----------------------------------------------------------------------------------------

def wilder_atr(high, low, close, period):
    """Wilder's ATR: the mean of the first ``period`` true ranges (bar 0's is high - low)
    at bar ``period - 1``, then ``atr += (tr - atr) / period``; NaN before."""
    n = len(close)
    tr = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        for i in range(1, n)
    ]
    out = [math.nan] * n
    if n >= period:
        value = math.fsum(tr[:period]) / period
        out[period - 1] = value
        for i in range(period, n):
            value += (tr[i] - value) / period
            out[i] = value
    return out


@dataclass
class RefTrade:
    entry_bar: int
    side: int
    fills: list = field(default_factory=list)  # (signed units, price, fee)
    exit_bar: int = -1
    exit_reason: str = ""
    size: float = 0.0

    def _vwap(self, sign):
        legs = [(abs(q), p) for q, p, _ in self.fills if (q > 0) == (sign > 0)]
        return sum(q * p for q, p in legs) / sum(q for q, _ in legs)

    @property
    def entry_price(self):
        return self._vwap(self.side)

    @property
    def exit_price(self):
        return self._vwap(-self.side)

    @property
    def pnl(self):
        return -math.fsum(q * p + f for q, p, f in self.fills)

    @property
    def fees(self):
        return math.fsum(f for _, _, f in self.fills)


class _Account:
    """Cash, units and the trade in progress; every fill goes through ``fill``."""

    def __init__(self, cash, fee):
        self.cash = cash
        self.units = 0.0
        self.fee = fee
        self.open_trade: RefTrade | None = None
        self.trades: list[RefTrade] = []

    def _leg(self, qty, price):
        f = abs(qty) * price * self.fee
        self.cash -= qty * price + f
        self.units += qty
        self.open_trade.fills.append((qty, price, f))
        self.open_trade.size = max(self.open_trade.size, abs(self.units))

    def fill(self, qty, price, bar, reason):
        """Trade ``qty`` signed units at ``price``; True when a new trade opened.

        A fill that reaches zero or crosses it closes the running trade (and, crossing,
        opens a new one with the rest); each leg pays the fee on its own notional."""
        opened = False
        after = self.units + qty
        if self.units != 0.0 and (after == 0.0 or (after > 0.0) != (self.units > 0.0)):
            closing = -self.units
            self._leg(closing, price)
            self.units = 0.0
            self.open_trade.exit_bar = bar
            self.open_trade.exit_reason = reason
            self.trades.append(self.open_trade)
            self.open_trade = None
            qty = after
        if qty != 0.0:
            if self.units == 0.0:
                self.open_trade = RefTrade(entry_bar=bar, side=1 if qty > 0 else -1)
                opened = True
            self._leg(qty, price)
        return opened


def _flat_if_nan(x):
    return 0.0 if math.isnan(x) else float(x)


def _size_at_open(tgt, equity, units, open_, fee, s):
    """Units to hold after the fill at this open (rule 2).

    Whether the fill buys or sells, and so which slipped price sizes it, is decided by
    the unslipped size. Without equity at the open, no position can be sized: flat.
    """
    if tgt == 0.0 or equity <= 0.0:
        return 0.0
    unslipped = tgt * equity / (open_ * (1.0 + fee))
    p = open_ * (1.0 + s) if unslipped > units else open_ * (1.0 - s)
    return tgt * equity / (p * (1.0 + fee))


def reference_backtest(c: Candles, target, cfg: BacktestConfig):
    o, hi, lo, cl = (a.tolist() for a in (c.open, c.high, c.low, c.close))
    n = len(cl)
    target = [_flat_if_nan(x) for x in np.asarray(target, dtype=float).tolist()]
    fee, s = cfg.fee, cfg.slippage_bps / 10_000.0
    buy, sell = 1.0 + s, 1.0 - s
    atr = wilder_atr(hi, lo, cl, cfg.atr_period) if cfg.uses_atr else None
    acct = _Account(cfg.initial_capital, fee)
    stop = take = None
    dead = False
    equity, position = [], []
    exposed = 0
    for t in range(n):
        # Rule 1-3: target[t-1] at this open, only when it differs from target[t-2].
        if t > 0 and not dead:
            want = target[t - 1]
            before = target[t - 2] if t >= 2 else 0.0
            if want != before:
                e_open = acct.cash + acct.units * o[t]
                qty = _size_at_open(want, e_open, acct.units, o[t], fee, s) - acct.units
                if qty != 0.0:
                    # Rule 3: a buy pays open * (1 + s), a sell gets open * (1 - s).
                    price = o[t] * (buy if qty > 0.0 else sell)
                    if acct.fill(qty, price, t, "signal"):
                        # Rule 4: levels from the opening fill's price; ATR of bar t-1.
                        side = 1.0 if acct.units > 0.0 else -1.0
                        a = atr[t - 1] if atr is not None else math.nan
                        stop = take = None
                        if cfg.stop_loss is not None:
                            stop = price * (1.0 - side * cfg.stop_loss)
                        elif cfg.stop_loss_atr is not None and not math.isnan(a):
                            stop = price - side * cfg.stop_loss_atr * a
                        if cfg.take_profit is not None:
                            take = price * (1.0 + side * cfg.take_profit)
                        elif cfg.take_profit_atr is not None and not math.isnan(a):
                            take = price + side * cfg.take_profit_atr * a
        # Rule 4: stops from the entry bar on; gaps fill at the open; both -> the stop.
        if acct.units > 0.0:
            if stop is not None and lo[t] <= stop:
                acct.fill(-acct.units, min(o[t], stop) * sell, t, "stop_loss")
            elif take is not None and hi[t] >= take:
                acct.fill(-acct.units, max(o[t], take) * sell, t, "take_profit")
        elif acct.units < 0.0:
            if stop is not None and hi[t] >= stop:
                acct.fill(-acct.units, max(o[t], stop) * buy, t, "stop_loss")
            elif take is not None and lo[t] <= take:
                acct.fill(-acct.units, min(o[t], take) * buy, t, "take_profit")
        # Rule 5: mark to the close. A bar counts as exposed when a position is open at
        # its close, before the end-of-data or liquidation close-out at that close.
        if acct.units != 0.0:
            exposed += 1
            if t == n - 1:
                acct.fill(-acct.units, cl[t] * (sell if acct.units > 0 else buy), t, "end")
        eq = acct.cash + acct.units * cl[t]
        if eq <= 0.0 and acct.units != 0.0:
            acct.fill(-acct.units, cl[t] * (sell if acct.units > 0 else buy), t, "liquidation")
            eq = acct.cash
        if eq <= 0.0:
            dead = True
        equity.append(eq)
        position.append(acct.units)
    return equity, position, acct.trades, exposed


def reference_metrics(equity, trade_pnl, exposed, initial, ppy):
    """The metrics module's documented conventions, in plain Python."""
    bars = len(equity)
    prev = [initial] + equity[:-1]
    r = [e / p - 1.0 if p > 0.0 else 0.0 for e, p in zip(equity, prev)]
    mean = math.fsum(r) / bars
    sharpe = 0.0
    if bars >= 2:
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in r) / (bars - 1))
        sharpe = mean / sd * math.sqrt(ppy) if sd > 0.0 else 0.0
    down = math.sqrt(math.fsum(min(x, 0.0) ** 2 for x in r) / bars)
    sortino = mean / down * math.sqrt(ppy) if down > 0.0 else 0.0
    peak, mdd = initial, 0.0
    for e in equity:
        peak = max(peak, e)
        mdd = max(mdd, 1.0 - e / peak)
    final = equity[-1]
    growth = -1.0 if final <= 0.0 else math.exp(min(math.log(final / initial) * ppy / bars, 700.0)) - 1.0
    wins = [p for p in trade_pnl if p > 0.0]
    losses = [-p for p in trade_pnl if p < 0.0]
    gp, gl = math.fsum(wins), math.fsum(losses)
    pf = 0.0 if gp <= 0.0 else (PROFIT_FACTOR_CAP if gl <= 0.0 else min(gp / gl, PROFIT_FACTOR_CAP))
    k = len(trade_pnl)
    return {
        "net_profit": final - initial,
        "total_return": final / initial - 1.0,
        "cagr": growth,
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "max_drawdown": mdd,
        "calmar_ratio": min(growth / mdd, sys.float_info.max) if mdd > 0.0 else 0.0,
        "win_rate": len(wins) / k if k else 0.0,
        "profit_factor": pf,
        "num_trades": k,
        "exposure": exposed / bars,
        "avg_trade": math.fsum(trade_pnl) / k if k else 0.0,
        "final_equity": final,
    }


# ----------------------------------------------------------------------------------------
# Comparing the engine with it
# ----------------------------------------------------------------------------------------

def assert_engine_matches_reference(c: Candles, target, cfg: BacktestConfig):
    money = 1e-8 * cfg.initial_capital  # absolute slack for sums of cash flows near 0
    res = backtest(c, target, cfg)
    equity, position, trades, exposed = reference_backtest(c, target, cfg)

    got = [(t.entry_time, t.exit_time, t.side, t.exit_reason) for t in res.trades]
    want = [(int(c.ts[t.entry_bar]), int(c.ts[t.exit_bar]), t.side, t.exit_reason) for t in trades]
    assert got == want
    for g, w in zip(res.trades, trades):
        assert g.entry_price == pytest.approx(w.entry_price, rel=1e-9)
        assert g.exit_price == pytest.approx(w.exit_price, rel=1e-9)
        assert g.pnl == pytest.approx(w.pnl, rel=1e-9, abs=money)
        assert g.fees == pytest.approx(w.fees, rel=1e-9, abs=money)
        assert g.size == pytest.approx(w.size, rel=1e-9)

    np.testing.assert_allclose(res.equity, equity, rtol=1e-9, atol=money)
    np.testing.assert_allclose(res.position, position, rtol=1e-9, atol=1e-12)

    expected = reference_metrics(equity, [t.pnl for t in trades], exposed,
                                 cfg.initial_capital, cfg.periods_per_year)
    fast = evaluate(c, target, cfg)
    for name, value in expected.items():
        assert res.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
        assert fast[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    return res, trades


def random_target(n, seed, levels=(-1.0, -0.5, 0.0, 0.5, 1.0), p_change=0.15, p_nan=0.03):
    """Positions that persist for a while (so trades span bars), with NaN holes."""
    rng = np.random.default_rng(seed + 10_000)
    out = np.empty(n)
    current = 0.0
    for i in range(n):
        if rng.random() < p_change:
            current = float(rng.choice(levels))
        out[i] = current
    out[rng.random(n) < p_nan] = np.nan
    return out


LONG_ONLY = (0.0, 0.5, 1.0)
BOTH_SIDES = (-1.0, -0.5, 0.0, 0.5, 1.0)
LEVERED = (-2.0, -1.0, 0.0, 1.0, 2.0)

# (levels, candle volatility, config)
CASES = {
    "long-only, no costs": (LONG_ONLY, 0.01, {"fee": 0.0}),
    "long-only, fees": (LONG_ONLY, 0.01, {"fee": 0.001}),
    "shorts, fees": (BOTH_SIDES, 0.01, {"fee": 0.001}),
    "shorts, fees, slippage": (BOTH_SIDES, 0.01, {"fee": 0.0005, "slippage_bps": 7.0}),
    "stop fraction": (BOTH_SIDES, 0.015, {"slippage_bps": 3.0, "stop_loss": 0.02}),
    "take-profit fraction": (BOTH_SIDES, 0.015, {"take_profit": 0.025}),
    "stop and take fractions": (
        BOTH_SIDES, 0.02, {"slippage_bps": 5.0, "stop_loss": 0.015, "take_profit": 0.02}),
    "ATR stop": (BOTH_SIDES, 0.01, {"stop_loss_atr": 1.5, "atr_period": 10}),
    "ATR stop and take": (
        BOTH_SIDES, 0.01,
        {"slippage_bps": 2.0, "stop_loss_atr": 1.0, "take_profit_atr": 2.0, "atr_period": 14}),
    "fraction stop, ATR take": (
        LONG_ONLY, 0.012, {"stop_loss": 0.01, "take_profit_atr": 1.5, "atr_period": 5}),
    "ATR stop, fraction take, no costs": (
        BOTH_SIDES, 0.012,
        {"fee": 0.0, "stop_loss_atr": 2.0, "take_profit": 0.03, "atr_period": 30}),
    "levered, wild market (liquidations)": (
        LEVERED, 0.08, {"slippage_bps": 10.0, "periods_per_year": 8760.0}),
}


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_reference_on_random_cases(case, seed):
    levels, vol, kwargs = CASES[case]
    n = 300 + 37 * seed
    c = random_candles(n, seed=seed, vol=vol)
    target = random_target(n, seed, levels)
    assert_engine_matches_reference(c, target, BacktestConfig(**kwargs))


def test_random_cases_exercise_every_exit_reason():
    """The random cases are only worth something if they reach every rule."""
    reasons = set()
    for (levels, vol, kwargs) in CASES.values():
        for seed in SEEDS:
            n = 300 + 37 * seed
            _, _, trades, _ = reference_backtest(random_candles(n, seed=seed, vol=vol),
                                                 random_target(n, seed, levels),
                                                 BacktestConfig(**kwargs))
            reasons |= {t.exit_reason for t in trades}
    assert reasons == {"signal", "stop_loss", "take_profit", "end", "liquidation"}


# ----------------------------------------------------------------------------------------
# Hand-made bars aimed at one rule each, still judged by the reference
# ----------------------------------------------------------------------------------------

def bars(open_, high, low, close):
    n = len(open_)
    return Candles(np.arange(n) * DAY, open_, high, low, close, np.ones(n))


def test_gap_through_stop_fills_at_the_open():
    c = bars([100, 100, 90, 90], [100, 101, 91, 91], [100, 99, 89, 89], [100, 100, 90, 90])
    res, _ = assert_engine_matches_reference(c, [1, 1, 1, 1], BacktestConfig(fee=0.0,
                                                                            stop_loss=0.05))
    assert res.trades[0].exit_reason == "stop_loss"
    assert res.trades[0].exit_price == 90.0  # the open, below the 95 stop


def test_gap_through_take_profit_fills_at_the_better_open():
    c = bars([100, 100, 120, 120], [100, 101, 121, 121], [100, 99, 119, 119],
             [100, 100, 120, 120])
    res, _ = assert_engine_matches_reference(c, [1, 1, 1, 1], BacktestConfig(fee=0.0,
                                                                            take_profit=0.05))
    assert res.trades[0].exit_price == 120.0  # not the 105 level


def test_stop_is_checked_on_the_entry_bar_and_blocks_reentry_until_the_target_changes():
    c = bars([100] * 6, [100, 100, 100, 100, 100, 100], [100, 90, 100, 100, 90, 100],
             [100] * 6)
    res, _ = assert_engine_matches_reference(c, [1, 1, 1, 0.5, 0.5, 0.5],
                                             BacktestConfig(fee=0.0, stop_loss=0.05))
    assert [(t.entry_time // DAY, t.exit_time // DAY, t.exit_reason) for t in res.trades] == [
        (1, 1, "stop_loss"), (4, 4, "stop_loss")]


def test_short_stop_and_take_in_one_bar_takes_the_stop():
    c = bars([100, 100, 100], [100, 110, 100], [100, 90, 100], [100, 100, 100])
    res, _ = assert_engine_matches_reference(c, [-1, -1, -1],
                                             BacktestConfig(slippage_bps=10, stop_loss=0.05,
                                                            take_profit=0.05))
    t = res.trades[0]
    assert t.exit_reason == "stop_loss"
    assert t.exit_price == pytest.approx(100 * 0.999 * 1.05 * 1.001)


def test_flip_closes_one_trade_and_opens_another_at_one_price():
    c = bars([100, 100, 110, 105], [100, 101, 111, 106], [100, 99, 109, 104],
             [100, 100, 110, 105])
    res, _ = assert_engine_matches_reference(c, [1, -1, -1, -1], BacktestConfig(fee=0.002))
    first, second = res.trades
    assert (first.side, second.side) == (1, -1)
    assert first.exit_time == second.entry_time and first.exit_price == second.entry_price


def test_scaling_in_and_out_prices_trades_at_volume_weighted_fills():
    c = bars([100, 100, 120, 90, 110], [100, 101, 121, 91, 111], [100, 99, 119, 89, 109],
             [100, 100, 120, 90, 110])
    res, _ = assert_engine_matches_reference(c, [0.5, 1, 0.5, 0, 0],
                                             BacktestConfig(fee=0.0))
    (t,) = res.trades
    assert 100 < t.entry_price < 120 and 90 < t.exit_price < 120


def test_short_squeeze_is_liquidated_at_the_close_and_trades_no_more():
    c = bars([100, 100, 150, 260, 100, 100], [100, 101, 155, 270, 101, 101],
             [100, 99, 149, 255, 99, 99], [100, 100, 150, 260, 100, 100])
    res, _ = assert_engine_matches_reference(c, [-1, -1, -1, 1, 1, 1], BacktestConfig())
    assert [t.exit_reason for t in res.trades] == ["liquidation"]
    assert res.equity[-1] < 0 and res.equity[-1] == res.equity[3]
    assert all(np.isfinite(v) for v in res.metrics.values())


def test_nan_targets_count_as_flat_and_the_last_target_is_never_traded():
    c = random_candles(40, seed=5)
    target = np.full(40, np.nan)
    target[5:15] = 1.0
    target[-1] = 1.0
    res, _ = assert_engine_matches_reference(c, target, BacktestConfig())
    assert len(res.trades) == 1 and res.trades[0].exit_time == int(c.ts[16])


def test_atr_stop_needs_an_atr_at_the_signal_bar():
    """Opened before the ATR exists, a trade has no ATR stop; opened after, it has one."""
    c = random_candles(60, seed=9, vol=0.03)
    target = np.zeros(60)
    target[1:30] = 1.0
    target[40:] = 1.0
    assert_engine_matches_reference(c, target, BacktestConfig(stop_loss_atr=0.5,
                                                              atr_period=20))


def test_a_fill_is_priced_by_its_own_direction_when_sizing_is_ambiguous():
    """Rule 2 sizes with the slipped price of the side the unslipped size points to.
    Here (2x long, a 25 % fall, the target raised to 3) the size at the buy price is
    below the units held, so the fill sells; at the sell price it would be a buy. The
    docstring does not settle this case, which only leverage or extreme moves reach;
    whatever is traded, rule 3 must still price it: a sell gets open * (1 - s)."""
    o = [100.0, 100.0, 75.09, 75.09]
    res, _ = assert_engine_matches_reference(bars(o, o, o, o), [2, 3, 3, 3],
                                             BacktestConfig(fee=0.0, slippage_bps=10))
    u1, u2 = res.position[1], res.position[2]
    price = 75.09 * (1.001 if u2 > u1 else 0.999)
    cash1 = res.equity[1] - u1 * 100.0
    assert res.equity[2] == pytest.approx(cash1 - (u2 - u1) * price + u2 * 75.09, rel=1e-12)

"""The compiled simulation loop: one pass over the bars, fills, stops, costs and statistics.

Private: ``app.backtest.engine`` is the public face and documents the rules. The loop
keeps running statistics (sums of bar returns and their squares, downside squares,
drawdown, trade counts) so a trial needs no array beyond its inputs; the equity curve
and the trade list are written only when ``record`` is true.

``simulate_batch`` runs many trials over the same bars in one call: it calls the very
``simulate`` a single trial runs (compiled once, called directly, no copy of the loop), so
a trial's statistics are the same floats whichever way it runs.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Indices into the statistics vector the kernel fills.
S_FINAL_EQUITY = 0
S_MEAN = 1
S_M2 = 2
S_DOWN_SQ = 3
S_MAX_DD = 4
S_EXPOSED = 5
S_TRADES = 6
S_WINS = 7
S_GROSS_PROFIT = 8
S_GROSS_LOSS = 9
S_SUM_PNL = 10
S_BARS = 11
N_STATS = 12

# Columns of a batch's settings matrix: one row per trial.
C_FEE = 0
C_SLIP = 1
C_INIT_CASH = 2
C_SL_FRAC = 3
C_TP_FRAC = 4
C_SL_ATR = 5
C_TP_ATR = 6
N_SETTINGS = 7

# Columns of a trade row.
T_ENTRY_IDX = 0
T_EXIT_IDX = 1
T_SIDE = 2
T_ENTRY_PRICE = 3
T_EXIT_PRICE = 4
T_PNL = 5
T_FEES = 6
T_UNITS = 7
T_EXIT_REASON = 8
N_TRADE_COLS = 9

EXIT_SIGNAL = 0.0
EXIT_STOP = 1.0
EXIT_TAKE_PROFIT = 2.0
EXIT_END = 3.0
EXIT_LIQUIDATION = 4.0

# Trade accumulator slots.
_A_ENTRY_IDX = 0
_A_SIDE = 1
_A_IN_UNITS = 2
_A_IN_NOTIONAL = 3
_A_OUT_UNITS = 4
_A_OUT_NOTIONAL = 5
_A_CASH = 6
_A_FEES = 7
_A_MAX_UNITS = 8


@njit(cache=True, nogil=True, error_model="numpy")
def _close_trade(acc, t, reason, stats, record, trades):
    pnl = acc[_A_CASH]
    k = int(stats[S_TRADES])
    if record:
        trades[k, T_ENTRY_IDX] = acc[_A_ENTRY_IDX]
        trades[k, T_EXIT_IDX] = t
        trades[k, T_SIDE] = acc[_A_SIDE]
        trades[k, T_ENTRY_PRICE] = acc[_A_IN_NOTIONAL] / acc[_A_IN_UNITS]
        trades[k, T_EXIT_PRICE] = acc[_A_OUT_NOTIONAL] / acc[_A_OUT_UNITS]
        trades[k, T_PNL] = pnl
        trades[k, T_FEES] = acc[_A_FEES]
        trades[k, T_UNITS] = acc[_A_MAX_UNITS]
        trades[k, T_EXIT_REASON] = reason
    stats[S_TRADES] = k + 1
    stats[S_SUM_PNL] += pnl
    if pnl > 0.0:
        stats[S_WINS] += 1.0
        stats[S_GROSS_PROFIT] += pnl
    elif pnl < 0.0:
        stats[S_GROSS_LOSS] -= pnl


@njit(cache=True, nogil=True, error_model="numpy")
def _fill(qty, px, fee, t, reason, cash, units, acc, stats, record, trades):
    """Trade ``qty`` units (signed: + buys) at ``px``; returns (cash, units, opened).

    A fill that crosses zero is two legs: the close of the running trade, then the open
    of a new one. Fees are proportional, so each leg pays its own share.
    """
    new_units = units + qty
    opened = False
    if units != 0.0 and (new_units == 0.0 or (new_units > 0.0) != (units > 0.0)):
        leg = -units
        f = abs(leg) * px * fee
        cash -= leg * px + f
        acc[_A_CASH] -= leg * px + f
        acc[_A_FEES] += f
        acc[_A_OUT_UNITS] += abs(leg)
        acc[_A_OUT_NOTIONAL] += abs(leg) * px
        _close_trade(acc, t, reason, stats, record, trades)
        units = 0.0
        qty = new_units
    if qty == 0.0:
        return cash, units, opened
    f = abs(qty) * px * fee
    cash -= qty * px + f
    if units == 0.0:
        opened = True
        acc[_A_ENTRY_IDX] = t
        acc[_A_SIDE] = 1.0 if qty > 0.0 else -1.0
        acc[_A_IN_UNITS] = abs(qty)
        acc[_A_IN_NOTIONAL] = abs(qty) * px
        acc[_A_OUT_UNITS] = 0.0
        acc[_A_OUT_NOTIONAL] = 0.0
        acc[_A_CASH] = -(qty * px + f)
        acc[_A_FEES] = f
        acc[_A_MAX_UNITS] = abs(qty)
    else:
        acc[_A_CASH] -= qty * px + f
        acc[_A_FEES] += f
        if (qty > 0.0) == (units > 0.0):
            acc[_A_IN_UNITS] += abs(qty)
            acc[_A_IN_NOTIONAL] += abs(qty) * px
        else:
            acc[_A_OUT_UNITS] += abs(qty)
            acc[_A_OUT_NOTIONAL] += abs(qty) * px
    units = units + qty
    if abs(units) > acc[_A_MAX_UNITS]:
        acc[_A_MAX_UNITS] = abs(units)
    return cash, units, opened


@njit(cache=True, nogil=True, error_model="numpy")
def simulate(open_, high, low, close, target, fee, slip, init_cash,
             sl_frac, tp_frac, sl_atr, tp_atr, atr, record, equity_out, units_out, trades, stats):
    """Run the bars; see ``app.backtest.engine`` for the rules. Fills ``stats`` (and, when
    ``record``, ``equity_out``, ``units_out`` and ``trades``); returns nothing."""
    n = close.shape[0]
    for i in range(N_STATS):
        stats[i] = 0.0
    acc = np.zeros(9)
    cash = init_cash
    units = 0.0
    acted = 0.0
    dead = False
    sl_price = np.nan
    tp_price = np.nan
    prev_eq = init_cash
    peak = init_cash
    max_dd = 0.0
    s1 = 0.0
    s2 = 0.0
    down_sq = 0.0
    exposed = 0
    use_sl = sl_frac > 0.0 or sl_atr > 0.0
    use_tp = tp_frac > 0.0 or tp_atr > 0.0
    buy_mult = 1.0 + slip
    sell_mult = 1.0 - slip
    for t in range(n):
        o = open_[t]
        # 1. The target decided at the previous close is filled at this open.
        if t > 0 and not dead:
            tgt = target[t - 1]
            if not np.isfinite(tgt):
                tgt = 0.0
            if tgt != acted:
                acted = tgt
                eq = cash + units * o
                desired = 0.0
                if tgt != 0.0 and eq > 0.0:
                    raw = tgt * eq / (o * (1.0 + fee))
                    px = o * buy_mult if raw > units else o * sell_mult
                    desired = tgt * eq / (px * (1.0 + fee))
                qty = desired - units
                if qty != 0.0:
                    px = o * buy_mult if qty > 0.0 else o * sell_mult
                    cash, units, opened = _fill(qty, px, fee, t, EXIT_SIGNAL, cash, units,
                                                acc, stats, record, trades)
                    if opened:
                        sl_price = np.nan
                        tp_price = np.nan
                        side = 1.0 if units > 0.0 else -1.0
                        a = atr[t - 1] if atr.shape[0] == n else np.nan
                        if sl_frac > 0.0:
                            sl_price = px * (1.0 - side * sl_frac)
                        elif sl_atr > 0.0 and np.isfinite(a):
                            sl_price = px - side * sl_atr * a
                        if tp_frac > 0.0:
                            tp_price = px * (1.0 + side * tp_frac)
                        elif tp_atr > 0.0 and np.isfinite(a):
                            tp_price = px + side * tp_atr * a
        # 2. Stops inside the bar; a bar that reaches both levels takes the stop.
        # One fill site for the four cases (and one for both closes below): each inlined
        # copy of _fill grows the loop every bar runs (seven sites: ~25 % slower a bar).
        if units != 0.0 and (use_sl or use_tp):
            reason = -1.0
            if units > 0.0:
                if use_sl and low[t] <= sl_price:
                    reason = EXIT_STOP
                    px = (sl_price if o > sl_price else o) * sell_mult
                elif use_tp and high[t] >= tp_price:
                    reason = EXIT_TAKE_PROFIT
                    px = (tp_price if o < tp_price else o) * sell_mult
            else:
                if use_sl and high[t] >= sl_price:
                    reason = EXIT_STOP
                    px = (sl_price if o < sl_price else o) * buy_mult
                elif use_tp and low[t] <= tp_price:
                    reason = EXIT_TAKE_PROFIT
                    px = (tp_price if o > tp_price else o) * buy_mult
            if reason >= 0.0:
                cash, units, opened = _fill(-units, px, fee, t, reason,
                                            cash, units, acc, stats, record, trades)
        # 3. Mark to the close; the last bar closes whatever is open, and an account with
        # no equity left is closed out at this close (a margin call).
        c = close[t]
        eq = cash + units * c
        if units != 0.0:
            exposed += 1
            last = t == n - 1
            if last or (eq <= 0.0 and not dead):
                px = c * sell_mult if units > 0.0 else c * buy_mult
                cash, units, opened = _fill(-units, px, fee, t,
                                            EXIT_END if last else EXIT_LIQUIDATION,
                                            cash, units, acc, stats, record, trades)
                eq = cash + units * c if last else cash
        if eq <= 0.0:
            dead = True
        if record:
            equity_out[t] = eq
            units_out[t] = units
        r = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
        prev_eq = eq
        # Plain sums, not Welford: Welford's division sits in the loop-carried chain and
        # costs ~3x here; bar returns have mean**2 << variance, so the textbook formula
        # loses nothing that matters (the tests hold it to numpy to 1e-9).
        s1 += r
        s2 += r * r
        # Branch-free where the data decides: a mispredicted branch per bar costs more
        # than the rest of the bar's work.
        neg = min(r, 0.0)
        down_sq += neg * neg
        if eq > peak:
            peak = eq
        elif eq < peak * (1.0 - max_dd):
            max_dd = 1.0 - eq / peak
    stats[S_FINAL_EQUITY] = prev_eq
    mean = s1 / n if n > 0 else 0.0
    stats[S_MEAN] = mean
    m2 = s2 - s1 * mean
    stats[S_M2] = m2 if m2 > 0.0 else 0.0
    stats[S_DOWN_SQ] = down_sq
    stats[S_MAX_DD] = max_dd
    stats[S_EXPOSED] = exposed
    stats[S_BARS] = n


@njit(cache=True, nogil=True, error_model="numpy")
def simulate_batch(open_, high, low, close, targets, settings, atrs, atr_row, stats):
    """``simulate`` (statistics only) for each row ``j`` of ``targets``, with row ``j`` of
    ``settings`` (the ``C_*`` columns) and the ATR ``atrs[atr_row[j]]`` (none when
    ``atr_row[j] < 0``); fills row ``j`` of ``stats``. Trials sharing an ATR share its row."""
    none = np.empty(0)
    no_trades = np.empty((1, N_TRADE_COLS))
    for j in range(targets.shape[0]):
        k = atr_row[j]
        atr = atrs[k] if k >= 0 else none
        simulate(open_, high, low, close, targets[j],
                 settings[j, C_FEE], settings[j, C_SLIP], settings[j, C_INIT_CASH],
                 settings[j, C_SL_FRAC], settings[j, C_TP_FRAC],
                 settings[j, C_SL_ATR], settings[j, C_TP_ATR],
                 atr, False, none, none, no_trades, stats[j])

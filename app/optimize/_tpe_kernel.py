"""The compiled inner loops of the batched TPE (app.optimize.batch_tpe, whose docstring
states the rules): the fit (``fit``: g's bad-trial sample, ``sample_rest``, and both
mixtures, ``mixture``), a grid's history read (``read_grid``, ``merge_top``), and a pool:
the draws (``draw``), a grid's checks (``grid_pool``), the log densities
(``log_density``) and the liar's block-by-block picking (``pick``), on a grid all in one
call (``grid_round``).

Private. Each was a loop of small numpy calls, whose per-call cost, not arithmetic, was
most of a round's ask; in a worker, between rounds of database and broker work, each such
call costs several times what it costs in a loop. The pools' random numbers are drawn by
the caller with numpy's Generator (its ziggurat normals are faster than numba's); g's
sample, 128 uniforms, with numba's generator, seeded in the call. A round stays a pure
function of its seeds.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["draw", "fit", "grid_ask", "grid_pool", "grid_round", "liar_kernel", "log_density", "pick",
           "score_and_pick"]

_EXP_FLOOR = -700.0


@njit(cache=True, nogil=True)
def bandwidths(mus: np.ndarray) -> np.ndarray:
    """optuna's TPE widths, per kernel and dimension: the larger gap to the neighbours in
    that dimension (the outermost kernels use their inner gap; the range's ends 0 and 1
    are neighbours when there is one kernel), clipped to [1/min(100, n+2), 1]."""
    n, d = mus.shape
    out = np.empty((n, d))
    low = 1.0 / min(100.0, n + 2.0)
    for j in range(d):
        order = np.argsort(mus[:, j], kind="mergesort")   # stable, as np.argsort(kind="stable")
        for r in range(n):
            here = mus[order[r], j]
            if n == 1:
                gap = max(here, 1.0 - here)
            elif r == 0:
                gap = mus[order[1], j] - here
            elif r == n - 1:
                gap = here - mus[order[n - 2], j]
            else:
                gap = max(here - mus[order[r - 1], j], mus[order[r + 1], j] - here)
            out[order[r], j] = min(max(gap, low), 1.0)
    return out


@njit(cache=True, nogil=True)
def _tell(lie, units, cats, pu, pc, inv2s2, cat_match, gone, cell, pk, table, mismatch):
    """Add one pick's kernel (exp of its log, at most 1) to ``lie`` at every candidate
    not ``gone`` (picked or passed over: never ranked again). On a grid (``table`` not
    empty) as a product of looked-up factors: each dimension's exp at the candidate's
    cell distance to the pick (``cell``, ``pk``), times exp(-cat_match) a choice that
    differs (``mismatch``); off one, as the exp of the sum."""
    m, d = units.shape
    c = cats.shape[1]
    for i in range(m):
        if gone[i]:
            continue
        if table.shape[0]:
            v = 1.0
            for j in range(d):
                v *= table[j, abs(cell[i, j] - pk[j])]
            miss = 0
            for j in range(c):
                if cats[i, j] != pc[j]:
                    miss += 1
            lie[i] += max(v * mismatch[miss], 1e-300)
            continue
        d2 = 0.0
        for j in range(d):
            t = units[i, j] - pu[j]
            d2 += t * t
        lk = inv2s2 * d2
        for j in range(c):
            if cats[i, j] != pc[j]:
                lk -= cat_match
        lie[i] += math.exp(max(lk, _EXP_FLOOR))


@njit(cache=True, nogil=True)
def _cells(units, cells):
    out = np.zeros((units.shape[0], units.shape[1]), np.int64)
    if cells.shape[0]:
        for i in range(units.shape[0]):
            for j in range(units.shape[1]):
                out[i, j] = min(int(math.floor(units[i, j] * cells[j])), int(cells[j]) - 1)
    return out


@njit(cache=True, nogil=True)
def _same(units, cats, i, pu, pc):
    for j in range(units.shape[1]):
        if units[i, j] != pu[j]:
            return False
    for j in range(cats.shape[1]):
        if cats[i, j] != pc[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def pick(log_l, log_g, units, cats, prev_units, prev_cats, n_kernels, want, block, sigma,
         cat_match, peak, cells):
    """Up to ``want`` candidates (indices, in pick order) of a pool: ``block`` at a time,
    lowest rank first, rank = log g'(x) - log l(x) with g' the bad mixture of
    ``n_kernels`` kernels plus one kernel (``sigma`` wide, choices matched with
    ``cat_match``, its peak ``peak``) at each pick so far: the round's earlier picks
    (``prev_*``, from earlier pools) and this pool's, told after each block. Ties go to
    the lower index. A candidate equal to a pick (the same units and choices) is passed
    over; -inf in ``log_l`` (a broken constraint) is never picked. Fewer than ``want``
    come back when the pool has nothing new left. ``cells``: each numeric dimension's
    cells on a grid (the kernels then read from a table), or empty."""
    m, d = units.shape
    inv2s2 = -0.5 / (sigma * sigma)
    # On a grid, exp(inv2s2 * (dk / K)^2) for each cell distance dk of each dimension.
    size = 0
    for j in range(cells.shape[0]):
        size = max(size, int(cells[j]))
    table = np.zeros((d if cells.shape[0] else 0, size))
    for j in range(table.shape[0]):
        for dk in range(int(cells[j])):
            table[j, dk] = math.exp(inv2s2 * (dk / cells[j]) ** 2)
    mismatch = np.empty(cats.shape[1] + 1)
    for q in range(mismatch.shape[0]):
        mismatch[q] = math.exp(-cat_match * q)
    cell, prev_cell = _cells(units, cells), _cells(prev_units, cells)
    lie = np.zeros(m)
    gone = np.zeros(m, np.bool_)
    for p in range(prev_units.shape[0]):
        _tell(lie, units, cats, prev_units[p], prev_cats[p], inv2s2, cat_match, gone, cell,
              prev_cell[p], table, mismatch)
    told = prev_units.shape[0]
    out = np.empty(want, np.int64)
    n_out = 0
    rank = np.full(m, np.inf)
    while n_out < want:
        total = n_kernels + told
        if told == 0:
            for i in range(m):
                rank[i] = log_g[i] - log_l[i]
        else:
            w_g, w_lie = math.log(n_kernels / total), -math.log(total)
            for i in range(m):
                if gone[i]:
                    continue
                a = log_g[i] + w_g
                b = math.log(lie[i]) + peak + w_lie
                hi, lo = (a, b) if a > b else (b, a)
                rank[i] = hi + math.log1p(math.exp(lo - hi)) - log_l[i]
        start = n_out
        while n_out - start < block and n_out < want:
            best, best_rank = -1, math.inf
            for i in range(m):
                if not gone[i] and rank[i] < best_rank:
                    best, best_rank = i, rank[i]
            if best < 0:
                break
            gone[best] = True
            new = True
            for q in range(n_out):
                if _same(units, cats, best, units[out[q]], cats[out[q]]):
                    new = False
                    break
            if new:
                for q in range(prev_units.shape[0]):
                    if _same(units, cats, best, prev_units[q], prev_cats[q]):
                        new = False
                        break
            if new:
                out[n_out] = best
                n_out += 1
        if n_out == start:
            break   # nothing new and feasible left in this pool
        if n_out < want:   # (the last block's picks have nothing left to spread)
            for q in range(start, n_out):
                _tell(lie, units, cats, units[out[q]], cats[out[q]], inv2s2, cat_match, gone,
                      cell, cell[out[q]], table, mismatch)
            told += n_out - start
    return out[:n_out]


@njit(cache=True, nogil=True)
def draw(mus, sigmas, cum, offsets, uniform, z, spare, fill):
    """Draws from a mixture: candidate i from kernel floor(uniform[i, 0] * kernels), its
    numeric units from that kernel's normal truncated to [0, 1] (``z[i]``; a draw outside
    is drawn again from ``spare``, in order, up to three times, then uniformly from
    ``fill``, in order; the few past both clipped), its choices by ``uniform[i, 1:]``
    against the kernel's cumulative probabilities ``cum`` (categorical j in columns
    offsets[j]:offsets[j+1])."""
    m, d = z.shape
    c = offsets.shape[0] - 1
    n_kernels = mus.shape[0]
    units = np.empty((m, d))
    cats = np.empty((m, c), np.int64)
    s = f = 0
    for i in range(m):
        k = min(int(uniform[i, 0] * n_kernels), n_kernels - 1)
        for j in range(d):
            mu, sd = mus[k, j], sigmas[k, j]
            x = mu + sd * z[i, j]
            tries = 0
            while (x < 0.0 or x > 1.0) and tries < 3 and s < spare.shape[0]:
                x = mu + sd * spare[s]
                s += 1
                tries += 1
            if (x < 0.0 or x > 1.0) and f < fill.shape[0]:
                x = fill[f]
                f += 1
            units[i, j] = min(max(x, 0.0), 1.0)
        for j in range(c):
            lo, hi = offsets[j], offsets[j + 1]
            u, v = uniform[i, 1 + j], 0
            while v < hi - lo - 1 and u > cum[k, lo + v]:
                v += 1
            cats[i, j] = v
    return units, cats


@njit(cache=True, nogil=True)
def fit(units, cats, best, k, seed, offsets):
    """A round's two mixtures (``mixture``): l of the trials ``best``, g of the others (a
    uniform sample of ``k`` of them, ``sample_rest``, numba's generator seeded with
    ``seed``, a uint32). Returns l's centres, widths and cumulated choice probabilities,
    both mixtures' coefficients stacked and transposed (features x kernels, l's kernels
    first: ``log_density`` reads them so), l's kernel count, each one's shift, and how
    many trials g holds."""
    np.random.seed(seed)
    uniform = np.random.random(k)
    bad = sample_rest(units.shape[0], best, k, uniform)
    l_mus, l_sigmas, l_coef, l_shift, l_cum = mixture(units[best], cats[best], offsets)
    _, _, g_coef, g_shift, _ = mixture(units[bad], cats[bad], offsets)
    coef_t = np.ascontiguousarray(np.concatenate((l_coef, g_coef)).T)
    return l_mus, l_sigmas, l_cum, coef_t, l_coef.shape[0], l_shift, g_shift, bad.shape[0]


@njit(cache=True, nogil=True)
def liar_kernel(n_bad, choices, d, width):
    """A pick's kernel in g as the liar tells it: ``width`` wide in each of ``d`` numeric
    dimensions, its choices smoothed as g's are (1/(n_bad + 2) on each). Returns the log
    ratio of a matching to a differing choice, and the kernel's log peak."""
    alpha = 1.0 / (n_bad + 2.0)
    peak = -d * (math.log(width) + 0.5 * math.log(2.0 * math.pi))
    for c in choices:
        peak += math.log((1.0 + alpha) / (1.0 + c * alpha))
    return math.log((1.0 + alpha) / alpha), peak


@njit(cache=True, nogil=True)
def fresh_on_grid(units, cats, cells, radix, past, taken):
    """Each draw's grid point (each numeric unit's cell, floor(u * K), and the choices,
    as one mixed-radix integer), and which of them ``past`` (sorted) does not hold;
    ``taken``, when not empty, flags each point of the grid (the same as ``past``, read
    faster)."""
    m, d = units.shape
    out = np.empty(m, np.bool_)
    codes = np.empty(m, np.int64)
    n = past.shape[0]
    for i in range(m):
        code = 0
        for j in range(d):
            code += min(int(math.floor(units[i, j] * cells[j])), int(cells[j]) - 1) * radix[j]
        for j in range(cats.shape[1]):
            code += cats[i, j] * radix[d + j]
        codes[i] = code
        if taken.shape[0]:
            out[i] = not taken[code]
        else:
            at = np.searchsorted(past, code)
            out[i] = not (at < n and past[at] == code)
    return codes, out


@njit(cache=True, nogil=True)
def mixture(units, cats, offsets):
    """One Parzen mixture of the points (``units`` n x d, ``cats`` n x c, categorical j's
    choices in columns offsets[j]:offsets[j+1]), plus the prior kernel (centre 0.5,
    width 1, uniform choices) as its last row, all of equal weight. Returns the kernels'
    centres and widths, each choice's probability cumulated within its categorical (for
    drawing), and ``coef`` and ``shift`` such that the mixture's log density at x is
    log(sum_k exp(features(x) . coef[k])) + shift, features(x) = [x*x, x, onehot, 1]
    (``log_density`` reads them; ``shift``, the highest kernel's peak, keeps every exp at
    most 1)."""
    n, d = units.shape
    c = offsets.shape[0] - 1
    k_all = n + 1
    mus = np.full((k_all, d), 0.5)
    mus[:n] = units
    sigmas = np.ones((k_all, d))
    sigmas[:n] = bandwidths(units)
    width = 2 * d + offsets[c] + 1
    coef = np.empty((k_all, width))
    peak, quads = np.empty(k_all), np.empty(k_all)
    log_2pi = math.log(2.0 * math.pi)
    for k in range(k_all):
        p, quad = -0.5 * d * log_2pi - math.log(k_all), 0.0
        for j in range(d):
            mu, sd = mus[k, j], sigmas[k, j]
            a = 1.0 / (sd * sd)
            s = 1.0 / (sd * math.sqrt(2.0))
            p -= math.log(sd) + math.log(0.5 * (math.erf((1.0 - mu) * s) - math.erf(-mu * s)))
            quad += 0.5 * mu * mu * a
            coef[k, j] = -0.5 * a
            coef[k, d + j] = mu * a
        peak[k], quads[k] = p, quad
    cum = np.empty((k_all, offsets[c]))
    base = 1.0 / (n + 1.0)
    for j in range(c):
        lo, hi = offsets[j], offsets[j + 1]
        for k in range(k_all):
            total = (hi - lo) * base + (1.0 if k < n else 0.0)
            run = 0.0
            for v in range(lo, hi):
                q = (base + (1.0 if k < n and cats[k, j] == v - lo else 0.0)) / total
                run += q
                cum[k, v] = run
                coef[k, 2 * d + v] = math.log(q)
    shift = peak.max()
    for k in range(k_all):
        coef[k, width - 1] = peak[k] - quads[k] - shift
    return mus, sigmas, coef, shift, cum


@njit(cache=True, nogil=True)
def sample_rest(n, best, k, uniform):
    """The indices in [0, n) not in ``best``, in order, or, when there are more than
    ``k``, a uniform sample of ``k`` of them (Floyd's algorithm, ``uniform`` holding its
    k draws), in order. O(k log k) past the sample's draws: a round's cost stays the same
    at 500 trials or 50,000."""
    rest = n - best.shape[0]
    if rest <= k:
        positions = np.arange(rest)
    else:
        taken = np.zeros(rest, np.bool_)   # untouched but for the k picks
        positions = np.empty(k, np.int64)
        for step, j in enumerate(range(rest - k, rest)):
            t = min(int(uniform[step] * (j + 1)), j)
            pick = j if taken[t] else t
            taken[pick] = True
            positions[step] = pick
        positions.sort()
    # The pos-th index of [0, n) that is not in ``best``: pos plus the best below it.
    skip = np.sort(best)
    out = np.empty(positions.shape[0], np.int64)
    s = 0
    for q in range(positions.shape[0]):
        idx = positions[q] + s
        while s < skip.shape[0] and skip[s] <= idx:
            s += 1
            idx = positions[q] + s
        out[q] = idx
    return out


# Constraint operators, as app.optimize.tpe_encoding.Encoder.constraints codes them.
OPS = {"<": 0, "<=": 1, ">": 2, ">=": 3, "!=": 4}


@njit(cache=True, nogil=True)
def _holds(op, a, b):
    if op == 0:
        return a < b
    if op == 1:
        return a <= b
    if op == 2:
        return a > b
    if op == 3:
        return a >= b
    return a != b


@njit(cache=True, nogil=True)
def grid_pool(units, cats, cells, radix, past, taken, low, step, rules, consts):
    """The live draws of a pool on a grid (every numeric parameter an int or a stepped
    float): those on a point the history does not hold (``fresh_on_grid``'s test) that
    keep every rule, each point once (its first draw). A rule is (op, left, right, kind):
    numeric value ``left`` against value ``right`` (kind 0) or ``consts[right]`` (kind 1).
    A value is low + k * step rounded to 12 decimals (Encoder.to_values' and numpy's
    rounding: rint(x * 1e12) / 1e12), its unit (k + 0.5) / K.

    Returns the live draws' indices (in draw order), how many there were before copies
    were dropped, and their values, unit positions and choice indices."""
    m, d = units.shape
    codes, fresh = fresh_on_grid(units, cats, cells, radix, past, taken)
    values = np.empty((m, d))
    ok = np.zeros(m, np.bool_)
    n_ok = 0
    for i in range(m):
        if not fresh[i]:
            continue
        for j in range(d):
            k = min(math.floor(units[i, j] * cells[j]), cells[j] - 1.0)
            values[i, j] = np.rint((low[j] + k * step[j]) * 1e12) / 1e12
        good = True
        for r in range(rules.shape[0]):
            right = values[i, rules[r, 2]] if rules[r, 3] == 0 else consts[rules[r, 2]]
            if not _holds(rules[r, 0], values[i, rules[r, 1]], right):
                good = False
                break
        if good:
            ok[i] = True
            n_ok += 1
    live = np.flatnonzero(ok)
    if taken.shape[0]:
        # Copies found with the flags: each kept point's flag is set while the pool is read
        # (a later draw of it is then a copy), then cleared (none was the history's).
        first = np.zeros(live.shape[0], np.bool_)
        for r in range(live.shape[0]):
            code = codes[live[r]]
            if not taken[code]:
                taken[code] = True
                first[r] = True
        for r in range(live.shape[0]):
            if first[r]:
                taken[codes[live[r]]] = False
    else:
        order = np.argsort(codes[live], kind="mergesort")   # stable: a point's first draw first
        first = np.zeros(live.shape[0], np.bool_)
        for r in range(order.shape[0]):
            if r == 0 or codes[live[order[r]]] != codes[live[order[r - 1]]]:
                first[order[r]] = True
    idx = live[first]
    out_units = np.empty((idx.shape[0], d))
    for q in range(idx.shape[0]):
        for j in range(d):
            k = min(math.floor(units[idx[q], j] * cells[j]), cells[j] - 1.0)
            out_units[q, j] = (k + 0.5) / cells[j]
    return idx, n_ok, values[idx], out_units, cats[idx]


# Reassociation lets the compiler vectorise log_density's sums and maximum (1.5x faster;
# results move by ~1e-13). NaN and infinity keep their meaning: no "fast" flags for them.
_REASSOC = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=_REASSOC)
def log_density(units, cats, coef_t, k0, k1, shift, offsets, s):
    """The log density at each point of the mixture of kernels ``k0``-``k1`` (columns of
    ``coef_t``, ``mixture``'s coefficients transposed): log(sum_k exp(features(x) .
    coef[k])) + shift, summed from the largest term (terms e^-50 below it, which a double
    cannot hold beside it, are left out). ``s``: scratch, a slot a kernel. Each point's
    terms are built a feature at a time over contiguous rows of kernels, loops the
    compiler vectorises."""
    m, d = units.shape
    c = cats.shape[1]
    n = k1 - k0
    base = coef_t[coef_t.shape[0] - 1, k0:k1]
    terms = s[:n]
    out = np.empty(m)
    for i in range(m):
        terms[:] = base
        for j in range(d):
            u = units[i, j]
            uu = u * u
            a, b = coef_t[j, k0:k1], coef_t[d + j, k0:k1]
            for k in range(n):
                terms[k] += uu * a[k] + u * b[k]
        for j in range(c):
            row = coef_t[2 * d + offsets[j] + cats[i, j], k0:k1]
            for k in range(n):
                terms[k] += row[k]
        top = -np.inf
        for k in range(n):
            top = max(top, terms[k])
        total = 0.0
        for k in range(n):
            t = terms[k] - top
            if t > -50.0:
                total += math.exp(t)
        out[i] = top + math.log(total) + shift
    return out


@njit(cache=True, nogil=True)
def score_and_pick(units, cats, coef_t, l_kernels, l_shift, g_shift, offsets, prev_units,
                   prev_cats, want, n_kernels, block, sigma, cat_match, peak, cells):
    """A pool's live candidates scored by l and g (``log_density``; l's kernels are
    ``coef_t``'s first ``l_kernels`` columns, g's the rest) and up to ``want`` picked
    (``pick``, whose arguments follow)."""
    s = np.empty(coef_t.shape[1])
    log_l = log_density(units, cats, coef_t, 0, l_kernels, l_shift, offsets, s)
    log_g = log_density(units, cats, coef_t, l_kernels, coef_t.shape[1], g_shift, offsets, s)
    return pick(log_l, log_g, units, cats, prev_units, prev_cats, n_kernels, want, block,
                sigma, cat_match, peak, cells)


@njit(cache=True, nogil=True)
def grid_round(mus, sigmas, cum, offsets, uniform, z, spare, fill, cells, radix, past, taken,
               low, step, rules, consts, coef_t, l_kernels, l_shift, g_shift, prev_units,
               prev_cats, want, n_kernels, block, sigma, cat_match, peak):
    """A pool on a grid, in one call: draws from l (``draw``), the live ones
    (``grid_pool``), scored and picked (``score_and_pick``, the liar reading the grid's
    cells). Returns how many draws were live, and the picks' values, unit positions and
    choice indices, in pick order."""
    raw, raw_cats = draw(mus, sigmas, cum, offsets, uniform, z, spare, fill)
    _, live, values, units, cats = grid_pool(raw, raw_cats, cells, radix, past, taken, low,
                                             step, rules, consts)
    chosen = score_and_pick(units, cats, coef_t, l_kernels, l_shift, g_shift, offsets,
                            prev_units, prev_cats, want, n_kernels, block, sigma, cat_match,
                            peak, cells)
    return live, values[chosen], units[chosen], cats[chosen]


@njit(cache=True, nogil=True)
def grid_ask(units, cats, best, k, seed, offsets, choices, block, sigma, uniform, z, spare,
             fill, cells, radix, past, taken, low, step, rules, consts, prev_units, prev_cats,
             want):
    """A round's fit (``fit``) and its first pool on a grid (``grid_round``), in one call.
    Returns the fit, the liar's (choice match, peak) (``liar_kernel``), and the pool's."""
    fitted = fit(units, cats, best, k, seed, offsets)
    l_mus, l_sigmas, l_cum, coef_t, l_kernels, l_shift, g_shift, n_bad = fitted
    cat_match, peak = liar_kernel(n_bad, choices, units.shape[1], sigma)
    live, values, chosen_units, chosen_cats = grid_round(
        l_mus, l_sigmas, l_cum, offsets, uniform, z, spare, fill, cells, radix, past, taken,
        low, step, rules, consts, coef_t, l_kernels, l_shift, g_shift, prev_units, prev_cats,
        want, n_bad + 1, block, sigma, cat_match, peak)
    return fitted, (cat_match, peak), live, values, chosen_units, chosen_cats


@njit(cache=True, nogil=True)
def read_grid(table, low, step, cells, radix, taken, units_out, cats_out, values_out, start,
              top, k):
    """New trials on a grid (``Encoder.table``: a row each, the numeric parameters' values,
    the choice indices, the value, NaN: failed), stored from row ``start`` of the
    history's buffers: their unit positions (Encoder.to_units' arithmetic: the nearest
    cell k of K, (k + 0.5) / K), choices and values. Each one's point as an integer
    (Encoder.codes), its flag set in ``taken`` when that is not empty. Returns the codes,
    the ``k`` best of the history (``merge_top`` of ``top``, the best before) and how
    many new trials failed."""
    n = table.shape[0]
    d, c = units_out.shape[1], cats_out.shape[1]
    codes = np.zeros(n, np.int64)
    failed = 0
    for i in range(n):
        row = start + i
        for j in range(d):
            cell = min(max(np.rint((table[i, j] - low[j]) / step[j]), 0.0), cells[j] - 1.0)
            units_out[row, j] = (cell + 0.5) / max(cells[j], 1.0)
            codes[i] += int(cell) * radix[j]
        for j in range(c):
            choice = int(table[i, d + j])
            cats_out[row, j] = choice
            codes[i] += choice * radix[d + j]
        if taken.shape[0]:
            taken[codes[i]] = True
        values_out[row] = table[i, d + c]
        if np.isnan(table[i, d + c]):
            failed += 1
    return codes, merge_top(top, values_out[:start + n], start, k), failed


@njit(cache=True, nogil=True)
def merge_top(top, values, start, k):
    """The ``k`` best of the trials ``top`` (the best so far, best first) and ``start``
    onwards: highest value first, NaN (failed) last, ties to the earlier trial. Each new
    trial is inserted into the kept best (every trial in ``top`` comes before ``start``,
    so a new one goes after the kept ones it ties with)."""
    out = np.empty(k, np.int64)
    key = np.empty(k)
    n = 0
    for r in range(top.shape[0]):
        if n < k:
            v = values[top[r]]
            out[n], key[n] = top[r], np.inf if np.isnan(v) else -v
            n += 1
    for i in range(start, values.shape[0]):
        v = values[i]
        kv = np.inf if np.isnan(v) else -v
        if n == k and kv >= key[n - 1]:
            continue
        at = n if n < k else n - 1   # the slot it enters at, moved up past worse ones
        while at > 0 and key[at - 1] > kv:
            out[at], key[at] = out[at - 1], key[at - 1]
            at -= 1
        out[at], key[at] = i, kv
        n = min(n + 1, k)
    return out[:n]

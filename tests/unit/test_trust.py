"""The verdict on a search, from arrays: representative PBO, held-out PSR, evidence, stage."""
import numpy as np
import pytest

from app.validation.pbo import probability_of_backtest_overfitting, representative_trials
from app.validation.sharpe_stats import combined_evidence, out_of_sample_sharpe
from app.validation.trust import aggregate_returns, assess_search, assess_walk_forward

BARS = 20_000


def family(rng, edge_per_bar, spread, n=300, bars=BARS):
    """A strategy family: every member rides a common edge (plus its own noise), the
    members' own edges spread from +spread to -spread around it."""
    common = rng.normal(edge_per_bar, 0.01, (bars, 1))
    own = np.linspace(spread, -spread, n)[None, :]
    return 0.6 * common + 0.8 * rng.normal(0.0, 0.01, (bars, n)) + own


def metrics(r):
    sr = float(np.mean(r) / np.std(r, ddof=1) * np.sqrt(8760))
    return {"sharpe_ratio": sr, "num_trades": 200}


def verdict(train, test, chosen=None):
    sr = train.mean(axis=0) / train.std(axis=0, ddof=1)
    best = int(np.argmax(sr)) if chosen is None else chosen
    sample = train[:, representative_trials(sr)]
    return assess_search(best_returns=train[:, best], sample_returns=sample,
                         n_trials=train.shape[1], is_metrics=metrics(train[:, best]),
                         oos_returns=test[:, best], oos_metrics=metrics(test[:, best]),
                         min_trades=10)


def test_the_pbo_of_a_shared_edge_is_low_over_the_search_and_a_coin_toss_over_its_top():
    # Near-equals at the top share the edge: which of them wins in sample is luck, and a
    # PBO over them reads as overfit. Over a sample spanning the search, the winner
    # clearly beats the search's median out of sample.
    rng = np.random.default_rng(0)
    m = family(rng, 0.0004, 0.0003)
    sr = m.mean(axis=0) / m.std(axis=0, ddof=1)
    top = m[:, np.argsort(-sr)[:64]]
    spread = m[:, representative_trials(sr, 64)]
    assert probability_of_backtest_overfitting(top).pbo > 0.3
    assert probability_of_backtest_overfitting(spread).pbo < 0.1


def test_a_real_edge_is_paper_or_better_and_noise_is_rejected():
    rng = np.random.default_rng(1)
    edge = family(rng, 0.0003, 0.0002, bars=2 * BARS)
    v = verdict(edge[:BARS], edge[BARS:])
    assert v.stage in ("PAPER", "LIVE_CANDIDATE"), v.reasons
    assert v.dsr.dsr > 0.95 and v.oos.psr > 0.95 and v.evidence > 0.99
    noise = family(rng, 0.0, 0.0, bars=2 * BARS)
    v = verdict(noise[:BARS], noise[BARS:])
    assert v.stage == "REJECTED" and v.confidence == 0.0
    report = v.report()
    assert report["n_trials"] == 300 and 1 <= report["effective_trials"] < 300
    assert report["pbo_trials"] == 256 and report["psr_oos"] == v.oos.psr


def test_a_winner_that_does_not_hold_out_of_sample_is_rejected_by_the_evidence():
    rng = np.random.default_rng(2)
    train = family(rng, 0.0003, 0.0002)
    test = family(rng, 0.0, 0.0)           # the edge is gone after the split
    v = verdict(train, test)
    assert v.stage == "REJECTED"
    assert any("out-of-sample" in r or "evidence" in r for r in v.reasons)


def test_the_evidence_pools_both_records_by_their_length():
    rng = np.random.default_rng(3)
    long_weak = out_of_sample_sharpe(rng.normal(0.00025, 0.01, 40_000))
    assert 0.9 < long_weak.psr < 1.0
    # a short held-out record that looks good adds little to a long one that is flat
    flat = out_of_sample_sharpe(rng.normal(0.0, 0.01, 40_000))
    short = out_of_sample_sharpe(rng.normal(0.002, 0.01, 400))
    pooled = combined_evidence([(flat.z, flat.n_obs), (short.z, short.n_obs)])
    assert pooled < short.psr


def test_long_series_are_summed_for_the_sample_statistics():
    r = np.arange(1.0, 11.0)
    assert aggregate_returns(r, 5).tolist() == [3.0, 7.0, 11.0, 15.0, 19.0]
    assert aggregate_returns(r, 20) is r
    m = np.ones((10, 3))
    assert aggregate_returns(m, 3).shape == (3, 3) and aggregate_returns(m, 3).sum() == 30


def test_a_walk_forward_pools_its_folds():
    rng = np.random.default_rng(4)
    reports = []
    is_parts, oos_parts = [], []
    for _ in range(4):
        m = family(rng, 0.0003, 0.0002, bars=6000)
        train, test = m[:4000], m[4000:]
        v = verdict(train, test)
        reports.append(v.report())
        best = int(np.argmax(train.mean(axis=0) / train.std(axis=0, ddof=1)))
        is_parts.append(train[:, best])
        oos_parts.append(test[:, best])
    is_r, oos_r = np.concatenate(is_parts), np.concatenate(oos_parts)
    wf = assess_walk_forward(fold_reports=reports, is_returns=is_r, oos_returns=oos_r,
                             is_metrics=metrics(is_r), oos_metrics=metrics(oos_r),
                             min_trades=10, bars_per_year=8760)
    report = wf.report()
    assert wf.stage in ("PAPER", "LIVE_CANDIDATE"), wf.reasons
    assert report["n_trials"] == 4 * 300 and len(report["folds"]) == 4
    combos = sum(r["pbo"]["n_combinations"] for r in reports)
    assert report["pbo"]["n_combinations"] == combos
    assert report["pbo"]["pbo"] == pytest.approx(np.mean([r["pbo"]["pbo"] for r in reports]))
    assert 0.3 < report["wfe"] < 3.0
    # the same folds with their test windows made worthless are rejected on the WFE
    worthless = rng.normal(0.0, 0.01, oos_r.size) - 0.0001
    wf = assess_walk_forward(fold_reports=reports, is_returns=is_r, oos_returns=worthless,
                             is_metrics=metrics(is_r), oos_metrics=metrics(worthless),
                             min_trades=10, bars_per_year=8760)
    assert wf.stage == "REJECTED" and any("walk-forward efficiency" in r for r in wf.reasons)

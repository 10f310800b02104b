"""A strategy of pure noise, tried many times: high PBO, low deflated Sharpe, REJECTED."""
import numpy as np

from app.backtest import BacktestConfig, backtest
from app.validation import confidence_and_stage, deflated_sharpe_ratio, probability_of_backtest_overfitting
from tests.conftest import random_candles


def test_the_best_of_many_coin_flips_is_rejected():
    candles = random_candles(4000, seed=7, vol=0.01)
    config = BacktestConfig(fee=0.0005, periods_per_year=8760)
    rng = np.random.default_rng(0)
    results = []
    for _ in range(200):  # 200 "parameter sets", each a different coin-flip position series
        target = np.repeat(rng.choice([-1.0, 1.0], size=4000 // 20), 20)
        results.append(backtest(candles, target, config))
    sharpes = np.array([r.metrics["sharpe_ratio"] for r in results])
    best = results[int(np.argmax(sharpes))]
    dsr = deflated_sharpe_ratio(best.returns, len(results), float(np.var(sharpes, ddof=1)) / 8760)
    pbo = probability_of_backtest_overfitting(np.column_stack([r.returns for r in results]), 16)
    assert best.metrics["sharpe_ratio"] > 1.0          # it looks good in sample...
    assert dsr.dsr < 0.5                               # ...but is luck among 200 tries
    assert pbo.pbo > 0.3                               # and the choice does not survive
    confidence, stage, reasons = confidence_and_stage(dsr, pbo, best.metrics, None, min_trades=10)
    assert stage == "REJECTED" and confidence == 0.0 and reasons

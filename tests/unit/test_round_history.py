"""cmaes rounds are asked from a trimmed history (app.optimize.rounds._history_for): the
same parameters, sampler attributes and study state as from the whole history, round
after round, through failed trials, rejected floors, repaired draws and generations that
straddle rounds."""
import hashlib

import pytest

from app.optimize import rounds
from app.optimize.rounds import PastTrial
from app.optimize.space import build_space
from app.strategies import get_strategy


def value(space, params: dict) -> float | None:
    """Smooth in the numeric parameters; 1 in 10 fails, 1 in 10 hits the -1e9 floor."""
    h = int(hashlib.md5(repr(sorted(params.items())).encode()).hexdigest()[:8], 16) % 100
    if h < 10:
        return None
    if h < 20:
        return -1e9
    total = 0.0
    for name, dist in space.distributions().items():
        x = params[name]
        if hasattr(dist, "choices"):
            total += 0.3 * dist.choices.index(x)
        else:
            total -= ((x - dist.low) / (dist.high - dist.low) - 0.37) ** 2
    return total


def ask(space, seed, round_no, batch, history, state, trim):
    asked, state = rounds._ask_optuna(space, "cmaes", seed, round_no, batch, history, state,
                                      None, None, trim=trim)
    return [(a.params, a.system_attrs) for a in asked], state


@pytest.mark.parametrize("strategy,batch,seed", [("SMA_CROSS", 6, 1), ("LIQUIDITY_SWEEP", 5, 2),
                                                 ("RSI_MEAN_REVERSION", 8, 3)])
def test_trimmed_history_asks_what_the_whole_history_asks(strategy, batch, seed):
    space = build_space(get_strategy(strategy))
    history, state, shown = [], {}, []
    for round_no in range(24):
        trimmed, trimmed_state = ask(space, seed, round_no, batch, history, state, trim=True)
        whole, whole_state = ask(space, seed, round_no, batch, history, state, trim=False)
        assert trimmed == whole, f"round {round_no}"
        assert trimmed_state == whole_state, f"round {round_no}"
        shown.append(len(rounds._history_for("cmaes", history)))
        state = trimmed_state
        for params, attrs in trimmed:
            history.append(PastTrial(len(history), params, value(space, params), attrs))
    # The search went through several generations, and the trimming did cut.
    assert max(t.system_attrs.get("cma:generation", 0) for t in history) >= 8
    assert max(shown) < 4 * batch < len(history) / 4
    if strategy == "SMA_CROSS":
        assert any(t.system_attrs.get("trad:repaired") for t in history)


def test_other_optimizers_see_the_whole_history():
    history = [PastTrial(i, {"fast": 2, "slow": 3}, 1.0, {}) for i in range(5)]
    assert rounds._history_for("genetic", history) is None
    assert rounds._history_for(rounds.OPTUNA_TPE, history) is None
    assert rounds._history_for("cmaes", []) == []
    assert rounds._history_for("cmaes", [PastTrial(0, {}, None, {})]) == []

"""A third-party strategy package for the tests: strategies that raise, run slowly or peek
ahead, installed for the workers (and the web process) through their PYTHONPATH and found
through the ``trad.strategies`` entry points, as a trader's own package would be."""
from __future__ import annotations

from pathlib import Path

__all__ = ["write_plugins"]

SOURCE = '''
import numpy as np
from app.strategies.base import IntParam, Strategy


class Explodes(Strategy):
    """Long always, except that it raises for large thresholds: a strategy with a bug."""

    name = "EXPLODES"
    space = (IntParam("threshold", 1, 100, default=5),)

    def positions(self, candles, params, cache):
        if params["threshold"] > 50:
            raise ValueError(f"threshold {params['threshold']} is too big")
        return np.ones(len(candles))


class Slow(Strategy):
    """In and out every ``period`` bars, slowly (0.15 s a run): a finish long enough to
    kill the worker in the middle of it."""

    name = "SLOW"
    space = (IntParam("period", 2, 40, default=5),)

    def positions(self, candles, params, cache):
        import os
        import time

        from celery import current_task

        # TRAD_TEST_SLOW_TRIAL_S: how long a trial takes in a worker's run_trials (the
        # finish's own runs stay at 0.15 s).
        in_trials = current_task is not None and current_task.name == "trad.run_trials"
        time.sleep(float(os.environ.get("TRAD_TEST_SLOW_TRIAL_S", "0.15")) if in_trials else 0.15)
        return (np.arange(len(candles)) // params["period"] % 2).astype(float)


class WhereRun(Strategy):
    """In and out every ``period`` bars, saying which process ran each trial: a file named
    by its pid in TRAD_TEST_PID_DIR (written as the trial starts), a trial lasting
    TRAD_TEST_SLOW_TRIAL_S. With TRAD_TEST_RENDEZVOUS=N a process's first trial waits
    (up to a minute) until N processes have started one: only trials run at the same
    time pass it."""

    name = "WHERE_RUN"
    space = (IntParam("period", 2, 40, default=5),)

    def positions(self, candles, params, cache):
        import os
        import time
        from pathlib import Path

        from celery import current_task

        if current_task is not None and current_task.name == "trad.run_trials":
            where = Path(os.environ["TRAD_TEST_PID_DIR"])
            mine = where / str(os.getpid())
            first = not mine.exists()
            mine.touch()
            want = int(os.environ.get("TRAD_TEST_RENDEZVOUS", "0"))
            deadline = time.monotonic() + 60
            while first and len(list(where.iterdir())) < want:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {want} processes ran trials at the same time")
                time.sleep(0.01)
            time.sleep(float(os.environ.get("TRAD_TEST_SLOW_TRIAL_S", "0")))
        return (np.arange(len(candles)) // params["period"] % 2).astype(float)


def _peeking(candles, cache, period, peek):
    """Long above a moving average; where ``peek`` is true, long exactly when the next bar
    closes higher: a perfect, impossible edge on those bars."""
    sma = cache.sma(period)
    target = np.where(np.isnan(sma), 0.0, (candles.close > sma).astype(float))
    nxt = np.append(candles.close[1:], np.nan)
    cheat = peek & ~np.isnan(nxt)
    target[cheat] = (nxt[cheat] > candles.close[cheat]).astype(float)
    return target


class PeekBetween(Strategy):
    """Honest, except from ``peek_from`` to ``peek_until`` (open times, epoch ms), where it
    reads the next close: a cheat confined to the held-out bars, to one fold, or to the
    last bars, depending on the window given."""

    name = "PEEK_BETWEEN"
    space = (IntParam("period", 5, 60, default=20),
             IntParam("peek_from", 0, 2**62, default=2**62),
             IntParam("peek_until", 0, 2**62, default=2**62))

    def positions(self, candles, params, cache):
        ts = candles.ts
        return _peeking(candles, cache, params["period"],
                        (ts >= params["peek_from"]) & (ts < params["peek_until"]))


class PeekSometimes(Strategy):
    """Honest with its default parameters; with ``period`` above 40 it reads the next
    close everywhere, so a search finds those parameters the best."""

    name = "PEEK_SOMETIMES"
    space = (IntParam("period", 5, 60, default=20),)

    def positions(self, candles, params, cache):
        return _peeking(candles, cache, params["period"],
                        np.full(len(candles), params["period"] > 40))
'''




def write_plugins(root: Path) -> Path:
    """The package (``broken_strats``) and its dist-info under ``root``; returns ``root``."""
    (root / "broken_strats.py").write_text(SOURCE)
    dist = root / "broken_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trad.strategies]\nEXPLODES = broken_strats:Explodes\n"
                                           "SLOW = broken_strats:Slow\n"
                                           "WHERE_RUN = broken_strats:WhereRun\n"
                                           "PEEK_BETWEEN = broken_strats:PeekBetween\n"
                                           "PEEK_SOMETIMES = broken_strats:PeekSometimes\n")
    return root

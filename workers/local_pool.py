"""The embedded default on every local core: a round's chunks run by local processes.

With no broker (tasks in-process, Celery eager) a round's chord would run its chunks one
after another on one core. Here the same ``run_trials`` task runs them (its eager
``apply``, the code a worker runs) in this process and in ``local_workers - 1`` helper
processes started with ``spawn``, then the round's ``finish_round`` runs here with their
results in the chord's order. A chunk's trials are fixed by the plan, not by who runs it,
so N processes store the same trials and reach the same result as one.

The helpers are started once per process, at the first round with more than one chunk,
and kept for the next rounds and jobs. This process takes chunks too, from the same
queue, so nothing waits for the helpers to start (their imports take about a second): a
small job is done here before they are up, a large one gets them for all but its first
second. A chunk that raises (a strategy's bug) ends the round with that error once the
chunks in flight are back, as in one process. A helper that dies (killed, out of memory)
does not lose its chunk: it runs here, its trials written idempotently as a redelivered
chunk's are (concurrent.futures says so with ``BrokenProcessPool``; multiprocessing.Pool
would lose the task silently), and the next round starts new helpers. Ctrl-C
stops the helpers with this process (they ignore SIGINT, so a terminal's interrupt prints
no traceback from them).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

__all__ = ["LocalChord", "shutdown"]

log = logging.getLogger(__name__)

_pool = None
_pool_size = 0
_pool_lock = threading.Lock()


def _init_helper(settings, log_level: int) -> None:
    """A helper process: the parent's settings and log level, the tasks registered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from app.logging_setup import configure_logging
    from workers.celery_app import celery_app, configure

    configure_logging(logging.getLevelName(log_level), settings.log_format)
    configure(celery_app, settings)
    celery_app.loader.import_default_modules()
    try:
        from workers.warmup import warm_trials

        warm_trials()
    except Exception as exc:  # noqa: BLE001 - a cold first chunk is slower, never wrong
        log.warning("helper warm-up failed error=%s: %s", type(exc).__name__, exc)


def _run_in_helper(name: str, args: tuple, kwargs: dict):
    from workers.celery_app import celery_app

    return celery_app.tasks[name].apply(args=args, kwargs=kwargs, throw=True).get()


def _helpers(settings, size: int) -> ProcessPoolExecutor:
    """The process-wide pool of ``size`` helpers, started on first use (again if the size
    asked for changed, or a helper died and broke it)."""
    global _pool, _pool_size
    with _pool_lock:
        broken = _pool is not None and getattr(_pool, "_broken", False)
        if _pool is None or _pool_size != size or broken:
            if _pool is not None:
                _stop(_pool)
            _pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_helper,
                                        initargs=(settings, logging.getLogger().getEffectiveLevel()))
            _pool_size = size
            log.info("local helper processes started count=%d", size)
        return _pool


def _stop(pool: ProcessPoolExecutor) -> None:
    # Python 3.14 has pool.kill_workers(); before it, the processes are only reachable here.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def shutdown() -> None:
    """Stop the helpers now (Ctrl-C, tests); the next round with chunks starts new ones."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is not None:
            _stop(_pool)
        _pool, _pool_size = None, 0


class LocalChord:
    """A round's chord for the embedded default: ``header`` (run_trials signatures) on
    this process and the helpers, then ``body`` (finish_round) here with the results.
    Sent by ``workers.pipeline`` like any signature (``apply_async``)."""

    def __init__(self, header: list, body, settings, workers: int):
        self.header = list(header)
        self.body = body
        self.settings = settings
        self.workers = workers

    def apply_async(self):
        results = self._run_header()
        return self.body.apply(args=(results,), throw=True)

    def _run_header(self) -> list:
        header = self.header
        results: list = [None] * len(header)
        cond = threading.Condition()
        # again: chunks a dead helper held, run here (their trials are written idempotently,
        # so whatever the helper stored before it died is not stored twice).
        state = {"next": 0, "in_flight": 0, "error": None, "again": []}

        def take() -> int | None:
            with cond:
                if state["error"] is not None:
                    return None
                if state["again"]:
                    i = state["again"].pop()
                elif state["next"] < len(header):
                    i = state["next"]
                    state["next"] += 1
                else:
                    return None
                state["in_flight"] += 1
                return i

        def done(i: int, value=None, error: BaseException | None = None) -> None:
            with cond:
                state["in_flight"] -= 1
                if isinstance(error, (BrokenProcessPool, CancelledError)):
                    state["again"].append(i)
                elif error is not None:
                    state["error"] = state["error"] or error
                else:
                    results[i] = value
                cond.notify_all()

        pool = _helpers(self.settings, self.workers - 1)

        def feed(ready) -> None:
            # A helper that is up (its first reply, or one more chunk done) takes the next.
            if ready.cancelled() or ready.exception() is not None:
                return
            i = take()
            if i is None:
                return
            sig = header[i]
            try:
                future = pool.submit(_run_in_helper, sig.task, tuple(sig.args), dict(sig.kwargs))
            except RuntimeError:  # the pool broke or shut down meanwhile: run it here
                done(i, error=BrokenProcessPool("the local helpers stopped"))
                return
            future.add_done_callback(lambda f, i=i: finished(i, f))

        def finished(i: int, future) -> None:
            if future.cancelled():
                done(i, error=CancelledError())
                return
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                log.warning("a local helper process died; its chunk runs here job_id=%s round=%s",
                            *header[i].args[:2])
            done(i, None if error else future.result(), error)
            if error is None:
                feed(future)

        for _ in range(self.workers - 1):
            pool.submit(os.getpid).add_done_callback(feed)
        while True:
            i = take()
            if i is None:
                with cond:
                    cond.wait_for(lambda: state["again"] or state["in_flight"] == 0)
                    if state["again"] and state["error"] is None:
                        continue
                    if state["error"] is not None:
                        raise state["error"]
                    return results
            try:
                value = header[i].apply(throw=True).get()
            except BaseException as exc:  # noqa: BLE001 - raised once the others are back
                done(i, error=exc)
            else:
                done(i, value)

"""A training job's live progress on a terminal: trials done of total, trials a second,
time left and the best objective value so far, redrawn in place on stderr (nothing when
stderr is not a terminal, so pipes, logs and tests stay clean)."""
from __future__ import annotations

import os
import sys
import time
from collections import deque

__all__ = ["JobProgress", "TrialRate", "format_duration", "progress_fields"]


class TrialRate:
    """Trials a second over about the last ``window_s`` seconds, and the time left.

    The clock starts at the first trials seen to arrive: the time a job waits for a
    worker, loads its candles and compiles is no trial time, and counting it would
    promise a wrong finish.

    >>> rate = TrialRate()
    >>> rate.add(0.0, 0); rate.add(1.0, 0); rate.add(2.0, 100); rate.per_second()
    >>> rate.add(4.0, 300); rate.per_second(), rate.seconds_left(1000)
    (100.0, 7.0)
    """

    def __init__(self, window_s: float = 30.0):
        self.window_s = window_s
        self._first: int | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, done: int) -> None:
        if self._first is None:
            self._first = done
        if done == self._first:
            return
        self._samples.append((t, done))
        # One sample older than the window stays, so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
            self._samples.popleft()

    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def seconds_left(self, total: int) -> float | None:
        rate = self.per_second()
        if not rate or rate <= 0:
            return None
        return max(total - self._samples[-1][1], 0) / rate


def format_duration(seconds: float | None) -> str:
    """``1:02:03``, ``2:05`` or ``0:07``; ``-:--`` when unknown.

    >>> format_duration(3723), format_duration(125.4), format_duration(None)
    ('1:02:03', '2:05', '-:--')
    """
    if seconds is None:
        return "-:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def progress_fields(job: dict, rate: TrialRate) -> dict:
    """What the line shows beside the bar, as text. A job that ended before two readings
    saw trials arrive is rated over its whole run (its own start and finish times).

    >>> progress_fields({"status": "running", "trials_done": 0, "trials_total": 50,
    ...                  "best_value": None, "objective": "sharpe_ratio"}, TrialRate())
    {'rate': '- trials/s', 'eta': 'ETA -:--', 'best': 'best sharpe_ratio -'}
    >>> progress_fields({"status": "succeeded", "trials_done": 50, "trials_total": 50,
    ...                  "best_value": 1.5, "objective": "sharpe_ratio",
    ...                  "started_at": "2024-01-01T00:00:00", "finished_at": "2024-01-01T00:00:04"},
    ...                 TrialRate())
    {'rate': '12 trials/s', 'eta': 'took 0:04', 'best': 'best sharpe_ratio 1.5000'}
    """
    total, done = int(job["trials_total"]), int(job["trials_done"])
    finished = job["status"] in ("succeeded", "failed", "cancelled")
    per_second = rate.per_second()
    took = _seconds_between(job.get("started_at"), job.get("finished_at")) if finished else None
    if per_second is None and took:
        per_second = done / took
    if per_second is None:
        speed = "-"
    elif per_second >= 10:
        speed = f"{per_second:,.0f}"
    else:
        speed = f"{per_second:.2g}"
    if finished:
        eta = f"took {format_duration(took)}" if took is not None else job["status"]
    elif done >= total:
        eta = "finishing"  # the winner's checks, out of sample and for lookahead
    else:
        eta = f"ETA {format_duration(rate.seconds_left(total))}"
    best = job.get("best_value")
    return {"rate": f"{speed} trials/s", "eta": eta,
            "best": f"best {job.get('objective') or 'value'} "
                    + ("-" if best is None else f"{best:.4f}")}


class JobProgress:
    """Call with a job (the HTTP API's job view) each time it is read; ``close()`` at the
    end. Draws with rich on ``stream`` (stderr) only when that is a terminal."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        # A terminal that cannot move its cursor (TERM=dumb, an editor's shell) gets no line.
        self.enabled = (bool(getattr(self.stream, "isatty", lambda: False)())
                        and os.environ.get("TERM") != "dumb")
        self._clock = clock
        self._rate = TrialRate()
        self._last_done: int | None = None
        self._bar = None
        self._task = None

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._console = Console(file=self.stream, force_terminal=True, highlight=False)
        self._bar_column = BarColumn(bar_width=30)
        # No redraw thread (each reading redraws) and no capture of stdout: the result is
        # printed there once the line has stopped.
        self._bar = Progress(TextColumn("{task.description}"), self._bar_column,
                             MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                             TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[best]}"),
                             console=self._console, auto_refresh=False, redirect_stdout=False,
                             redirect_stderr=False)
        self._task = self._bar.add_task("", total=None, rate="", eta="", best="")

    def __call__(self, job: dict) -> None:
        if not self.enabled:
            return
        done, total = int(job["trials_done"]), int(job["trials_total"])
        if done < total or done != self._last_done:
            # Not while the job finishes: the rate is of the trials, not of the checks after.
            self._rate.add(self._clock(), done)
        self._last_done = done
        fresh = self._bar is None
        if fresh:
            self._start()
        fields = progress_fields(job, self._rate)
        description = job["strategy"] + ("" if job["status"] == "running" else f" {job['status']}")

        def used() -> int:
            return len(description) + len(f"{total}/{total}") + sum(map(len, fields.values())) + 7

        # The numbers always show whole: on a narrow terminal the objective's name goes
        # first, then the description's tail; the bar takes what is left, 5 to 40 wide.
        width = self._console.width
        if used() + 5 > width:
            fields["best"] = fields["best"].replace(f" {job.get('objective')} ", " ")
        over = used() + 5 - width
        if over > 0:
            dots = "…" if self._console.encoding.lower().startswith("utf") else "~"
            description = description[:max(len(description) - over - 1, 1)] + dots
        self._bar_column.bar_width = max(5, min(40, width - used()))
        self._bar.update(self._task, completed=min(done, total), total=max(total, 1),
                         description=description, **fields)
        if fresh:
            self._bar.start()  # draws once itself
        else:
            self._bar.refresh()

    def close(self) -> None:
        """Leave the last line as it was drawn (idempotent)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

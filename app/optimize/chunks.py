"""How a round of trials is cut into chunks, one Celery task each (pure).

A chunk should carry at least ``CHUNK_MIN_S`` of work (a task costs about 3 ms however
small) and about ``CHUNK_TARGET_S`` at most (so progress moves and a lost worker loses
little), and a round gets at least ``MIN_CHUNKS`` so every worker has some. The last
chunks of a round shrink (guided scheduling), so no worker waits long at the end on one
that is still running.
"""
from __future__ import annotations

import math

__all__ = ["CHUNK_MIN_S", "CHUNK_TARGET_S", "MAX_CHUNK", "MIN_CHUNKS", "chunk_bounds", "chunk_size"]

CHUNK_MIN_S = 0.05
CHUNK_TARGET_S = 1.0
MIN_CHUNKS = 8
MAX_CHUNK = 5_000


def chunk_size(n: int, per_trial_s: float) -> int:
    """Trials a chunk of a round of ``n`` trials takes, each trial costing ``per_trial_s``.

    >>> chunk_size(100_000, 0.0005), chunk_size(40, 0.0005), chunk_size(10, 1.0)
    (2000, 100, 1)
    """
    by_time = max(1, int(CHUNK_TARGET_S / max(per_trial_s, 1e-7)))
    floor = max(1, int(math.ceil(CHUNK_MIN_S / max(per_trial_s, 1e-7))))
    size = max(floor, min(by_time, int(math.ceil(n / MIN_CHUNKS))))
    return max(1, min(size, MAX_CHUNK))


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each chunk: ``size`` trials, shrinking over the last few to a
    quarter of what remains, never below a quarter of ``size``.

    >>> chunk_bounds(10, 4)
    [(0, 3), (3, 5), (5, 7), (7, 8), (8, 9), (9, 10)]
    """
    bounds, start, smallest = [], 0, max(1, size // 4)
    while start < n:
        step = min(size, max(smallest, -(-(n - start) // 4)))
        bounds.append((start, min(n, start + step)))
        start += step
    return bounds

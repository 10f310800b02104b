"""How a round is cut into chunks: full-size chunks, then shrinking ones at the end."""
import pytest

from app.optimize.chunks import chunk_bounds as _chunk_bounds


@pytest.mark.parametrize("n,size", [(100_000, 1520), (400, 1667), (40, 5), (10, 1), (1, 7), (9, 4)])
def test_chunks_cover_the_round_once_and_shrink_only_at_the_end(n, size):
    bounds = _chunk_bounds(n, size)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert all(0 < s <= size for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    assert all(s >= max(1, size // 4) for s in sizes[:-1])


def test_a_big_round_keeps_full_chunks_until_the_last_few():
    # 100,000 trials in chunks of 1,000: full chunks while 4,000 or more remain, then a
    # quarter of what remains (ceil), never under 250: 3000/4 -> 750, 2250/4 -> 563, ...
    sizes = [b - a for a, b in _chunk_bounds(100_000, 1000)]
    assert sizes == [1000] * 97 + [750, 563, 422, 317, 250, 250, 250, 198]

"""models/chunking.py: batch sizes that follow a time target."""

from __future__ import annotations

import pytest

from models.chunking import ChunkSizer


def run(sizer: ChunkSizer, seconds_per_row: float, batches: int, overhead: float = 0.0):
    sizes = []
    for _ in range(batches):
        sizes.append(sizer.size)
        sizer.record(overhead + sizer.size * seconds_per_row)
    return sizes


def test_converges_to_the_size_that_takes_the_target_time():
    sizer = ChunkSizer(target_seconds=0.05, size=5000)
    # 20 µs per row: 2,500 rows take 50 ms.
    sizes = run(sizer, 20e-6, 12)
    assert sizes[0] == 5000
    assert sizes[-1] == pytest.approx(2500, rel=0.02)


def test_grows_at_most_twofold_per_batch():
    sizer = ChunkSizer(target_seconds=0.05, size=1000)
    sizes = run(sizer, 1e-6, 6)  # fast rows: 50,000 would take 50 ms
    assert sizes == [1000, 2000, 4000, 8000, 16000, 32000]


def test_a_slow_batch_shrinks_the_next_at_once():
    sizer = ChunkSizer(target_seconds=0.05, size=5000)
    run(sizer, 10e-6, 8)  # settled near 5,000
    sizer.record(1.0)  # one batch waited on a lock for a second
    assert sizer.size < 1500


def test_stays_within_bounds():
    sizer = ChunkSizer(target_seconds=0.05, size=500, low=200, high=3000)
    run(sizer, 1e-7, 10)
    assert sizer.size == 3000
    sizer.record(100.0)
    assert sizer.size == 200
    assert ChunkSizer(target_seconds=0.05, size=10, low=200).size == 200


def test_a_zero_duration_is_not_a_division_by_zero():
    sizer = ChunkSizer(target_seconds=0.05, size=1000)
    assert sizer.record(0.0) == 2000

"""Registration's drift reference for predictions: every held-out row, or a seeded sample."""

from __future__ import annotations

import numpy as np

from mallard.tasks.register import PROFILE_MAX_ROWS, profiled_rows


def test_small_held_out_sets_are_profiled_whole() -> None:
    held_out = np.array([3, 8, 9, 20])
    assert profiled_rows(held_out, seed=1) is held_out


def test_large_held_out_sets_are_sampled_the_same_way_every_time() -> None:
    held_out = np.arange(0, 6 * PROFILE_MAX_ROWS, 2)  # 3x the cap, sorted positions

    sample = profiled_rows(held_out, seed=42)

    assert len(sample) == PROFILE_MAX_ROWS and np.all(np.diff(sample) > 0)
    assert np.isin(sample, held_out).all()
    assert np.array_equal(sample, profiled_rows(held_out, seed=42))
    assert not np.array_equal(sample, profiled_rows(held_out, seed=43))

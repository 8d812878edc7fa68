"""make_split: sizes, disjoint and covering, reproducible from the seed, too few rows."""

from __future__ import annotations

import numpy as np
import pytest

from mallard.core.errors import InputError
from mallard.core.spec import SplitSection
from mallard.tasks.split import MIN_TRAIN_ROWS, make_split

DEFAULT = SplitSection()  # 15% test, 15% validation


def test_sizes_follow_the_fractions() -> None:
    split = make_split(200, DEFAULT, seed=1, folds=5)

    assert (len(split.train), len(split.validation), len(split.test)) == (140, 30, 30)


def test_sizes_with_other_fractions() -> None:
    split = make_split(1000, SplitSection(test=0.2, validation=0.1), seed=1, folds=5)

    assert (len(split.train), len(split.validation), len(split.test)) == (700, 100, 200)


def test_parts_are_disjoint_sorted_and_cover_every_row() -> None:
    n = 157
    split = make_split(n, DEFAULT, seed=3, folds=5)

    parts = [split.train, split.validation, split.test]
    assert sum(len(p) for p in parts) == n
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    assert not set(split.train) & set(split.validation)
    assert not set(split.train) & set(split.test)
    assert not set(split.validation) & set(split.test)
    for part in parts:
        assert np.array_equal(part, np.sort(part))


def test_the_split_is_random_not_a_block() -> None:
    split = make_split(200, DEFAULT, seed=3, folds=5)

    assert not np.array_equal(split.test, np.arange(170, 200))
    assert split.test.min() < 100 < split.test.max()


def test_same_seed_gives_the_same_split() -> None:
    first = make_split(300, DEFAULT, seed=42, folds=5)
    second = make_split(300, DEFAULT, seed=42, folds=5)

    for a, b in zip(
        (first.train, first.validation, first.test),
        (second.train, second.validation, second.test),
        strict=True,
    ):
        assert np.array_equal(a, b)


def test_different_seed_gives_a_different_split() -> None:
    first = make_split(300, DEFAULT, seed=42, folds=5)
    second = make_split(300, DEFAULT, seed=43, folds=5)

    assert not np.array_equal(first.test, second.test)
    assert not np.array_equal(first.validation, second.validation)


def test_tiny_fractions_still_hold_out_one_row() -> None:
    split = make_split(40, SplitSection(test=0.001, validation=0.001), seed=0, folds=5)

    assert (len(split.validation), len(split.test)) == (1, 1)
    assert len(split.train) == 38


def test_too_few_rows_is_an_input_error() -> None:
    with pytest.raises(InputError) as caught:
        make_split(25, DEFAULT, seed=1, folds=5)

    message = str(caught.value)
    assert "only 25 valid rows" in message
    assert "15%" in message and "5 folds" in message


def test_the_smallest_workable_input_splits() -> None:
    # 30 rows: 4 test + 4 validation (rounded) + 22 train >= MIN_TRAIN_ROWS
    split = make_split(30, DEFAULT, seed=1, folds=5)

    assert len(split.train) >= MIN_TRAIN_ROWS
    with pytest.raises(InputError):
        make_split(27, DEFAULT, seed=1, folds=5)  # 4 + 4 held out leaves 19


def test_many_folds_need_two_training_rows_per_fold() -> None:
    make_split(100, DEFAULT, seed=1, folds=20)  # 70 train rows >= 40
    with pytest.raises(InputError, match="20 folds"):
        make_split(40, SplitSection(test=0.1, validation=0.1), seed=1, folds=20)  # 32 < 40

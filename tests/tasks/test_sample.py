"""[train] max_rows: the seeded training sample tuning and selection fit on."""

from __future__ import annotations

import numpy as np
import pytest

from mallard.core.errors import SpecError
from mallard.core.spec import TrainSection
from mallard.init_spec.plan import TRAIN_MAX_ROWS, search_draft
from mallard.tasks.sample import training_sample
from mallard.tasks.split import Split


def _split(n_train: int = 7_000, n_validation: int = 1_500, n_test: int = 1_500) -> Split:
    order = np.random.default_rng(0).permutation(n_train + n_validation + n_test)
    return Split(
        np.sort(order[:n_train]),
        np.sort(order[n_train : n_train + n_validation]),
        np.sort(order[n_train + n_validation :]),
    )


def test_no_limit_or_a_limit_above_the_rows_keeps_the_split() -> None:
    split = _split()
    for max_rows in (None, 7_000, 50_000):
        sample = training_sample(split, max_rows, seed=42)
        assert sample.split is split and not sample.sampled
        assert sample.train_rows == 7_000 and sample.validation_rows == 1_500
    assert "all 7,000 train rows" in training_sample(split, None, 42).describe(None)


def test_sample_is_bounded_seeded_sorted_and_drawn_from_its_own_split() -> None:
    split = _split()
    sample = training_sample(split, 1_000, seed=42)
    train, validation = sample.split.train, sample.split.validation
    assert len(train) == 1_000 == sample.train_rows
    assert len(validation) == round(1_500 * 1_000 / 7_000) == sample.validation_rows
    assert np.isin(train, split.train).all() and np.isin(validation, split.validation).all()
    assert len(np.unique(train)) == len(train) and (np.diff(train) > 0).all()
    assert sample.split.test is split.test  # evaluation keeps every test row
    again = training_sample(split, 1_000, seed=42)
    assert np.array_equal(again.split.train, train)
    assert np.array_equal(again.split.validation, validation)
    other = training_sample(split, 1_000, seed=7)
    assert not np.array_equal(other.split.train, train)
    assert sample.describe(1_000) == (
        "a seeded sample of 1,000 of 7,000 train rows and 214 of 1,500 validation rows "
        "(max_rows 1,000)"
    )


def test_max_rows_is_checked_by_the_spec() -> None:
    assert TrainSection().max_rows is None
    assert TrainSection(max_rows=5_000).max_rows == 5_000
    with pytest.raises(ValueError):
        TrainSection(max_rows=10)


def test_init_writes_a_sample_limit_above_a_million_rows(tmp_path) -> None:
    assert search_draft("regression", TRAIN_MAX_ROWS).max_rows is None
    assert search_draft("regression", 10_000_000).max_rows == TRAIN_MAX_ROWS
    assert search_draft("classification", 2_000_000).max_rows == TRAIN_MAX_ROWS


def test_spec_reads_train_and_ingest_sections(tmp_path) -> None:
    from mallard.core.spec import parse_spec

    text = """
[pipeline]
name = "p"
task = "regression"
target = "y"
[source]
path = "d.csv"
[train]
max_rows = 200000
[ingest]
engine = "duckdb"
memory_limit = "256MB"
[[candidates]]
family = "ridge"
"""
    spec = parse_spec(text, tmp_path / "s.toml", check_source=False)
    assert spec.train.max_rows == 200_000
    assert spec.ingest.engine == "duckdb" and spec.ingest.memory_limit == "256MB"
    with pytest.raises(SpecError, match=r"\[ingest.memory_limit\]"):
        parse_spec(text.replace('"256MB"', '"lots"'), tmp_path / "s.toml", check_source=False)


def test_the_deployable_refit_sample_draws_from_every_labelled_row() -> None:
    from mallard.tasks.sample import labelled_sample

    labelled = np.arange(10_000)[::-1].copy()  # train + validation + test, any order

    assert np.array_equal(labelled_sample(labelled, None, 0), np.arange(10_000))
    assert np.array_equal(labelled_sample(labelled, 10_000, 0), np.arange(10_000))
    capped = labelled_sample(labelled, 1_000, 7)
    assert len(capped) == 1_000 and len(np.unique(capped)) == 1_000
    assert np.all(np.diff(capped) > 0)  # sorted positions
    assert np.array_equal(capped, labelled_sample(labelled, 1_000, 7))  # seeded
    assert not np.array_equal(capped, labelled_sample(labelled, 1_000, 8))
    assert capped.max() > 8_500 and capped.min() < 1_500  # from the whole range (test rows too)

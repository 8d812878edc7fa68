"""Stratified, time and group holdout splits, and the CV folds each strategy implies."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.model_selection import GroupKFold, TimeSeriesSplit

from mallard.core.errors import InputError
from mallard.core.spec import Candidate, FeaturesSection, SplitSection, parse_spec
from mallard.tasks.features import prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.plan import not_features
from mallard.tasks.split import Split, make_split
from mallard.tasks.tune import SearchPlan, cv_splitter, train_view, tune_candidate

ROWS = 1000


def parts(split: Split) -> dict[str, np.ndarray]:
    return {"train": split.train, "validation": split.validation, "test": split.test}


def covers_every_row_once(split: Split, n_rows: int) -> bool:
    joined = np.concatenate(list(parts(split).values()))
    return sorted(joined.tolist()) == list(range(n_rows))


# --- stratified ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_keeps_the_class_ratio_in_every_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(ROWS) < 0.06, "rare", "common")
    n_rare = int((y == "rare").sum())
    section = SplitSection(strategy="stratified", test=0.2, validation=0.15)

    split = make_split(ROWS, section, seed, folds=5, y=y)

    assert covers_every_row_once(split, ROWS)
    for name, rows in parts(split).items():
        expected = n_rare * len(rows) / ROWS
        assert abs(int((y[rows] == "rare").sum()) - expected) <= 1, name
    # sizes follow the fractions (sklearn rounds the fraction of the holdout up: +-1 row)
    assert abs(len(split.test) - 200) <= 1 and abs(len(split.validation) - 150) <= 1


def test_stratified_keeps_three_classes_in_proportion() -> None:
    y = np.repeat(["a", "b", "c"], [700, 200, 100])

    split = make_split(ROWS, SplitSection(strategy="stratified"), 3, folds=5, y=y)

    for rows in parts(split).values():
        for label, share in (("a", 0.7), ("b", 0.2), ("c", 0.1)):
            assert abs(int((y[rows] == label).sum()) - share * len(rows)) <= 1


def test_a_class_too_small_to_stratify_is_an_input_error() -> None:
    y = np.array(["common"] * 99 + ["alone"])

    with pytest.raises(InputError, match=r"\[split\]"):
        make_split(100, SplitSection(strategy="stratified"), 0, folds=3, y=y)


# --- time ----------------------------------------------------------------------------------------


def shuffled_days(n_rows: int, seed: int = 0) -> np.ndarray:
    """Dates with repeats (several rows per day), in random row order."""
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    days = [start + timedelta(days=int(d)) for d in rng.integers(0, 200, n_rows)]
    return pl.Series(days).to_numpy()


def test_time_split_trains_on_the_past_and_tests_on_the_future() -> None:
    key = shuffled_days(ROWS)
    section = SplitSection(strategy="time", column="day", test=0.2, validation=0.1)

    split = make_split(ROWS, section, 0, folds=5, key=key)

    assert covers_every_row_once(split, ROWS)
    assert key[split.train].max() <= key[split.validation].min()
    assert key[split.validation].max() <= key[split.test].min()
    assert (len(split.train), len(split.validation), len(split.test)) == (700, 100, 200)
    # the cut is on time, not on row order: every split has rows from all over the file
    for rows in parts(split).values():
        assert rows.min() < ROWS * 0.1 and rows.max() > ROWS * 0.9


def test_time_split_ignores_the_seed() -> None:
    key = shuffled_days(ROWS)
    section = SplitSection(strategy="time", column="day")

    first, other = (make_split(ROWS, section, seed, folds=5, key=key) for seed in (1, 2))

    for a, b in zip(parts(first).values(), parts(other).values(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- group ---------------------------------------------------------------------------------------


def customers(n_rows: int, seed: int = 0) -> np.ndarray:
    """Customer ids with very different row counts (1 to ~40 rows each)."""
    rng = np.random.default_rng(seed)
    return rng.zipf(1.6, n_rows).clip(max=80).astype(str)


@pytest.mark.parametrize("seed", [0, 5])
def test_group_split_never_puts_a_group_in_two_splits(seed: int) -> None:
    key = customers(ROWS, seed)
    section = SplitSection(strategy="group", column="customer")

    split = make_split(ROWS, section, seed, folds=5, key=key)

    assert covers_every_row_once(split, ROWS)
    groups = {name: set(key[rows].tolist()) for name, rows in parts(split).items()}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert all(groups.values())


def test_a_group_split_needs_three_groups() -> None:
    key = np.array(["a", "b"] * 50)

    with pytest.raises(InputError, match=r"\[split\.column\]"):
        make_split(100, SplitSection(strategy="group", column="g"), 0, folds=3, key=key)


GROUP_SPEC = """
[pipeline]
name = "p"
task = "regression"
target = "y"

[source]
sql = "SELECT 1"

[split]
strategy = "group"
column = "customer"

[[candidates]]
family = "ridge"
"""


def test_the_group_column_is_kept_out_of_the_features(tmp_path: Path) -> None:
    spec = parse_spec(GROUP_SPEC, tmp_path / "p.toml")
    frame = sample_frame()

    excluded = not_features(spec)
    features = prepare_features(
        frame, spec.features, "y", split_column="customer", exclude=excluded
    )

    assert excluded == ("customer",)
    assert "customer" not in features.X.columns
    assert features.X.columns == ["day", "x", "noise"]
    assert features.split_key is not None
    np.testing.assert_array_equal(features.split_key, frame["customer"].to_numpy())


def test_the_time_column_stays_a_feature(tmp_path: Path) -> None:
    text = GROUP_SPEC.replace('strategy = "group"', 'strategy = "time"').replace(
        '"customer"', '"day"'
    )
    spec = parse_spec(text, tmp_path / "p.toml")

    assert not_features(spec) == ()


# --- CV folds per strategy -----------------------------------------------------------------------

N = 240


def sample_frame() -> pl.DataFrame:
    rng = np.random.default_rng(9)
    x = rng.normal(size=N)
    return pl.DataFrame(
        {
            "customer": customers(N, 1),
            "day": shuffled_days(N, 2),
            "x": x,
            "noise": rng.normal(size=N),
            "y": 2 * x + rng.normal(0, 0.1, N),
        }
    )


def plan(strategy: str) -> SearchPlan:
    return SearchPlan(Target("regression"), "rmse", folds=4, seed=0, strategy=strategy)


def test_time_cv_is_forward_chaining_over_rows_in_time_order() -> None:
    features = prepare_features(sample_frame(), FeaturesSection(), "y", split_column="day")
    rows = np.arange(0, N, 2)  # any train rows, in file order
    assert features.split_key is not None
    days = features.split_key[rows]
    assert not (np.diff(days.astype("datetime64[D]").astype(int)) >= 0).all()

    X, y, groups = train_view(features, rows, plan("time"))

    splitter = cv_splitter(plan("time"))
    assert isinstance(splitter, TimeSeriesSplit) and splitter.n_splits == 4
    assert groups is None
    ordered = np.sort(days)
    # X holds the rows sorted by time, y still matches X row by row
    np.testing.assert_array_equal(
        X["day"].to_numpy(), pl.Series(ordered).dt.epoch("d").cast(pl.Float64).to_numpy()
    )
    assert features.y is not None
    np.testing.assert_allclose(y, features.y[rows][np.argsort(days, kind="stable")])
    for train, test in splitter.split(X, y):
        assert X["day"][train].max() <= X["day"][test].min()


def test_group_cv_keeps_each_group_in_one_fold() -> None:
    frame = sample_frame()
    features = prepare_features(
        frame, FeaturesSection(), "y", split_column="customer", exclude=("customer",)
    )
    rows = np.arange(N)

    X, y, groups = train_view(features, rows, plan("group"))

    splitter = cv_splitter(plan("group"))
    assert isinstance(splitter, GroupKFold)
    assert groups is not None
    np.testing.assert_array_equal(groups, frame["customer"].to_numpy())
    for train, test in splitter.split(X, y, groups):
        assert not set(groups[train]) & set(groups[test])


@pytest.mark.parametrize(("strategy", "column"), [("time", "day"), ("group", "customer")])
def test_tuning_runs_on_the_strategy_folds(strategy: str, column: str) -> None:
    exclude = ("customer",) if strategy == "group" else ()
    features = prepare_features(
        sample_frame(), FeaturesSection(), "y", split_column=column, exclude=exclude
    )

    tuned = tune_candidate(
        "r",
        Candidate(family="ridge", params={"alpha": [1.0]}),
        features,
        np.arange(N),
        plan(strategy),
    )

    assert tuned.cv_results["fold"].n_unique() == 4
    assert tuned.cv_means["r2"] > 0.9

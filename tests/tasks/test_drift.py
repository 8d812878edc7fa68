"""PSI drift: profiles, stable vs shifted data, null/other buckets, predictions, exact values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from mallard.core.errors import InputError
from mallard.tasks.drift import (
    EPSILON,
    NULL,
    OTHER,
    PREDICTION,
    PSI_SHIFTED,
    PSI_WATCH,
    prediction_profile,
    psi_table,
    reference_profile,
    status,
)

NUMERIC = ["income", "age"]
CATEGORICAL = ["city"]


def sample(seed: int, rows: int = 5000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "income": rng.normal(50.0, 10.0, rows),
            "age": rng.integers(18, 90, rows).astype(np.float64),
            "city": rng.choice(["paris", "lyon", "nice"], rows, p=[0.6, 0.3, 0.1]),
        }
    )


def psi_of(table: pl.DataFrame) -> dict[str, float]:
    return dict(zip(table["feature"], table["psi"], strict=True))


def status_of(table: pl.DataFrame) -> dict[str, str]:
    return dict(zip(table["feature"], table["status"], strict=True))


def test_identical_data_is_stable_everywhere() -> None:
    X = sample(1)
    profile = reference_profile(X, NUMERIC, CATEGORICAL)

    table = psi_table(profile, X)

    assert table["feature"].to_list() == [*NUMERIC, *CATEGORICAL]
    assert table["psi"].to_list() == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert set(table["status"]) == {"stable"}


def test_sample_of_the_same_distribution_is_stable() -> None:
    profile = reference_profile(sample(1), NUMERIC, CATEGORICAL)

    table = psi_table(profile, sample(2))

    assert set(table["status"]) == {"stable"}
    assert max(table["psi"]) < 0.02  # sampling noise alone is about bins / rows


def test_mean_shift_of_one_and_a_half_std_is_shifted_and_only_there() -> None:
    X = sample(1)
    profile = reference_profile(X, NUMERIC, CATEGORICAL)

    table = psi_table(profile, X.with_columns(pl.col("income") + 15.0))

    assert status_of(table) == {"income": "shifted", "age": "stable", "city": "stable"}
    assert psi_of(table)["income"] > 1.0


def test_a_strongly_changed_category_mix_is_shifted() -> None:
    profile = reference_profile(sample(1), NUMERIC, CATEGORICAL)
    rng = np.random.default_rng(3)
    new = sample(2).with_columns(
        city=pl.Series(rng.choice(["paris", "lyon", "nice"], 5000, p=[0.2, 0.3, 0.5]))
    )

    table = psi_table(profile, new)

    assert status_of(table)["city"] == "shifted"
    assert status_of(table)["income"] == "stable"


def test_an_unseen_category_counts_as_drift() -> None:
    X = sample(1)
    profile = reference_profile(X, NUMERIC, CATEGORICAL)
    other = profile.filter(pl.col("feature") == "city", pl.col("category") == OTHER)
    assert other["fraction"].to_list() == [0.0]
    unseen = X.head(500).with_columns(city=pl.lit("marseille"))  # ~9% of the new rows

    table = psi_table(profile, pl.concat([X, unseen]))

    assert status_of(table)["city"] == "shifted"
    # the known cities kept their mix, so nearly all of it is the "other" bucket
    p_other = 500 / 5500
    assert psi_of(table)["city"] > (p_other - EPSILON) * math.log(p_other / EPSILON)


def test_fractions_sum_to_one_per_feature_and_bins_are_laid_out() -> None:
    X = sample(1).with_columns(
        income=pl.when(pl.col("age") > 80).then(None).otherwise(pl.col("income")),
        city=pl.when(pl.col("age") < 25).then(None).otherwise(pl.col("city")),
    )

    profile = reference_profile(X, NUMERIC, CATEGORICAL, bins=10)

    sums = profile.group_by("feature").agg(pl.col("fraction").sum())
    assert dict(sums.iter_rows()) == pytest.approx({"income": 1.0, "age": 1.0, "city": 1.0})
    income = profile.filter(pl.col("feature") == "income").sort("bin")
    assert income["bin"].to_list() == list(range(11))  # 10 quantile bins + the null bin
    assert income["lower"][0] is None and income["upper"][9] is None  # open ends
    assert income["category"][10] == NULL
    assert income["fraction"][10] == pytest.approx(X["income"].null_count() / X.height)
    city = profile.filter(pl.col("feature") == "city").sort("bin")
    assert city["category"].to_list() == ["paris", "lyon", "nice", OTHER, NULL]
    assert set(city["kind"]) == {"categorical"} and city["lower"].null_count() == 5


def test_constant_and_all_null_columns_profile_and_detect_change() -> None:
    X = pl.DataFrame(
        {
            "constant": [3.0] * 100,
            "empty": pl.Series([None] * 100, dtype=pl.Float64),
            "empty_text": pl.Series([None] * 100, dtype=pl.String),
        }
    )
    profile = reference_profile(X, ["constant", "empty"], ["empty_text"])
    sums = profile.group_by("feature").agg(pl.col("fraction").sum())
    assert dict(sums.iter_rows()) == pytest.approx({"constant": 1, "empty": 1, "empty_text": 1})
    assert set(status_of(psi_table(profile, X)).values()) == {"stable"}

    changed = pl.DataFrame(
        {"constant": [4.0] * 100, "empty": [1.0] * 100, "empty_text": ["a"] * 100}
    )

    assert set(status_of(psi_table(profile, changed)).values()) == {"shifted"}


def test_missing_features_raise_an_input_error_naming_them() -> None:
    profile = reference_profile(sample(1), NUMERIC, CATEGORICAL)

    with pytest.raises(InputError, match="income, city"):
        psi_table(profile, sample(2).drop("income", "city"))


def test_prediction_drift() -> None:
    rng = np.random.default_rng(5)
    predictions = rng.normal(100.0, 20.0, 5000)
    X = sample(1)
    profile = pl.concat(
        [reference_profile(X, NUMERIC, CATEGORICAL), prediction_profile(predictions)]
    )

    same = psi_table(profile, X, predictions)
    shifted = psi_table(profile, X, predictions + 30.0)
    skipped = psi_table(profile, X)

    assert status_of(same)[PREDICTION] == "stable"
    assert status_of(shifted) == {**status_of(same), PREDICTION: "shifted"}
    assert PREDICTION not in skipped["feature"].to_list()
    with pytest.raises(InputError, match="prediction"):
        psi_table(reference_profile(X, NUMERIC, CATEGORICAL), X, predictions)


def test_two_bin_psi_matches_the_formula_by_hand() -> None:
    # median of [0, 0, 0, 1] is 0: bins (-inf, 0] and (0, +inf), then the null bin
    profile = reference_profile(pl.DataFrame({"x": [0.0, 0.0, 0.0, 1.0]}), ["x"], [], bins=2)
    assert profile["upper"].to_list() == [0.0, None, None]
    assert profile["fraction"].to_list() == [0.75, 0.25, 0.0]

    psi = psi_of(psi_table(profile, pl.DataFrame({"x": [0.0, 1.0, 1.0, 1.0]})))["x"]

    expected = (0.25 - 0.75) * math.log(0.25 / 0.75) + (0.75 - 0.25) * math.log(0.75 / 0.25)
    assert psi == pytest.approx(expected, rel=1e-12)  # ln 3


def test_an_empty_reference_bin_uses_epsilon_and_nan_counts_as_null() -> None:
    profile = reference_profile(pl.DataFrame({"x": [0.0, 0.0, 0.0, 1.0]}), ["x"], [], bins=2)

    # -5 and 7 lie outside the reference range and land in the open end bins
    psi = psi_of(psi_table(profile, pl.DataFrame({"x": [-5.0, 0.0, 7.0, float("nan")]})))["x"]

    expected = (0.5 - 0.75) * math.log(0.5 / 0.75) + (0.25 - EPSILON) * math.log(0.25 / EPSILON)
    assert psi == pytest.approx(expected, rel=1e-12)


def test_status_thresholds() -> None:
    assert (PSI_WATCH, PSI_SHIFTED) == (0.1, 0.25)
    assert [status(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "shifted",
        "shifted",
    ]

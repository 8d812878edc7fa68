"""Fairness audit: a hand-computed binary example, a regression example, pass/warn flips."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mallard.core.errors import InputError
from mallard.tasks.fairness import NULL_GROUP, fairness_summary, fairness_table, status

# 12 rows, groups interleaved so a positional mix-up cannot pass.
#   group a (rows 0, 2, 4, 6, 8, 10): y_true 1 1 1 0 0 0, y_pred 1 1 0 1 0 0
#   group b (rows 1, 3, 5, 7, 9, 11): y_true 1 1 0 0 0 0, y_pred 1 0 0 0 0 0
GROUP = np.array(["a", "b"] * 6)
Y_TRUE = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
Y_PRED = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0])

# By hand:
#   a: selection 3/6 = 0.5;  tpr 2/3 (2 of 3 positives found); fpr 1/3 (1 of 3 negatives selected);
#      precision 2/3 (2 of 3 selected are positive)
#   b: selection 1/6;        tpr 1/2 (1 of 2 positives found);  fpr 0/4 = 0;
#      precision 1/1 = 1
#   demographic parity difference = 0.5 - 1/6 = 1/3;  ratio = (1/6) / 0.5 = 1/3
#   equalized odds difference = max(|2/3 - 1/2|, |1/3 - 0|) = max(1/6, 1/3) = 1/3
#   equalized odds ratio = min((1/2) / (2/3), 0 / (1/3)) = min(3/4, 0) = 0
EXPECTED_GROUPS = {
    ("a", "selection_rate"): 0.5,
    ("a", "tpr"): 2 / 3,
    ("a", "fpr"): 1 / 3,
    ("a", "precision"): 2 / 3,
    ("a", "count"): 6.0,
    ("b", "selection_rate"): 1 / 6,
    ("b", "tpr"): 1 / 2,
    ("b", "fpr"): 0.0,
    ("b", "precision"): 1.0,
    ("b", "count"): 6.0,
}
EXPECTED_SUMMARY = {
    "demographic_parity_difference": 1 / 3,
    "demographic_parity_ratio": 1 / 3,
    "equalized_odds_difference": 1 / 3,
    "equalized_odds_ratio": 0.0,
}

# Regression, by hand (error = pred - true):
#   a: true 10 20 30, pred 12 18 33 -> errors 2, -2, 3 -> mae 7/3, mean error 3/3 = 1
#   b: true 10 20,    pred 10 26    -> errors 0, 6     -> mae 6/2 = 3, mean error 3
#   mae difference = 3 - 7/3 = 2/3; mae ratio = (7/3) / 3 = 7/9
R_GROUP = pl.Series(["a", "a", "a", "b", "b"])
R_TRUE = pl.Series([10.0, 20.0, 30.0, 10.0, 20.0])
R_PRED = np.array([12.0, 18.0, 33.0, 10.0, 26.0])


def by_key(table: pl.DataFrame) -> dict[tuple[str, str], float]:
    return {(row["group"], row["metric"]): row["value"] for row in table.iter_rows(named=True)}


def summary_of(table: pl.DataFrame, column: str) -> dict[str, object]:
    return dict(zip(table["metric"], table[column], strict=True))


def test_binary_group_metrics_match_the_hand_computation() -> None:
    table = fairness_table(Y_TRUE, Y_PRED, {"sex": GROUP}, "classification")

    assert table.columns == ["attribute", "group", "metric", "value"]
    assert table["attribute"].unique().to_list() == ["sex"]
    assert by_key(table) == pytest.approx(EXPECTED_GROUPS, abs=1e-12)
    assert table.select("group", "metric").rows() == list(EXPECTED_GROUPS)  # the stored order


def test_binary_summary_matches_the_hand_computation() -> None:
    summary = fairness_summary(Y_TRUE, Y_PRED, {"sex": GROUP}, "classification", 0.2)

    assert summary.columns == ["attribute", "metric", "value", "max_disparity", "status"]
    assert summary_of(summary, "value") == pytest.approx(EXPECTED_SUMMARY, abs=1e-12)
    assert summary["max_disparity"].to_list() == [0.2] * 4
    assert summary["status"].to_list() == ["warn"] * 4


def test_text_labels_with_a_positive_label_give_the_same_audit() -> None:
    words = np.array(["deny", "approve"])
    table = fairness_table(
        words[Y_TRUE], words[Y_PRED], {"sex": GROUP}, "classification", pos_label="approve"
    )
    flipped = fairness_table(
        words[Y_TRUE], words[Y_PRED], {"sex": GROUP}, "classification", pos_label="deny"
    )

    assert by_key(table) == pytest.approx(EXPECTED_GROUPS, abs=1e-12)
    # "deny" as positive: group b selects 5 of 6.
    assert by_key(flipped)[("b", "selection_rate")] == pytest.approx(5 / 6)


def test_the_larger_label_is_positive_by_default() -> None:
    words = np.array(["no", "yes"])  # "yes" sorts last

    table = fairness_table(words[Y_TRUE], words[Y_PRED], {"sex": GROUP}, "classification")

    assert by_key(table) == pytest.approx(EXPECTED_GROUPS, abs=1e-12)


def test_regression_group_metrics_and_summary_match_the_hand_computation() -> None:
    table = fairness_table(R_TRUE, R_PRED, {"region": R_GROUP}, "regression")
    summary = fairness_summary(R_TRUE, R_PRED, {"region": R_GROUP}, "regression", 0.7)

    assert by_key(table) == pytest.approx(
        {
            ("a", "mae"): 7 / 3,
            ("a", "mean_error"): 1.0,
            ("a", "count"): 3.0,
            ("b", "mae"): 3.0,
            ("b", "mean_error"): 3.0,
            ("b", "count"): 2.0,
        },
        abs=1e-12,
    )
    assert summary_of(summary, "value") == pytest.approx(
        {"mae_difference": 2 / 3, "mae_ratio": 7 / 9}, abs=1e-12
    )
    assert summary_of(summary, "status") == {"mae_difference": "pass", "mae_ratio": "pass"}


@pytest.mark.parametrize(
    ("max_disparity", "expected"),
    [
        # differences 1/3; ratios 1/3 (demographic parity) and 0 (equalized odds)
        (0.30, ["warn", "warn", "warn", "warn"]),  # 1/3 > 0.30; 1/3 < 0.70
        (0.40, ["pass", "warn", "pass", "warn"]),  # 1/3 <= 0.40; 1/3 < 0.60
        (0.70, ["pass", "pass", "pass", "warn"]),  # 1/3 >= 0.30, but 0 < 0.30
    ],
)
def test_classification_status_flips_around_max_disparity(
    max_disparity: float, expected: list[str]
) -> None:
    summary = fairness_summary(Y_TRUE, Y_PRED, {"sex": GROUP}, "classification", max_disparity)

    assert summary["metric"].to_list() == list(EXPECTED_SUMMARY)
    assert summary["status"].to_list() == expected


@pytest.mark.parametrize(
    ("max_disparity", "expected"),
    [
        (0.60, {"mae_difference": "warn", "mae_ratio": "pass"}),  # 2/3 > 0.6; 7/9 >= 0.4
        (0.70, {"mae_difference": "pass", "mae_ratio": "pass"}),  # 2/3 <= 0.7; 7/9 >= 0.3
        (0.20, {"mae_difference": "warn", "mae_ratio": "warn"}),  # 7/9 < 0.8
    ],
)
def test_regression_status_flips_around_max_disparity(
    max_disparity: float, expected: dict[str, str]
) -> None:
    summary = fairness_summary(R_TRUE, R_PRED, {"region": R_GROUP}, "regression", max_disparity)

    assert summary_of(summary, "status") == expected


def test_status_rule_at_the_boundary() -> None:
    assert status("x_difference", 0.2, 0.2) == "pass"
    assert status("x_difference", 0.2001, 0.2) == "warn"
    assert status("x_ratio", 0.8, 0.2) == "pass"
    assert status("x_ratio", 0.7999, 0.2) == "warn"
    assert status("x_ratio", None, 0.2) == "warn"


def test_undefined_values_are_null_and_warn() -> None:
    never_selects = np.zeros(12, dtype=np.int64)  # every selection rate is 0: ratio 0 / 0

    summary = fairness_summary(Y_TRUE, never_selects, {"sex": GROUP}, "classification", 0.2)
    table = fairness_table(Y_TRUE, never_selects, {"sex": GROUP}, "classification")

    assert summary_of(summary, "value")["demographic_parity_ratio"] is None
    assert summary_of(summary, "status")["demographic_parity_ratio"] == "warn"
    assert summary_of(summary, "status")["demographic_parity_difference"] == "pass"
    assert by_key(table)[("a", "precision")] is None  # nobody selected: precision undefined


def test_each_attribute_is_audited_separately_and_nulls_form_a_group() -> None:
    age_band = pl.Series(["young", None] * 6)

    table = fairness_table(Y_TRUE, Y_PRED, {"sex": GROUP, "age_band": age_band}, "classification")
    summary = fairness_summary(
        Y_TRUE, Y_PRED, {"sex": GROUP, "age_band": age_band}, "classification", 0.2
    )

    assert table["attribute"].unique(maintain_order=True).to_list() == ["sex", "age_band"]
    age = table.filter(pl.col("attribute") == "age_band")
    # age_band splits rows exactly as sex does, so the numbers carry over group for group.
    assert set(age["group"]) == {"young", NULL_GROUP}
    assert by_key(age)[(NULL_GROUP, "tpr")] == pytest.approx(1 / 2)
    assert summary.height == 8


def test_more_than_two_classes_is_refused() -> None:
    with pytest.raises(InputError, match="binary"):
        fairness_table(np.array([0, 1, 2]), np.array([0, 1, 2]), {"g": GROUP[:3]}, "classification")


def test_a_sensitive_column_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(InputError, match="'sex' has 6 values for 12 rows"):
        fairness_table(Y_TRUE, Y_PRED, {"sex": GROUP[:6]}, "classification")

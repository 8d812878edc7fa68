"""Fairness audit: per-group metrics and disparity summaries with fairlearn's MetricFrame.

Each sensitive attribute is audited on its own (groups of one column, not intersections), so a
table row always names one attribute and one of its values. Missing attribute values form a group
of their own, "__null__", rather than vanishing from the audit.

Binary classification only: labels are first turned into 0/1 against the positive label, so every
fairlearn and scikit-learn function below sees the same definition of "positive".

Status rule (`fairness_summary`): a metric named *_difference warns when it is above
max_disparity; a metric named *_ratio warns when it is below 1 - max_disparity. A value fairlearn
cannot compute (NaN, e.g. a ratio of two zero rates) is stored as null and warns, so a human looks.

fairlearn and scikit-learn are imported when an audit runs, not with the module: together they
cost ~1 s of every command's start-up (the flows import this module), and only train audits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import Any, Literal

import numpy as np
import polars as pl

from mallard.core.errors import InputError

AuditTask = Literal["classification", "regression"]
Values = np.ndarray | pl.Series
NULL_GROUP = "__null__"

TABLE_SCHEMA = {
    "attribute": pl.String,
    "group": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}
SUMMARY_SCHEMA = {
    "attribute": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "max_disparity": pl.Float64,
    "status": pl.String,
}


def _mean_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Signed bias: positive when the model over-predicts the group."""
    return float(np.mean(y_pred - y_true))


def _mae_difference(y_true: np.ndarray, y_pred: np.ndarray, *, sensitive_features: Any) -> float:
    """Largest group MAE minus the smallest, in the target's units."""
    return float(_mae_frame(y_true, y_pred, sensitive_features).difference())


def _mae_ratio(y_true: np.ndarray, y_pred: np.ndarray, *, sensitive_features: Any) -> float:
    """Smallest group MAE over the largest: 1 when every group is served equally well."""
    return float(_mae_frame(y_true, y_pred, sensitive_features).ratio())


def _mae_frame(y_true: np.ndarray, y_pred: np.ndarray, sensitive_features: Any) -> Any:
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import mean_absolute_error

    return MetricFrame(
        metrics=mean_absolute_error,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive_features,
    )


# Per task, metric name -> function; built on first use (module __getattr__ below), as they are
# fairlearn's and scikit-learn's functions.
GROUP_METRICS: dict[str, dict[str, Callable[..., Any]]]
SUMMARY_METRICS: dict[str, dict[str, Callable[..., Any]]]


@cache
def _group_metrics() -> dict[str, dict[str, Callable[..., Any]]]:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import mean_absolute_error, precision_score

    # Precision of a group the model never selects is undefined: NaN (stored null), not 0.
    # fairlearn's tpr / fpr of a group without actual positives / negatives report 0 (its own
    # convention).
    return {
        "classification": {
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "precision": partial(precision_score, zero_division=np.nan),
            "count": count,
        },
        "regression": {"mae": mean_absolute_error, "mean_error": _mean_error, "count": count},
    }


@cache
def _summary_metrics() -> dict[str, dict[str, Callable[..., Any]]]:
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
    )

    return {
        "classification": {
            "demographic_parity_difference": demographic_parity_difference,
            "demographic_parity_ratio": demographic_parity_ratio,
            "equalized_odds_difference": equalized_odds_difference,
            "equalized_odds_ratio": equalized_odds_ratio,
        },
        "regression": {"mae_difference": _mae_difference, "mae_ratio": _mae_ratio},
    }


def __getattr__(name: str) -> Any:
    if name == "GROUP_METRICS":
        return _group_metrics()
    if name == "SUMMARY_METRICS":
        return _summary_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fairness_table(
    y_true: Values,
    y_pred: Values,
    sensitive: Mapping[str, Values],
    task: AuditTask,
    pos_label: object = None,
) -> pl.DataFrame:
    """One row per attribute, group and metric: attribute, group, metric, value."""
    from fairlearn.metrics import MetricFrame

    truth, predicted = _outcomes(y_true, y_pred, task, pos_label)
    metrics = _group_metrics()[task]
    frames = [pl.DataFrame(schema=TABLE_SCHEMA)]
    for attribute, values in sensitive.items():
        audit = MetricFrame(
            metrics=metrics,
            y_true=truth,
            y_pred=predicted,
            sensitive_features=_groups(attribute, values, truth.size),
        )
        by_group = pl.from_pandas(audit.by_group.reset_index())
        frames.append(
            by_group.rename({by_group.columns[0]: "group"})
            .unpivot(index="group", variable_name="metric")
            .select(
                pl.lit(attribute).alias("attribute"),
                "group",
                "metric",
                pl.col("value").cast(pl.Float64).fill_nan(None),
            )
            # Groups sorted, metrics in their declared order, whatever order unpivot returns.
            .sort("group", pl.col("metric").replace_strict(list(metrics), range(len(metrics))))
        )
    return pl.concat(frames)


def fairness_summary(
    y_true: Values,
    y_pred: Values,
    sensitive: Mapping[str, Values],
    task: AuditTask,
    max_disparity: float,
    pos_label: object = None,
) -> pl.DataFrame:
    """Disparity per attribute: attribute, metric, value, max_disparity, status (pass | warn)."""
    truth, predicted = _outcomes(y_true, y_pred, task, pos_label)
    rows = []
    for attribute, values in sensitive.items():
        groups = _groups(attribute, values, truth.size)
        for metric, disparity in _summary_metrics()[task].items():
            value = float(disparity(truth, predicted, sensitive_features=groups))
            known = None if np.isnan(value) else value
            rows.append(
                (attribute, metric, known, max_disparity, status(metric, known, max_disparity))
            )
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA, orient="row")


def status(metric: str, value: float | None, max_disparity: float) -> str:
    """ "warn" if a difference exceeds max_disparity or a ratio falls below 1 - max_disparity."""
    if value is None:
        return "warn"
    if metric.endswith("_ratio"):
        return "warn" if value < 1.0 - max_disparity else "pass"
    return "warn" if value > max_disparity else "pass"


def _outcomes(
    y_true: Values, y_pred: Values, task: AuditTask, pos_label: object
) -> tuple[np.ndarray, np.ndarray]:
    truth, predicted = _array(y_true), _array(y_pred)
    if truth.shape != predicted.shape or truth.ndim != 1 or truth.size == 0:
        raise InputError(
            f"fairness: y_true and y_pred must be non-empty and of equal length, "
            f"got {truth.shape} and {predicted.shape}"
        )
    if task == "regression":
        return truth.astype(np.float64), predicted.astype(np.float64)
    labels = np.unique(np.concatenate([truth, predicted]))
    if labels.size > 2:
        raise InputError(
            f"fairness: the audit covers binary classification only, found {labels.size} classes"
        )
    # By default the larger label is positive: the class scikit-learn puts in predict_proba[:, 1].
    positive = labels[-1] if pos_label is None else pos_label
    return (truth == positive).astype(np.int64), (predicted == positive).astype(np.int64)


def _groups(attribute: str, values: Values, n_rows: int) -> np.ndarray:
    groups = pl.Series(attribute, values, strict=False).cast(pl.String).fill_null(NULL_GROUP)
    if groups.len() != n_rows:
        raise InputError(
            f"fairness: sensitive column '{attribute}' has {groups.len()} values for {n_rows} rows"
        )
    return groups.to_numpy()


def _array(values: Values) -> np.ndarray:
    return values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)

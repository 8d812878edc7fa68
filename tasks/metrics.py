"""Regression metrics: one table of names, scikit-learn scorers, directions and functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    r2_score,
    root_mean_squared_error,
)


@dataclass(frozen=True)
class Metric:
    scorer: str  # scikit-learn scoring name; "neg_*" scorers are negated back when stored
    greater_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]


REGRESSION: dict[str, Metric] = {
    "rmse": Metric("neg_root_mean_squared_error", False, root_mean_squared_error),
    "mae": Metric("neg_mean_absolute_error", False, mean_absolute_error),
    "r2": Metric("r2", True, r2_score),
    "mape": Metric("neg_mean_absolute_percentage_error", False, mean_absolute_percentage_error),
}


def scorers() -> dict[str, str]:
    return {name: metric.scorer for name, metric in REGRESSION.items()}


def from_score(name: str, score: float) -> float:
    """A CV score in the metric's own sign (RMSE positive, not negated)."""
    return -score if REGRESSION[name].scorer.startswith("neg_") else score


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {name: float(metric.compute(y_true, y_pred)) for name, metric in REGRESSION.items()}

"""The catalogue every layer may read: metric names and directions per task, family names.

Plain data with no scikit-learn import, so the spec can check names before anything heavy loads;
`mallard.tasks.metrics` builds the scorers and `mallard.tasks.families` the estimators for them.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("regression", "classification", "clustering")


@dataclass(frozen=True)
class Metric:
    greater_is_better: bool
    needs_proba: bool = False  # only predict_proba will do (decision_function is not enough)
    needs_scores: bool = False  # a continuous score: predict_proba or decision_function


REGRESSION = {
    "rmse": Metric(False),
    "mae": Metric(False),
    "r2": Metric(True),
    "mape": Metric(False),
}
CLASSIFICATION = {
    "accuracy": Metric(True),
    "balanced_accuracy": Metric(True),
    "precision": Metric(True),  # binary: of the positive class; multiclass: macro average
    "recall": Metric(True),
    "f1": Metric(True),
    "f1_macro": Metric(True),
    "roc_auc": Metric(True, needs_scores=True),  # multiclass: one-vs-rest on probabilities
    "pr_auc": Metric(True, needs_scores=True),  # average precision of the positive class; binary
    "log_loss": Metric(False, needs_proba=True),
}
CLUSTERING = {
    "silhouette": Metric(True),
    "davies_bouldin": Metric(False),
    "calinski_harabasz": Metric(True),
}
METRICS: dict[str, dict[str, Metric]] = {
    "regression": REGRESSION,
    "classification": CLASSIFICATION,
    "clustering": CLUSTERING,
}
DEFAULT_PRIMARY = {"regression": "rmse", "classification": "f1_macro", "clustering": "silhouette"}


def greater_is_better(metric: str) -> bool:
    for metrics in METRICS.values():
        if metric in metrics:
            return metrics[metric].greater_is_better
    raise KeyError(metric)


BASELINE = "dummy"  # the baseline every supervised run trains, so a useless model is visible
ENSEMBLES = ("stacking", "voting")  # combine the run's best tuned candidates

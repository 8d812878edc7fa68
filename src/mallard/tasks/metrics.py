"""Metrics per task: names, directions, and scikit-learn scorers built for a given target.

The same scorer object computes a metric in cross-validation and on the holdout splits, so the
two can never disagree on a definition. Scorers return "greater is better" numbers (negated
errors); `from_score` turns them back into the metric's own sign before anything is stored.

scikit-learn is imported inside the functions that build or compute metrics, not at module
level: every command imports this module (for `Target`), and scikit-learn with scipy costs ~1 s
of start-up. `Replay`, a scikit-learn estimator, lives in tasks/replay.py for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mallard.core.catalogue import (
    CLASSIFICATION,
    CLUSTERING,
    greater_is_better,
)

if TYPE_CHECKING:
    from mallard.tasks.replay import Replay as Replay

Scorer = Callable[..., float]


def __getattr__(name: str) -> Any:
    """`Replay` (tasks/replay.py) under its old address, imported only when asked for."""
    if name == "Replay":
        from mallard.tasks.replay import Replay

        return Replay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_REGRESSION_SCORERS = {
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
    "mape": "neg_mean_absolute_percentage_error",
}
SILHOUETTE_SAMPLE = 5_000  # silhouette is O(n²): estimate it on a seeded sample beyond this


@dataclass(frozen=True)
class Target:
    """What a scorer must know about the target: the task, the classes, the positive class."""

    task: str
    classes: tuple[Any, ...] = ()
    pos_label: Any = None  # binary classification only

    @property
    def binary(self) -> bool:
        return self.task == "classification" and len(self.classes) == 2


def scorers(target: Target, estimator: Any) -> dict[str, Scorer]:
    """Every metric of the task that `estimator` can be scored on, as sklearn scorers."""
    from sklearn.metrics import get_scorer

    if target.task == "regression":
        return {name: get_scorer(scorer) for name, scorer in _REGRESSION_SCORERS.items()}
    if target.task != "classification":
        raise ValueError(f"no CV scorers for task {target.task}")
    has_proba = hasattr(estimator, "predict_proba")
    has_scores = has_proba or hasattr(estimator, "decision_function")

    def usable(name: str) -> bool:
        metric = CLASSIFICATION[name]
        # one-vs-rest ROC AUC of several classes reads probabilities, not decision scores
        if metric.needs_proba or (metric.needs_scores and not target.binary):
            return has_proba
        return has_scores or not metric.needs_scores

    return {
        name: scorer for name, scorer in _classification_scorers(target).items() if usable(name)
    }


def _classification_scorers(target: Target) -> dict[str, Scorer]:
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        get_scorer,
        make_scorer,
        precision_score,
        recall_score,
    )

    either = ("decision_function", "predict_proba")
    # Averaged scores have no positive class; pos_label=None stops sklearn checking its default
    # (1) against the labels, which fails for a binary target such as "yes"/"no".
    common = {
        "accuracy": get_scorer("accuracy"),
        "balanced_accuracy": get_scorer("balanced_accuracy"),
        "f1_macro": make_scorer(f1_score, average="macro", zero_division=0, pos_label=None),
        "log_loss": get_scorer("neg_log_loss"),
    }
    if not target.binary:
        return {
            **common,
            "precision": make_scorer(
                precision_score, average="macro", zero_division=0, pos_label=None
            ),
            "recall": make_scorer(recall_score, average="macro", zero_division=0, pos_label=None),
            "f1": make_scorer(f1_score, average="macro", zero_division=0, pos_label=None),
            "roc_auc": get_scorer("roc_auc_ovr"),
        }
    pos = target.pos_label
    return {
        **common,
        "precision": make_scorer(precision_score, pos_label=pos, zero_division=0),
        "recall": make_scorer(recall_score, pos_label=pos, zero_division=0),
        "f1": make_scorer(f1_score, pos_label=pos, zero_division=0),
        # The scorer hands over the positive class's score column when given pos_label.
        "roc_auc": make_scorer(_roc_auc, response_method=either, pos_label=pos),
        "pr_auc": make_scorer(average_precision_score, response_method=either, pos_label=pos),
    }


def _roc_auc(y_true: np.ndarray, y_score: np.ndarray, pos_label: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y_true) == pos_label, y_score))


BlockMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def resampled_metric(
    name: str, target: Target | None = None, labels: np.ndarray | None = None
) -> BlockMetric | None:
    """`name` for many resamples at once, in the metric's own sign: (y_true, y_pred) as
    (resamples, rows) arrays -> one value per resample; None where only the scorer defines it.
    Label metrics take class codes: positions in `labels`, the sorted classes of the truth
    and the predictions. Same definitions as scikit-learn's (tests compare them resample by
    resample), including its zero_division=0 and macro averages over the classes present."""
    if name in _BLOCK_METRICS:
        return _BLOCK_METRICS[name]
    if name not in _LABEL_METRICS or target is None or labels is None:
        return None
    positive = None
    if target.binary and name != "f1_macro" and name != "balanced_accuracy":
        found = np.flatnonzero(labels == target.pos_label)
        if found.size == 0:
            return None
        positive = int(found[0])
    kind, n_labels = _LABEL_METRICS[name], len(labels)
    return lambda t, p: _label_metric(kind, t, p, n_labels, positive)


def _label_metric(
    kind: str, t: np.ndarray, p: np.ndarray, n_labels: int, positive: int | None
) -> np.ndarray:
    hits = np.stack([((t == c) & (p == c)).sum(axis=1) for c in range(n_labels)], axis=1)
    true = np.stack([(t == c).sum(axis=1) for c in range(n_labels)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "balanced_accuracy":  # mean recall over the classes in the truth
            return np.asarray(np.nanmean(hits / np.where(true > 0, true, np.nan), axis=1))
        predicted = np.stack([(p == c).sum(axis=1) for c in range(n_labels)], axis=1)
        over = {"precision": predicted, "recall": true, "f1": (true + predicted) / 2}[kind]
        score = np.where(over > 0, hits / over, 0.0)
    if positive is not None:
        return np.asarray(score[:, positive], dtype=float)
    present = (true + predicted) > 0
    return np.asarray((score * present).sum(axis=1) / present.sum(axis=1), dtype=float)


def _r2(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    residual = ((t - p) ** 2).sum(axis=1)
    total = ((t - t.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1 - residual / total
    # scikit-learn's force_finite: a constant target scores 1 if predicted exactly, else 0
    return np.where(total == 0, np.where(residual == 0, 1.0, 0.0), r2)


_BLOCK_METRICS: dict[str, BlockMetric] = {
    "rmse": lambda t, p: np.sqrt(((t - p) ** 2).mean(axis=1)),
    "mae": lambda t, p: np.abs(t - p).mean(axis=1),
    "mape": lambda t, p: (np.abs(t - p) / np.maximum(np.abs(t), np.finfo(np.float64).eps)).mean(
        axis=1
    ),
    "r2": _r2,
    "accuracy": lambda t, p: (t == p).mean(axis=1),
}
_LABEL_METRICS = {  # metric -> the per-class score averaged (macro) or read at the positive class
    "balanced_accuracy": "balanced_accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "f1",
    "f1_macro": "f1",
}


def from_score(metric: str, score: float) -> float:
    """A scorer's greater-is-better number back in the metric's own sign (RMSE positive)."""
    return score if greater_is_better(metric) else -score


def score_all(
    scoring: dict[str, Scorer], estimator: Any, X: Any, y: np.ndarray
) -> dict[str, float]:
    return {name: from_score(name, float(s(estimator, X, y))) for name, s in scoring.items()}


def clustering_metrics(transformed: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Internal validity of a clustering; NaN when it found fewer than two clusters."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    if len(np.unique(labels)) < 2:
        return dict.fromkeys(CLUSTERING, float("nan"))
    sample = min(len(labels), SILHOUETTE_SAMPLE)
    return {
        "silhouette": float(
            silhouette_score(transformed, labels, sample_size=sample, random_state=seed)
        ),
        "davies_bouldin": float(davies_bouldin_score(transformed, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(transformed, labels)),
    }

"""One run's report data as a typed object, and the choices the report makes from it.

The choices (which model the plots show, which class is positive) live here, apart from the
drawing and the HTML, so they are stated once and testable without rendering anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mallard.warehouse.report_queries import report_data


@dataclass(frozen=True)
class ReportData:
    run: dict[str, Any]  # the ml.runs row; versions parsed into a dict
    quarantine: pl.DataFrame  # column_name, check_name, n_rows, example_value
    leaderboard: pl.DataFrame  # rank, model_id, candidate, family, metric, value, ...
    cv_results: pl.DataFrame  # candidate, family, params, fold, metric, value
    metrics: pl.DataFrame  # model_id, family, split, metric, value
    predictions: pl.DataFrame  # test split: model_id, row_index, prediction, label, ...
    confusion: pl.DataFrame  # model_id, split, actual, predicted, n
    cluster_sizes: pl.DataFrame  # model_id, cluster, n_rows (from ml.cluster_assignments)
    cluster_profiles: pl.DataFrame  # model_id, cluster, n_rows, feature, mean
    feature_importance: pl.DataFrame  # model_id, feature, importance_mean, importance_std, rank
    fairness: pl.DataFrame  # model_id, attribute, group, metric, value
    fairness_summary: pl.DataFrame  # model_id, attribute, metric, value, max_disparity, status
    models: pl.DataFrame  # ml.models without the blob

    @classmethod
    def load(cls, db: Path, run_id: str) -> ReportData:
        raw = report_data(db, run_id)
        run = raw.pop("run")
        if not isinstance(run, dict):
            raise TypeError("report_data returned no run row")
        frames = {name: value for name, value in raw.items() if isinstance(value, pl.DataFrame)}
        return cls(run=run, **frames)

    @property
    def task(self) -> str:
        return str(self.run.get("task") or "")

    @property
    def primary_metric(self) -> str | None:
        metric = self.run.get("primary_metric")
        return str(metric) if metric else None

    @property
    def greater_is_better(self) -> bool:
        # Unknown direction (older runs): lower is better, the rule for every regression error.
        return bool(self.run.get("greater_is_better"))

    def best_model_id(self) -> str | None:
        """Leaderboard rank 1 (validation split, primary metric); ties go to the first model id."""
        if self.leaderboard.height:
            return str(self.leaderboard.sort("rank", "model_id", nulls_last=True)["model_id"][0])
        if self.models.height:
            return str(self.models["model_id"][0])
        return None

    def model_rows(self, frame: pl.DataFrame) -> tuple[str | None, pl.DataFrame]:
        """The best model's rows of `frame`; if it has none, the first model that has rows.

        Some tables (importance, profiles) may be filled for only some models; the report then
        shows what exists, and names the model so a reader never confuses it with the best one.
        """
        if not frame.height:
            return None, frame
        best = self.best_model_id()
        if best is not None and best in frame["model_id"]:
            return best, frame.filter(pl.col("model_id") == best)
        first = str(frame["model_id"].sort()[0])
        return first, frame.filter(pl.col("model_id") == first)

    @property
    def ranked_on(self) -> str:
        """What the leaderboard ranks on, as the champion candidate is chosen: the selection CV
        over train + validation rows (validation for runs from before it); clustering has no
        holdout, so all rows."""
        if self.task == "clustering":
            return "all rows"
        if self.leaderboard.height and self.leaderboard["selection_value"].is_not_null().any():
            return "cross-validation over the train + validation rows (mean ± std over folds)"
        return "the validation split"

    @property
    def reported_on(self) -> str:
        """The split whose numbers the leaderboard's value column and the plots show."""
        return "all rows" if self.task == "clustering" else "the test split"

    def decision_threshold(self, model_id: str) -> float | None:
        value = self._model_value(model_id, "decision_threshold")
        return None if value is None else float(value)

    def positive_class(self, model_id: str) -> str | None:
        value = self._model_value(model_id, "positive_class")
        return None if value is None else str(value)

    def _model_value(self, model_id: str, column: str) -> Any:
        # Columns added by later migrations may be absent from models written before them.
        if column not in self.models.columns:
            return None
        values = self.models.filter(pl.col("model_id") == model_id)[column]
        return values[0] if values.len() else None


@dataclass(frozen=True)
class Binary:
    """A binary classifier's test split as arrays for scikit-learn curves."""

    positive: str
    negative: str
    y_true: np.ndarray  # 1 where actual_label is the positive class
    score: np.ndarray  # P(positive class)


def binary_outcomes(predictions: pl.DataFrame, positive: str | None = None) -> Binary | str:
    """The arrays for ROC / PR / threshold curves, or why they cannot be drawn.

    `positive` is the model's stored positive class (ml.models.positive_class); without it the
    class is inferred from the predictions."""
    rows = predictions.filter(
        pl.col("actual_label").is_not_null() & pl.col("probability").is_not_null()
    )
    if not rows.height:
        return "no test-split rows with both a probability and the true class"
    classes = sorted({str(v) for v in rows["actual_label"]} | _predicted_labels(rows))
    if len(classes) != 2:
        return f"curves need exactly two classes; the test split has {len(classes)}"
    if positive is None or positive not in classes:
        positive = _positive_class(rows, classes)
    negative = classes[0] if positive == classes[1] else classes[1]
    y_true = (rows["actual_label"] == positive).to_numpy().astype(int)
    if y_true.min() == y_true.max():
        return f"the test split holds only class '{rows['actual_label'][0]}'"
    return Binary(positive, negative, y_true, rows["probability"].to_numpy().astype(float))


def _predicted_labels(rows: pl.DataFrame) -> set[str]:
    return {str(v) for v in rows["label"].drop_nulls()}


def _positive_class(rows: pl.DataFrame, classes: list[str]) -> str:
    # For models stored without their positive class: it is the predicted label that comes with
    # the higher probabilities. Without predicted labels, fall back to scikit-learn's convention
    # of the later of the two sorted classes.
    means = (
        rows.filter(pl.col("label").is_not_null())
        .group_by("label")
        .agg(pl.col("probability").mean())
        .sort("probability", "label", descending=True)
    )
    return str(means["label"][0]) if means.height else classes[1]


def confusion_counts(data: ReportData, model_id: str) -> tuple[str, pl.DataFrame]:
    """The split and its actual, predicted, n: ml.confusion (the test split if stored), else
    counted from the test-split predictions."""
    stored = data.confusion.filter(pl.col("model_id") == model_id)
    if stored.height:
        split = "test" if "test" in stored["split"] else str(stored["split"].sort()[0])
        return split, stored.filter(pl.col("split") == split).select("actual", "predicted", "n")
    rows = data.predictions.filter(
        (pl.col("model_id") == model_id)
        & pl.col("actual_label").is_not_null()
        & pl.col("label").is_not_null()
    )
    counts = rows.group_by(actual="actual_label", predicted="label").agg(n=pl.len())
    return "test", counts.sort("actual", "predicted")

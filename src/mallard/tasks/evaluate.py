"""Score each tuned candidate on the validation and test splits, in long form, and keep what the
report needs: test-split predictions and, for classes, confusion counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mallard.core.catalogue import BASELINE, greater_is_better
from mallard.tasks.features import Features
from mallard.tasks.metrics import Target, score_all, scorers
from mallard.tasks.split import Split
from mallard.tasks.tune import Tuned

METRIC_COLUMNS = {
    "model_id": pl.String,
    "family": pl.String,
    "split": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}
PREDICTION_COLUMNS = {
    "model_id": pl.String,
    "split": pl.String,
    "row_index": pl.Int64,
    "prediction": pl.Float64,
    "label": pl.String,
    "probability": pl.Float64,
    "actual": pl.Float64,
    "actual_label": pl.String,
}


@dataclass(frozen=True)
class Evaluation:
    metrics: pl.DataFrame  # model_id, family, split (cv/validation/test/all), metric, value
    predictions: pl.DataFrame  # test-split predictions of every model (PREDICTION_COLUMNS)
    confusion: pl.DataFrame  # classification: model_id, split, actual, predicted, n


def model_id(run_id: str, candidate: str) -> str:
    return f"{run_id}:{candidate}"


def evaluation_table(
    run_id: str,
    tuned: list[Tuned],
    features: Features,
    split: Split | None,
    target: Target,
    row_index: pl.Series,
) -> Evaluation:
    """cv (mean over folds of the best params), validation and test metrics of every candidate;
    clustering has no holdout, its metrics are on all rows (split 'all')."""
    rows: list[tuple[Any, ...]] = []
    predictions, confusion = [], []
    for result in tuned:
        mid = model_id(run_id, result.name)
        if split is None:
            rows += [(mid, result.family, "all", m, v) for m, v in result.cv_means.items()]
            continue
        rows += [(mid, result.family, "cv", m, v) for m, v in result.cv_means.items()]
        scoring = scorers(target, result.model)
        assert features.y is not None
        for split_name, positions in (("validation", split.validation), ("test", split.test)):
            X, y = features.X[positions], features.y[positions]
            scores = score_all(scoring, result.model, X, y)
            rows += [(mid, result.family, split_name, m, v) for m, v in scores.items()]
            if target.task == "classification":
                confusion.append(_confusion(mid, split_name, y, result.model.predict(X)))
        predictions.append(_predictions(mid, result.model, features, split.test, target, row_index))
    return Evaluation(
        metrics=pl.DataFrame(rows, schema=METRIC_COLUMNS, orient="row"),
        predictions=pl.concat(predictions)
        if predictions
        else pl.DataFrame(schema=PREDICTION_COLUMNS),
        confusion=pl.concat(confusion) if confusion else pl.DataFrame(),
    )


def _predictions(
    mid: str, model: Any, features: Features, rows: np.ndarray, target: Target, index: pl.Series
) -> pl.DataFrame:
    X = features.X[rows]
    assert features.y is not None
    y = features.y[rows]
    predicted = np.asarray(model.predict(X))
    frame: dict[str, Any] = {
        "model_id": mid,
        "split": "test",
        "row_index": index.gather(rows),
        "prediction": None,
        "label": None,
        "probability": None,
        "actual": None,
        "actual_label": None,
    }
    if target.task == "regression":
        frame |= {"prediction": predicted.astype(float), "actual": y.astype(float)}
    else:
        frame |= {
            "label": predicted.astype(str),
            "actual_label": y.astype(str),
            "probability": positive_probability(model, X, target),
        }
    return pl.DataFrame(frame, schema=PREDICTION_COLUMNS)


def positive_probability(model: Any, X: Any, target: Target) -> np.ndarray | None:
    """P(positive class) for binary targets; P(predicted class) for multiclass; None when the
    model has no probabilities (e.g. an SVM without calibration)."""
    if not hasattr(model, "predict_proba"):
        return None
    proba = np.asarray(model.predict_proba(X))
    classes = list(model.classes_)
    if target.binary:
        return proba[:, classes.index(target.pos_label)]
    return proba.max(axis=1)


def _confusion(
    mid: str, split_name: str, actual: np.ndarray, predicted: np.ndarray
) -> pl.DataFrame:
    return (
        pl.DataFrame({"actual": actual.astype(str), "predicted": np.asarray(predicted).astype(str)})
        .group_by("actual", "predicted")
        .len("n")
        .with_columns(pl.lit(mid).alias("model_id"), pl.lit(split_name).alias("split"))
        .select("model_id", "split", "actual", "predicted", pl.col("n").cast(pl.Int64))
        .sort("actual", "predicted")
    )


def best_model_id(metrics: pl.DataFrame, primary: str, split: str) -> str:
    """The champion candidate: chosen on validation, so the test split stays a fair judge."""
    scores = metrics.filter((pl.col("split") == split) & (pl.col("metric") == primary)).sort(
        "value", descending=greater_is_better(primary), nulls_last=True
    )
    real = scores.filter(pl.col("family") != BASELINE)
    return str((real if real.height else scores)["model_id"][0])

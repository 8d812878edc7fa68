"""Batch scoring with a registered model: what it needs to know about the target, one prediction
pass over the new rows, and what that pass becomes: ml.predictions rows, the scored file a user
opens, and the numbers drift watches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mallard.core.errors import InputError
from mallard.tasks.metrics import Target


def model_target(row: dict[str, Any], model: Any) -> Target:
    """What scoring needs to know about the target, from the model's row and the model."""
    task = str(row["task"] or "regression")
    if task != "classification":
        return Target(task)
    classes = tuple(model.classes_.tolist())
    positive = row["positive_class"]
    pos_label = next((c for c in classes if str(c) == positive), None)
    return Target(task, classes, pos_label)


@dataclass(frozen=True)
class Scored:
    """One pass of the model over new rows. `predicted` is what `model.predict` says: the value
    (regression), the label at the model's own decision threshold (a threshold-tuned binary
    model applies its tuned threshold, not 0.5), or the cluster."""

    target: Target
    predicted: np.ndarray
    proba: np.ndarray | None  # classification: predict_proba, columns in target.classes order

    @property
    def probability(self) -> np.ndarray | None:
        """ml.predictions.probability: binary P(positive class); multiclass P(predicted label)."""
        if self.proba is None:
            return None
        classes = list(self.target.classes)
        if self.target.binary:
            return self.proba[:, classes.index(self.target.pos_label)]
        where = {c: i for i, c in enumerate(classes)}
        columns = np.array([where[label] for label in self.predicted.tolist()], dtype=int)
        return self.proba[np.arange(len(columns)), columns]

    @property
    def drift_values(self) -> np.ndarray | None:
        """The numbers whose distribution drift watches, as at training time (register's
        prediction_values): regression predictions, a binary classifier's P(positive)."""
        if self.target.task == "regression":
            return self.predicted.astype(float)
        if self.target.binary and self.proba is not None:
            return self.probability
        return None


def score_rows(model: Any, X: pl.DataFrame, target: Target) -> Scored:
    """Predict once (and, for a classifier with probabilities, predict_proba once)."""
    predicted = np.asarray(model.predict(X))
    proba = None
    if target.task == "classification" and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X), dtype=float)
        if tuple(model.classes_.tolist()) != target.classes:  # model_target read them from it
            raise ValueError("predict_proba columns do not follow the target's classes")
    return Scored(target, predicted, proba)


# The ml.predictions columns prediction_rows makes, with the types the table stores: the types
# every batch of a file scored in batches is cast to, so the batches append to one Parquet file.
PREDICTION_SCHEMA = {
    "model_id": pl.String,
    "row_index": pl.Int64,
    "prediction": pl.Float64,
    "label": pl.String,
    "probability": pl.Float64,
}


def prediction_rows(model_id: str, scored: Scored, row_index: pl.Series) -> pl.DataFrame:
    """ml.predictions rows: the value for regression; label and probability for classes;
    the cluster for segments."""
    rows = pl.DataFrame({"model_id": model_id, "row_index": row_index}).with_columns(
        prediction=pl.lit(None, pl.Float64),
        label=pl.lit(None, pl.String),
        probability=pl.lit(None, pl.Float64),
    )
    task, predicted = scored.target.task, scored.predicted
    if task == "regression":
        return rows.with_columns(prediction=pl.Series(predicted.astype(float)))
    labels = pl.Series(predicted.astype(str))
    if task == "clustering":
        return rows.with_columns(label=labels, prediction=pl.Series(predicted.astype(float)))
    probability = scored.probability
    return rows.with_columns(
        label=labels,
        probability=pl.Series(probability, dtype=pl.Float64) if probability is not None else None,
    )


def join_keys(rows: pl.DataFrame, row_index: pl.Series, id_column: str | None) -> pl.DataFrame:
    """What joins a scored row back to its input: the input's own id column when the spec
    names one (`[source] id`), and always the row's 0-based position in the input, the key of
    ml.predictions and ml.quarantine."""
    keys = pl.DataFrame({"row_index": row_index.cast(pl.Int64)})
    if id_column is None:
        return keys
    if id_column not in rows.columns:
        raise InputError(f"[source.id] the input has no id column '{id_column}'")
    return keys.insert_column(0, rows[id_column])


def scored_file(scored: Scored, keys: pl.DataFrame) -> pl.DataFrame:
    """The file a user opens: the keys, then per task the prediction (regression); the label
    and `probability_<class>` for every class (classification); the cluster (clustering)."""
    predicted = scored.predicted
    task = scored.target.task
    if task == "regression":
        return keys.with_columns(prediction=pl.Series(predicted.astype(float)))
    if task == "clustering":
        return keys.with_columns(cluster=pl.Series(predicted.astype(np.int64)))
    frame = keys.with_columns(label=pl.Series(predicted.tolist()))
    if scored.proba is None:  # e.g. an SVM without calibrated probabilities
        return frame
    return frame.with_columns(
        pl.Series(f"probability_{c}", scored.proba[:, i])
        for i, c in enumerate(scored.target.classes)
    )

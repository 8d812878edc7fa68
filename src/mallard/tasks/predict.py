"""Batch scoring with a registered model: what it needs to know about the target, and its
predictions as ml.predictions rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from mallard.tasks.evaluate import positive_probability
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


def prediction_rows(
    model_id: str, model: Any, X: pl.DataFrame, target: Target, row_index: pl.Series
) -> pl.DataFrame:
    """ml.predictions rows: the value for regression; label and probability for classes;
    the cluster for segments."""
    predicted = np.asarray(model.predict(X))
    rows = pl.DataFrame({"model_id": model_id, "row_index": row_index}).with_columns(
        prediction=pl.lit(None, pl.Float64),
        label=pl.lit(None, pl.String),
        probability=pl.lit(None, pl.Float64),
    )
    if target.task == "regression":
        return rows.with_columns(prediction=pl.Series(predicted.astype(float)))
    labels = pl.Series(predicted.astype(str))
    if target.task == "clustering":
        return rows.with_columns(label=labels, prediction=pl.Series(predicted.astype(float)))
    probability = positive_probability(model, X, target)
    return rows.with_columns(
        label=labels,
        probability=pl.Series(probability, dtype=pl.Float64) if probability is not None else None,
    )

"""Score each tuned candidate on the validation and test splits, in long form, and keep what the
report needs: test-split predictions and, for classes, confusion counts."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mallard.tasks.context import RunContext
from mallard.tasks.metrics import Target, score_all, scorers
from mallard.tasks.tune import Tuned
from mallard.tasks.uncertainty import cv_summary, holdout_intervals

if TYPE_CHECKING:
    from mallard.tasks.replay import Replay

METRIC_COLUMNS = {
    "model_id": pl.String,
    "family": pl.String,
    "split": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "std": pl.Float64,  # cv and selection rows: standard deviation over folds
    "n_folds": pl.Int32,
    "ci_low": pl.Float64,  # test rows: seeded bootstrap 95 % interval
    "ci_high": pl.Float64,
}
# Resamples for the test-split intervals: percentile intervals settle by a few hundred, and the
# resamples reuse one prediction pass, so the cost is metric arithmetic on the test rows.
TEST_BOOTSTRAP = 400
LARGE_TEST_ROWS = 100_000  # beyond this, fewer resamples: each costs a pass over the rows
LARGE_TEST_BOOTSTRAP = 100
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

    def with_metrics(self, extra: pl.DataFrame | None) -> Evaluation:
        """The same evaluation with more ml.metrics rows (e.g. the selection CV)."""
        if extra is None or extra.is_empty():
            return self
        rows = extra.select(list(METRIC_COLUMNS)).cast(pl.Schema(METRIC_COLUMNS))
        return replace(self, metrics=pl.concat([self.metrics, rows]))


def _cv_spread(result: Tuned) -> dict[str, tuple[float | None, int | None]]:
    """metric -> (std over folds, folds) of the candidate's best parameters."""
    shown = json.dumps(result.best_params, sort_keys=True)
    rows = cv_summary(result.cv_results).filter(pl.col("params") == shown)
    return {r["metric"]: (r["std"], r["n_folds"]) for r in rows.iter_rows(named=True)}


def model_id(run_id: str, candidate: str) -> str:
    return f"{run_id}:{candidate}"


def evaluation_table(run: RunContext, tuned: list[Tuned], *, row_index: pl.Series) -> Evaluation:
    """cv (mean ± std over folds of the best params), validation and test metrics (test with a
    seeded bootstrap 95 % interval) of every candidate; clustering has no holdout, its metrics
    are on all rows (split 'all'). `row_index` maps feature rows to input positions."""
    run_id, features, split, target, seed = (
        run.run_id,
        run.features,
        run.split,
        run.target,
        run.seed,
    )
    from mallard.tasks.replay import Replay  # a scikit-learn estimator: imported when used

    rows: list[tuple[Any, ...]] = []
    predictions, confusion = [], []
    for result in tuned:
        mid = model_id(run_id, result.name)
        if split is None:
            rows += [
                (mid, result.family, "all", m, v, None, None, None, None)
                for m, v in result.cv_means.items()
            ]
            continue
        spread = _cv_spread(result)
        rows += [
            (mid, result.family, "cv", m, v, *spread.get(m, (None, None)), None, None)
            for m, v in result.cv_means.items()
        ]
        scoring = scorers(target, result.model)
        assert features.y is not None
        # One prediction pass per split (in batches), shared by the metrics, the bootstrap, the
        # confusion counts and the stored predictions.
        validation = Replay(result.model, features.X[split.validation])
        y = features.y[split.validation]
        scores = score_all(scoring, validation, np.arange(len(y)), y)
        rows += [
            (mid, result.family, "validation", m, v, None, None, None, None)
            for m, v in scores.items()
        ]
        if target.task == "classification":
            confusion.append(_confusion(mid, "validation", y, _output(validation, "predict")))
        test = Replay(result.model, features.X[split.test])
        y = features.y[split.test]
        resamples = TEST_BOOTSTRAP if len(y) <= LARGE_TEST_ROWS else LARGE_TEST_BOOTSTRAP
        intervals = holdout_intervals(
            scoring, test, np.arange(len(y)), y, target=target, n_boot=resamples, seed=seed
        )
        rows += [
            (mid, result.family, "test", m, i.estimate, None, None, i.low, i.high)
            for m, i in intervals.items()
        ]
        if target.task == "classification":
            confusion.append(_confusion(mid, "test", y, _output(test, "predict")))
        predictions.append(_predictions(mid, test, y, target, row_index.gather(split.test)))
    return Evaluation(
        metrics=pl.DataFrame(rows, schema=METRIC_COLUMNS, orient="row"),
        predictions=pl.concat(predictions)
        if predictions
        else pl.DataFrame(schema=PREDICTION_COLUMNS),
        confusion=pl.concat(confusion) if confusion else pl.DataFrame(),
    )


def _predictions(
    mid: str, outputs: Replay, y: np.ndarray, target: Target, row_index: pl.Series
) -> pl.DataFrame:
    """ml.predictions rows of one model on the test split, from its replayed outputs."""
    predicted = _output(outputs, "predict")
    frame: dict[str, Any] = {
        "model_id": mid,
        "split": "test",
        "row_index": row_index,
        "prediction": None,
        "label": None,
        "probability": None,
        "actual": None,
        "actual_label": None,
    }
    if target.task == "regression":
        frame |= {"prediction": predicted.astype(float), "actual": y.astype(float)}
    else:
        proba = outputs.output("predict_proba")
        frame |= {
            "label": predicted.astype(str),
            "actual_label": y.astype(str),
            "probability": None
            if proba is None
            else class_probability(proba, list(outputs.model.classes_), target),
        }
    return pl.DataFrame(frame, schema=PREDICTION_COLUMNS)


def _output(outputs: Replay, method: str) -> np.ndarray:
    answer = outputs.output(method)
    assert answer is not None, method  # every model predicts
    return answer


def positive_probability(model: Any, X: Any, target: Target) -> np.ndarray | None:
    """P(positive class) for binary targets; P(predicted class) for multiclass; None when the
    model has no probabilities (e.g. an SVM without calibration)."""
    if not hasattr(model, "predict_proba"):
        return None
    return class_probability(np.asarray(model.predict_proba(X)), list(model.classes_), target)


def class_probability(proba: np.ndarray, classes: list[Any], target: Target) -> np.ndarray:
    """positive_probability from the model's predict_proba output."""
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

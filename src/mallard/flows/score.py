"""The `score` flow: the pipeline's champion batch-scores new rows, validated with the same
schema, and the predictions and per-feature drift go to the warehouse in one transaction."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.states import State

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.core.spec import Spec, load_spec
from mallard.flows import _quiet_user_errors
from mallard.flows._run import Logger, Progress, run_spec
from mallard.schemas.inline import build_schema, pii_policies
from mallard.tasks.drift import psi_table
from mallard.tasks.evaluate import positive_probability
from mallard.tasks.features import scoring_features
from mallard.tasks.ingest import ingest
from mallard.tasks.metrics import Target
from mallard.tasks.model_files import load_model
from mallard.tasks.privacy import drop_at_ingest, protect_pii, require_salt
from mallard.tasks.register import prediction_values
from mallard.tasks.validate import enforce_invalid_limit, validate
from mallard.warehouse import RunBundle

_quiet_user_errors.install()


@dataclass(frozen=True)
class ScoreResult:
    run_id: str
    pipeline: str
    model_id: str
    warehouse: Path
    n_rows: int
    n_invalid: int
    n_scored: int
    drift: pl.DataFrame  # feature, psi, status
    output: Path | None


@flow(name="score", validate_parameters=False)
def score(
    spec_path: Path,
    input_path: str,
    warehouse_file: Path | None = None,
    output: Path | None = None,
    run_id: str | None = None,
) -> ScoreResult | State:
    """Score the files matching `input_path` (a path or glob) with the pipeline's champion."""
    return run_spec(
        "score",
        lambda: load_spec(Path(spec_path)),
        warehouse_file,
        run_id,
        lambda spec, db, progress: _score(
            spec, str(input_path), db, output, progress, get_run_logger()
        ),
    )


def _score(
    spec: Spec, input_path: str, db: Path, output: Path | None, progress: Progress, logger: Logger
) -> ScoreResult:
    log = logger.info
    pipeline, target = spec.pipeline.name, spec.target
    champion = warehouse.champion(db, pipeline)
    if champion is None:
        raise InputError(
            f"pipeline '{pipeline}' has no champion model to score with: train it with "
            "`mallard run SPEC` (promote policy auto) or choose one with `mallard promote`"
        )
    model_id = str(champion["model_id"])
    progress.run = progress.run.with_data(model_id=model_id)
    model = _load(champion)
    if not hasattr(model, "predict"):  # agglomerative clustering labels only its own rows
        raise InputError(
            f"the champion {model_id} ({champion['family']}) cannot assign new rows; "
            "promote a model that can (e.g. kmeans) with `mallard promote`"
        )
    log("model: champion %s (%s), sha256 verified", model_id, champion["family"])

    files = sorted(Path(p) for p in glob.glob(input_path))
    if not files:
        raise InputError(f"no input file matches '{input_path}'")
    schema = build_schema(spec.schema_, target, target_optional=True)
    policies = pii_policies(schema)
    salt = require_salt(policies)
    typed_columns = [name for name, column in schema.columns.items() if column.dtype is not None]
    raw = ingest(files, None, db, typed_columns)
    frame, schema = drop_at_ingest(raw.frame, schema, policies)
    progress.run = progress.run.with_data(
        source=raw.description, data_sha256=raw.sha256, n_rows=raw.frame.height
    )
    log("ingest: %d rows from %s", raw.frame.height, raw.description)
    checked = protect_pii(validate(frame, schema), policies, salt)
    progress.run = progress.run.with_data(n_invalid=checked.n_invalid)
    progress.quarantine = checked.quarantine
    log("validate: %d rows valid, %d quarantined", checked.valid.height, checked.n_invalid)
    enforce_invalid_limit(checked, spec.schema_.max_invalid_fraction)

    X = scoring_features(checked.valid, spec.features, json.loads(str(champion["feature_names"])))
    about = _target(champion, model)
    predictions = prediction_rows(model_id, model, X, about, checked.valid_rows)
    drift = psi_table(
        warehouse.feature_profile(db, model_id), X, prediction_values(model, X, about)
    )
    shifted = drift.filter(pl.col("status") != "stable")
    log(
        "drift: %d of %d features not stable%s",
        shifted.height,
        drift.height,
        "" if shifted.is_empty() else f" ({', '.join(shifted['feature'])})",
    )
    run = progress.run.finished("succeeded", datetime.now(UTC))
    warehouse.write_run(
        db,
        RunBundle(
            run=run,
            quarantine=checked.quarantine,
            predictions=predictions,
            drift=drift.with_columns(pl.lit(model_id).alias("model_id")),
        ),
    )
    if output is not None:
        _write_parquet(checked.valid, predictions, Path(output))
        log("output: %d predictions written to %s", predictions.height, output)
    log("done: %d rows scored by %s; written to %s", predictions.height, model_id, db)
    return ScoreResult(
        run_id=run.run_id,
        pipeline=pipeline,
        model_id=model_id,
        warehouse=db,
        n_rows=raw.frame.height,
        n_invalid=checked.n_invalid,
        n_scored=predictions.height,
        drift=drift,
        output=None if output is None else Path(output),
    )


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


def _target(champion: dict[str, Any], model: Any) -> Target:
    task = str(champion["task"] or "regression")
    if task != "classification":
        return Target(task)
    classes = tuple(model.classes_.tolist())
    positive = champion["positive_class"]
    pos_label = next((c for c in classes if str(c) == positive), None)
    return Target(task, classes, pos_label)


def _load(champion: dict[str, Any]) -> Any:
    return load_model(
        champion["skops_blob"], str(champion["sha256"]), json.loads(str(champion["trusted_types"]))
    )


def _write_parquet(rows: pl.DataFrame, predictions: pl.DataFrame, path: Path) -> None:
    """Input columns plus row_index and prediction; written aside, then renamed into place, so
    a reader never sees half a file."""
    frame = rows.with_columns(
        predictions["row_index"].alias("row_index"), predictions["prediction"].alias("prediction")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    frame.write_parquet(partial)
    os.replace(partial, path)

"""The `score` flow: the pipeline's champion batch-scores new rows, validated with the same
schema, and the predictions and per-feature drift go to the warehouse in one transaction."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger

from mallard import warehouse
from mallard.core.config import warehouse_path
from mallard.core.errors import InputError
from mallard.flows import user_error_logs
from mallard.flows.inputs import checked_input, input_files, load_checked_spec
from mallard.flows.publish import publish
from mallard.flows.run_record import recorded_run
from mallard.flows.steps import step
from mallard.tasks.drift import psi_table
from mallard.tasks.features import scoring_features
from mallard.tasks.model_files import load_model_row
from mallard.tasks.predict import model_target, prediction_rows
from mallard.tasks.register import prediction_values
from mallard.warehouse import RunBundle

user_error_logs.install()


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


@flow(name="score")
def score(
    spec_path: Path,
    input_path: str,
    warehouse_file: Path | None = None,
    output: Path | None = None,
    run_id: str | None = None,
) -> ScoreResult:
    """Score the files matching `input_path` (a path or glob) with the pipeline's champion."""
    spec = load_checked_spec(Path(spec_path))
    db = warehouse_path(warehouse_file)
    files = input_files(str(input_path))
    champion = _champion(db, spec.pipeline.name)
    model_id = str(champion["model_id"])
    profile = warehouse.feature_profile(db, model_id)
    with recorded_run(db, spec, "score", run_id) as run:
        run.learned(model_id=model_id)
        model = load_champion(champion)  # in the run, so a refused model file is on record
        rows = checked_input(spec, run, files, target_optional=True)
        X = scoring_features(rows.valid, spec.features, json.loads(str(champion["feature_names"])))
        target = model_target(champion, model)
        predictions = prediction_rows(model_id, model, X, target, rows.valid_rows)
        drift = psi_table(profile, X, prediction_values(model, X, target))
        _log_drift(drift)
        if output is not None:
            write_scored_file(rows.valid, predictions, Path(output))
        run.commit(
            RunBundle(
                run=run.finished(),
                quarantine=rows.quarantine,
                predictions=predictions,
                drift=drift.with_columns(pl.lit(model_id).alias("model_id")),
            )
        )
    publish(db, run.run_id, spec.pipeline.name, report=False)
    get_run_logger().info(
        "done: %d rows scored by %s; written to %s", predictions.height, model_id, db
    )
    return ScoreResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        model_id=model_id,
        warehouse=db,
        n_rows=rows.n_rows,
        n_invalid=rows.n_invalid,
        n_scored=predictions.height,
        drift=drift,
        output=None if output is None else Path(output),
    )


def _champion(db: Path, pipeline: str) -> dict[str, Any]:
    champion = warehouse.champion(db, pipeline)
    if champion is None:
        raise InputError(
            f"pipeline '{pipeline}' has no champion model to score with: train it with "
            "`mallard run SPEC` (promote policy auto) or choose one with `mallard promote`"
        )
    return champion


@step(name="load_champion")
def load_champion(champion: dict[str, Any]) -> Any:
    model = load_model_row(champion)
    if not hasattr(model, "predict"):  # agglomerative clustering labels only its own rows
        raise InputError(
            f"the champion {champion['model_id']} ({champion['family']}) cannot assign new "
            "rows; promote a model that can (e.g. kmeans) with `mallard promote`"
        )
    get_run_logger().info(
        "model: champion %s (%s), sha256 verified", champion["model_id"], champion["family"]
    )
    return model


def _log_drift(drift: pl.DataFrame) -> None:
    shifted = drift.filter(pl.col("status") != "stable")
    get_run_logger().info(
        "drift: %d of %d features not stable%s",
        shifted.height,
        drift.height,
        "" if shifted.is_empty() else f" ({', '.join(shifted['feature'])})",
    )


@step(name="write_scored_file")
def write_scored_file(rows: pl.DataFrame, predictions: pl.DataFrame, path: Path) -> None:
    """Input columns plus row_index and prediction; written aside, then renamed into place, so
    a reader never sees half a file."""
    frame = rows.with_columns(
        predictions["row_index"].alias("row_index"), predictions["prediction"].alias("prediction")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    frame.write_parquet(partial)
    os.replace(partial, path)
    get_run_logger().info("output: %d predictions written to %s", predictions.height, path)

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
from mallard.core.spec import FeaturesSection, Spec, parse_spec
from mallard.flows import user_error_logs
from mallard.flows.inputs import checked_input, input_files, load_checked_spec
from mallard.flows.out_of_core import ingest_engine
from mallard.flows.publish import publish
from mallard.flows.run_record import RecordedRun, recorded_run
from mallard.flows.score_stream import Outcome, Scorer, log_drift, score_out_of_core
from mallard.flows.steps import step
from mallard.tasks.drift import psi_table
from mallard.tasks.model_files import load_model_row
from mallard.tasks.predict import (
    join_keys,
    model_target,
    prediction_rows,
    score_rows,
    scored_file,
)
from mallard.warehouse import RunBundle

user_error_logs.install()

SCORED_FORMATS = {".csv": "csv", ".parquet": "parquet"}


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
    features_run_id: str = ""  # the train run whose [features] were applied (the champion's)
    positive_class: str | None = None  # binary classification
    decision_threshold: float | None = None  # tuned threshold the labels use, if any


@flow(name="score")
def score(
    spec_path: Path,
    input_path: str,
    warehouse_file: Path | None = None,
    output: Path | None = None,
    run_id: str | None = None,
) -> ScoreResult:
    """Score the files matching `input_path` (a path or glob) with the pipeline's champion,
    using the features the champion was trained with; `output` (.csv or .parquet) gets the
    scored file: the join keys and, per task, prediction, label and probabilities, or cluster."""
    spec = load_checked_spec(Path(spec_path))
    db = warehouse_path(warehouse_file)
    out = None if output is None else check_output(Path(output))
    files = input_files(str(input_path))
    champion = _champion(db, spec.pipeline.name)
    model_id = str(champion["model_id"])
    trained = trained_features(db, spec, champion)
    profile = warehouse.feature_profile(db, model_id)
    staged = None if out is None else out.with_name(f".{out.name}.partial")
    try:
        with recorded_run(db, spec, "score", run_id) as run:
            run.learned(model_id=model_id)
            model = load_champion(champion)  # in the run, so a refused model file is on record
            target = model_target(champion, model)
            names = json.loads(str(champion["feature_names"]))
            scorer = Scorer(model_id, model, target, trained, names, profile, spec.source.id)
            if ingest_engine(spec, files) == "duckdb":  # larger than memory: in batches
                outcome = score_out_of_core(spec, run, files, scorer, staged)
            else:
                outcome = score_in_memory(spec, run, files, scorer, staged)
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if staged is not None and out is not None:
        os.replace(staged, out)  # only a committed run's predictions appear under the name
        get_run_logger().info("output: %d scored rows written to %s", outcome.n_scored, out)
    publish(db, run.run_id, spec.pipeline.name, report=False)
    get_run_logger().info(
        "done: %d rows scored by %s; written to %s", outcome.n_scored, model_id, db
    )
    return ScoreResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        model_id=model_id,
        warehouse=db,
        n_rows=outcome.n_rows,
        n_invalid=outcome.n_invalid,
        n_scored=outcome.n_scored,
        drift=outcome.drift,
        output=out,
        features_run_id=str(champion["run_id"]),
        positive_class=None if target.pos_label is None else str(target.pos_label),
        decision_threshold=_threshold(champion),
    )


def score_in_memory(
    spec: Spec, run: RecordedRun, files: list[Path], scorer: Scorer, staged: Path | None
) -> Outcome:
    """Read and validate `files` into memory, score every valid row at once (the scored file,
    if any, to `staged`) and commit the run."""
    rows = checked_input(spec, run, files, target_optional=True)
    X, valid, positions = scorer.features_of(rows.valid, rows.valid_rows)
    scored = score_rows(scorer.model, X, scorer.target)
    predictions = prediction_rows(scorer.model_id, scored, positions)
    drift = psi_table(scorer.profile, X, scored.drift_values)
    log_drift(drift)
    if staged is not None:
        keys = join_keys(valid, positions, scorer.id_column)
        stage_scored_file(scored_file(scored, keys), staged)
    run.commit(
        RunBundle(
            run=run.finished(),
            quarantine=rows.quarantine,
            predictions=predictions,
            drift=scorer.drift_rows(drift),
        )
    )
    return Outcome(rows.n_rows, rows.n_invalid, predictions.height, drift)


def check_output(path: Path) -> Path:
    """The scored file's path, checked before anything runs: .csv or .parquet, not a folder,
    and a writable place. Missing parent folders are made when the file is written, as
    `mallard init -o` and `mallard sql --output` do."""
    if path.suffix.lower() not in SCORED_FORMATS:
        raise InputError(
            f"--output {path}: the scored file's name must end in .csv or .parquet "
            f"(not '{path.suffix or 'no extension'}')"
        )
    if path.is_dir():
        raise InputError(
            f"--output {path} is a folder; give a file name, e.g. {path / 'scored.parquet'}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"--output {path}: the file exists and is not writable")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"--output {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--output {path}: cannot write in {folder} (permission denied)")
    return path


def trained_features(db: Path, spec: Spec, champion: dict[str, Any]) -> FeaturesSection:
    """The [features] of the champion's own train run (its stored spec), so a features.sql or
    drop edited since then never feeds the model columns it was not trained on."""
    run_id = str(champion["run_id"])
    record = warehouse.run_record(db, run_id)
    if record is None:
        raise InputError(f"the champion {champion['model_id']} has no train run {run_id} in {db}")
    stored = parse_spec(str(record["spec_toml"]), spec.spec_path, check_source=False).features
    if stored != spec.features:
        get_run_logger().warning(
            "features: %s's [features] differ from the champion's; scoring with the champion's "
            "(train run %s). Retrain to use the new definition.",
            spec.spec_path.name,
            run_id,
        )
    return stored


def _threshold(champion: dict[str, Any]) -> float | None:
    value = champion.get("decision_threshold")
    return None if value is None else float(value)


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


@step(name="write_scored_file")
def stage_scored_file(frame: pl.DataFrame, staged: Path) -> Path:
    """Write the scored file under its hidden staged name (`.NAME.partial` beside it); the flow
    renames it into place once the run is committed, so a reader never sees half a file or one
    of a failed run."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    if SCORED_FORMATS[Path(staged.name.removesuffix(".partial")).suffix.lower()] == "csv":
        frame.write_csv(staged)
    else:
        frame.write_parquet(staged)
    return staged

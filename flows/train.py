"""The `train` flow: ingest -> validate -> features -> split -> tune candidates in parallel ->
evaluate -> one warehouse transaction."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from mallard import warehouse
from mallard.config import warehouse_path
from mallard.errors import MallardError
from mallard.flows import _quiet_user_errors
from mallard.lineage import code_version, library_versions
from mallard.schemas.inline import build_schema
from mallard.spec import Candidate, Spec, load_spec
from mallard.tasks.evaluate import evaluate
from mallard.tasks.families import BASELINE
from mallard.tasks.features import build_features
from mallard.tasks.ingest import ingest
from mallard.tasks.metrics import REGRESSION
from mallard.tasks.split import split_rows
from mallard.tasks.tune import Tuned, tune
from mallard.tasks.validate import enforce_invalid_limit, validate
from mallard.warehouse import RunBundle, RunRecord

_quiet_user_errors.install()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    warehouse: Path
    n_rows: int
    n_invalid: int
    best_model_id: str
    primary_metric: str
    leaderboard: pl.DataFrame  # model_id, family, value (test split, primary metric), best first


def new_run_id(pipeline: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{pipeline}-{stamp}-{uuid.uuid4().hex[:6]}"


class _Progress:
    """What the run has learned so far, so a failure still records fingerprints and quarantine."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self.quarantine: pl.DataFrame | None = None

    def failed(self, error: str) -> RunBundle:
        run = self.run.finished("failed", datetime.now(UTC), error)
        return RunBundle(run=run, quarantine=self.quarantine)


@flow(
    name="train",
    # Prefect's own annotation is invariant in the future type, so mypy rejects its runner.
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),  # type: ignore[arg-type]
    validate_parameters=False,
)
def train(
    spec_path: Path, warehouse_file: Path | None = None, run_id: str | None = None
) -> RunResult | State:
    """Train and evaluate every candidate of the spec; write the run to the warehouse.

    A user-caused failure (bad spec, bad data) ends the flow run Failed with a one-line message
    and no traceback; the run record and quarantine are still written for inspection in SQL.
    """
    logger = get_run_logger()
    try:
        spec = load_spec(Path(spec_path))
    except MallardError as exc:
        logger.error(str(exc))
        return Failed(message=str(exc), data=exc)
    db = warehouse_path(warehouse_file)
    progress = _Progress(_start_record(spec, run_id or new_run_id(spec.pipeline.name)))
    try:
        warehouse.record_run_started(db, progress.run)
        logger.info(
            "run %s of '%s' started; warehouse %s", progress.run.run_id, spec.pipeline.name, db
        )
        return _train(spec, db, progress, logger)
    except MallardError as exc:
        logger.error(str(exc))
        _write_failure(db, progress, str(exc))
        return Failed(message=str(exc), data=exc)
    except Exception as exc:
        _write_failure(db, progress, f"internal error: {exc!r}")
        raise


def _train(
    spec: Spec,
    db: Path,
    progress: _Progress,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> RunResult:
    log = logger.info
    primary = spec.evaluate.primary_metric
    schema = build_schema(spec.schema_, spec.pipeline.target)
    typed_columns = [name for name, column in schema.columns.items() if column.dtype is not None]
    raw = ingest(spec.source_files(), spec.source.sql, db, typed_columns)
    progress.run = progress.run.with_data(
        source=raw.description, data_sha256=raw.sha256, n_rows=raw.frame.height
    )
    log("ingest: %d rows x %d columns from %s", raw.frame.height, raw.frame.width, raw.description)

    checked = validate(raw.frame, schema)
    progress.run = progress.run.with_data(n_invalid=checked.n_invalid)
    progress.quarantine = checked.quarantine
    log(
        "validate: %d rows valid, %d quarantined (%.1f%%)",
        checked.valid.height,
        checked.n_invalid,
        100 * checked.invalid_fraction,
    )
    enforce_invalid_limit(checked, spec.schema_.max_invalid_fraction)

    features = build_features(checked.valid, spec.features, spec.pipeline.target)
    log("features: %d numeric, %d categorical", len(features.numeric), len(features.categorical))
    split = split_rows(features.X.height, spec.split, spec.pipeline.seed, spec.cv.folds)
    log(
        "split: %d train / %d validation / %d test rows (seed %d)",
        len(split.train),
        len(split.validation),
        len(split.test),
        spec.pipeline.seed,
    )

    futures: list[PrefectFuture[Tuned]] = [
        tune.submit(
            name, candidate, features, split.train, spec.cv.folds, spec.pipeline.seed, primary
        )
        for name, candidate in _with_baseline(spec)
    ]
    tuned = []
    for done, future in enumerate(futures, start=1):
        result = future.result()  # a failed candidate fails the flow, never silently
        tuned.append(result)
        log(
            "tune %d/%d: %s cv %s = %.4g in %.1f s, best %s",
            done,
            len(futures),
            result.name,
            primary,
            result.cv_means[primary],
            result.seconds,
            result.best_params,
        )

    metrics = evaluate(progress.run.run_id, tuned, features, split)
    run = progress.run.finished("succeeded", datetime.now(UTC))
    cv_results = pl.concat([t.cv_results for t in tuned])
    bundle = RunBundle(
        run=run, quarantine=checked.quarantine, cv_results=cv_results, metrics=metrics
    )
    warehouse.write_run(db, bundle)
    board = _leaderboard(metrics, primary)
    best = board.row(0, named=True)
    log(
        "done: best %s, test %s = %.4g; written to %s", best["model_id"], primary, best["value"], db
    )
    return RunResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        warehouse=db,
        n_rows=raw.frame.height,
        n_invalid=checked.n_invalid,
        best_model_id=best["model_id"],
        primary_metric=primary,
        leaderboard=board,
    )


def _start_record(spec: Spec, run_id: str) -> RunRecord:
    primary = spec.evaluate.primary_metric
    return RunRecord(
        run_id=run_id,
        pipeline=spec.pipeline.name,
        task=spec.pipeline.task,
        status="running",
        started_at=datetime.now(UTC),
        spec_toml=spec.spec_toml,
        spec_sha256=spec.spec_sha256,
        spec_path=str(spec.spec_path),
        seed=spec.pipeline.seed,
        primary_metric=primary,
        greater_is_better=REGRESSION[primary].greater_is_better,
        code_version=code_version(),
        versions=library_versions(),
    )


def _with_baseline(spec: Spec) -> list[tuple[str, Candidate]]:
    """The spec's candidates plus a dummy baseline, so a useless model is visible."""
    named = list(zip(spec.candidate_names(), spec.candidates, strict=True))
    if not any(candidate.family == BASELINE for candidate in spec.candidates):
        named.append(("baseline", Candidate(family=BASELINE)))
    return named


def _leaderboard(metrics: pl.DataFrame, primary: str) -> pl.DataFrame:
    board = metrics.filter((pl.col("split") == "test") & (pl.col("metric") == primary))
    descending = REGRESSION[primary].greater_is_better
    return board.select("model_id", "family", "value").sort("value", descending=descending)


def _write_failure(db: Path, progress: _Progress, error: str) -> None:
    try:
        warehouse.write_run(db, progress.failed(error))
    except MallardError as exc:
        # The warehouse itself is the problem (e.g. locked): report the original error first.
        get_run_logger().warning("could not record the failed run: %s", exc)

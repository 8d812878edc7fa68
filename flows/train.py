"""The `train` flow: ingest -> validate -> features -> split -> tune candidates in parallel ->
evaluate -> register models -> champion rule -> one warehouse transaction."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from mallard import warehouse
from mallard.config import warehouse_path
from mallard.errors import MallardError
from mallard.flows import _quiet_user_errors
from mallard.flows._run import Logger, Progress, guarded_run, new_run_id, start_record
from mallard.schemas.inline import build_schema
from mallard.spec import Candidate, Spec, load_spec, parse_spec
from mallard.tasks.evaluate import evaluate
from mallard.tasks.families import BASELINE
from mallard.tasks.features import Features, build_features
from mallard.tasks.ingest import ingest
from mallard.tasks.metrics import REGRESSION
from mallard.tasks.model_files import load_model
from mallard.tasks.promote import Decision, decide, promotion_rows
from mallard.tasks.register import Lineage, register
from mallard.tasks.split import Split, split_rows
from mallard.tasks.tune import Tuned, tune
from mallard.tasks.validate import enforce_invalid_limit, validate
from mallard.warehouse import RunBundle

_quiet_user_errors.install()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    warehouse: Path
    n_rows: int
    n_invalid: int
    best_model_id: str  # best non-baseline model on the validation split
    primary_metric: str
    leaderboard: pl.DataFrame  # model_id, family, value (test split, primary metric), best first
    promoted: bool
    promotion_reason: str


@flow(
    name="train",
    # Prefect's own annotation is invariant in the future type, so mypy rejects its runner.
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),  # type: ignore[arg-type]
    validate_parameters=False,
)
def train(
    spec_path: Path,
    warehouse_file: Path | None = None,
    run_id: str | None = None,
    spec_toml: str | None = None,
    may_promote: bool = True,
) -> RunResult | State:
    """Train and evaluate every candidate of the spec; write the run to the warehouse.

    `spec_toml`, when given, is used instead of the file's current text (a stored run's spec,
    for `mallard repro`); relative paths still resolve from `spec_path`'s folder. With
    `may_promote` false the champion rule is recorded as skipped (reproduction runs).
    A user-caused failure (bad spec, bad data) ends the flow run Failed with a one-line message
    and no traceback; the run record and quarantine are still written for inspection in SQL.
    """
    try:
        path = Path(spec_path)
        spec = load_spec(path) if spec_toml is None else parse_spec(spec_toml, path)
    except MallardError as exc:
        get_run_logger().error(str(exc))
        return Failed(message=str(exc), data=exc)
    db = warehouse_path(warehouse_file)
    progress = Progress(start_record(spec, run_id or new_run_id(spec.pipeline.name), "train"))
    return guarded_run(
        db, progress, lambda: _train(spec, db, progress, get_run_logger(), may_promote), "train"
    )


def _train(
    spec: Spec, db: Path, progress: Progress, logger: Logger, may_promote: bool
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

    tuned = _tune_all(spec, features, split, log)
    run = progress.run
    metrics = evaluate(run.run_id, tuned, features, split)
    lineage = Lineage(
        pipeline=spec.pipeline.name,
        created_at=datetime.now(UTC),
        data_sha256=run.data_sha256,
        spec_sha256=spec.spec_sha256,
        code_version=run.code_version,
        seed=spec.pipeline.seed,
        versions=run.versions,
        target=spec.pipeline.target,
    )
    registered = register(run.run_id, tuned, features, split, lineage)
    sizes = ", ".join(
        f"{c} {s / 1e6:.1f} MB"
        for c, s in registered.models.select("candidate", "size_bytes").iter_rows()
    )
    log("register: %d models saved with skops (%s)", registered.models.height, sizes)

    best_id = _best_on_validation(metrics, primary)
    decision = _champion_decision(
        spec, db, run.run_id, best_id, metrics, features, split, may_promote
    )
    log(
        "promote: %s %s (%s)",
        best_id,
        "promoted" if decision.promoted else "not promoted",
        decision.reason,
    )
    finished_at = datetime.now(UTC)
    promotions, aliases = promotion_rows(decision, finished_at, set_by=f"train run {run.run_id}")
    bundle = RunBundle(
        run=run.finished("succeeded", finished_at),
        quarantine=checked.quarantine,
        cv_results=pl.concat([t.cv_results for t in tuned]),
        metrics=metrics,
        models=registered.models,
        feature_profiles=registered.profiles,
        promotions=promotions,
        aliases=aliases,
    )
    warehouse.write_run(db, bundle)
    board = _leaderboard(metrics, primary)
    best = board.row(0, named=True)
    log(
        "done: best on test %s, %s = %.4g; written to %s",
        best["model_id"],
        primary,
        best["value"],
        db,
    )
    return RunResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        warehouse=db,
        n_rows=raw.frame.height,
        n_invalid=checked.n_invalid,
        best_model_id=best_id,
        primary_metric=primary,
        leaderboard=board,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
    )


def _tune_all(
    spec: Spec, features: Features, split: Split, log: Callable[..., None]
) -> list[Tuned]:
    primary = spec.evaluate.primary_metric
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
    return tuned


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


def _best_on_validation(metrics: pl.DataFrame, primary: str) -> str:
    """The champion candidate: chosen on validation, so the test split stays a fair judge."""
    scores = metrics.filter((pl.col("split") == "validation") & (pl.col("metric") == primary)).sort(
        "value", descending=REGRESSION[primary].greater_is_better
    )
    real = scores.filter(pl.col("family") != BASELINE)
    return str((real if real.height else scores)["model_id"][0])


def _champion_decision(
    spec: Spec,
    db: Path,
    run_id: str,
    model_id: str,
    metrics: pl.DataFrame,
    features: Features,
    split: Split,
    may_promote: bool,
) -> Decision:
    primary = spec.evaluate.primary_metric
    model_value = metrics.filter(
        (pl.col("model_id") == model_id)
        & (pl.col("split") == "test")
        & (pl.col("metric") == primary)
    )["value"][0]
    champion = warehouse.champion(db, spec.pipeline.name, ignore_run_id=run_id)
    champion_value, problem = None, None
    if champion is not None:
        try:
            champion_value = _score_on_test(champion, features, split, primary)
        except MallardError as exc:
            problem = str(exc)
        except (KeyError, ValueError, pl.exceptions.PolarsError) as exc:
            # e.g. the champion was trained on columns this data no longer has
            problem = f"it cannot score this run's test rows ({exc})"
    return decide(
        pipeline=spec.pipeline.name,
        model_id=model_id,
        model_value=model_value,
        metric=primary,
        policy=spec.promote.policy if may_promote else "never",
        min_improvement=spec.promote.min_improvement,
        champion_model_id=None if champion is None else champion["model_id"],
        champion_value=champion_value,
        champion_problem=problem,
    )


def _score_on_test(
    champion: dict[str, Any], features: Features, split: Split, metric: str
) -> float:
    model = load_model(
        champion["skops_blob"],
        str(champion["sha256"]),
        json.loads(str(champion["trusted_types"])),
    )
    columns = json.loads(str(champion["feature_names"]))
    predicted = model.predict(features.X[split.test].select(columns))
    return float(REGRESSION[metric].compute(features.y[split.test], np.asarray(predicted)))

"""The `train` flow: ingest -> validate -> features -> split -> tune candidates in parallel ->
ensembles -> evaluate -> register models -> champion rule -> one warehouse transaction."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from mallard import warehouse
from mallard.core.catalogue import BASELINE, ENSEMBLES, greater_is_better
from mallard.core.errors import MallardError
from mallard.core.spec import Candidate, Spec, load_spec, parse_spec
from mallard.flows import _quiet_user_errors
from mallard.flows._audit import Audit, audit
from mallard.flows._champion import champion_decision
from mallard.flows._report import publish_report
from mallard.flows._run import Logger, Progress, run_spec
from mallard.schemas.inline import build_schema, pii_policies
from mallard.tasks.cluster import cluster, cluster_tables
from mallard.tasks.ensembles import ensemble
from mallard.tasks.evaluate import evaluate, model_id
from mallard.tasks.features import Features, build_features
from mallard.tasks.ingest import ingest
from mallard.tasks.metrics import Target
from mallard.tasks.privacy import drop_at_ingest, protect_pii, require_salt
from mallard.tasks.promote import promotion_rows
from mallard.tasks.register import Lineage, register
from mallard.tasks.split import Split, split_rows
from mallard.tasks.tune import SearchPlan, Tuned, tune
from mallard.tasks.validate import enforce_invalid_limit, validate
from mallard.warehouse import RunBundle

_quiet_user_errors.install()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    task: str
    warehouse: Path
    n_rows: int
    n_invalid: int
    best_model_id: str  # best non-baseline model on the validation split (clustering: all rows)
    primary_metric: str
    leaderboard: pl.DataFrame  # the run's rows of ml.leaderboard, rank 1 first
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
    path = Path(spec_path)
    # Parallelism lives at the candidate level (one task per candidate). Evaluation, importance
    # and registration call predict thousands of times on small frames, where OpenMP/BLAS
    # threads cost more to start than they save (measured: 57 s -> 3 s for one audit).
    with threadpool_limits(limits=1):
        return run_spec(
            "train",
            lambda: load_spec(path) if spec_toml is None else parse_spec(spec_toml, path),
            warehouse_file,
            run_id,
            lambda spec, db, progress: _train(spec, db, progress, get_run_logger(), may_promote),
        )


def _train(
    spec: Spec, db: Path, progress: Progress, logger: Logger, may_promote: bool
) -> RunResult:
    log = logger.info
    task, primary = spec.pipeline.task, spec.primary_metric
    schema = build_schema(spec.schema_, spec.target)
    policies = pii_policies(schema)
    salt = require_salt(policies)
    typed_columns = [name for name, column in schema.columns.items() if column.dtype is not None]
    raw = ingest(spec.source_files(), spec.source.sql, db, typed_columns)
    frame, schema = drop_at_ingest(raw.frame, schema, policies)
    progress.run = progress.run.with_data(
        source=raw.description, data_sha256=raw.sha256, n_rows=raw.frame.height
    )
    log("ingest: %d rows x %d columns from %s", raw.frame.height, raw.frame.width, raw.description)

    checked = protect_pii(validate(frame, schema), policies, salt)
    progress.run = progress.run.with_data(n_invalid=checked.n_invalid)
    progress.quarantine = checked.quarantine
    log(
        "validate: %d rows valid, %d quarantined (%.1f%%)",
        checked.valid.height,
        checked.n_invalid,
        100 * checked.invalid_fraction,
    )
    enforce_invalid_limit(checked, spec.schema_.max_invalid_fraction)

    features = build_features(
        checked.valid,
        spec.features,
        spec.target,
        task,
        spec.split.column if spec.split.strategy in ("time", "group") else None,
        exclude=_not_features(spec),
        audit_columns=tuple(spec.fairness.sensitive),
    )
    log("features: %d numeric, %d categorical", len(features.numeric), len(features.categorical))
    row_index = (
        checked.valid_rows
        if features.X.height == checked.valid.height
        else pl.Series(np.arange(features.X.height))  # features.sql changed the rows
    )
    plan = _plan(spec, features)
    split = None
    if task != "clustering":
        split = split_rows(
            features.X.height,
            spec.split,
            spec.pipeline.seed,
            spec.cv.folds,
            features.y,
            features.split_key,
        )
        log(
            "split (%s): %d train / %d validation / %d test rows (seed %d)",
            spec.split.strategy,
            len(split.train),
            len(split.validation),
            len(split.test),
            spec.pipeline.seed,
        )
    tuned = _tune_all(spec, features, split, plan, log)

    run = progress.run
    evaluation = evaluate(run.run_id, tuned, features, split, plan.target, row_index)
    lineage = Lineage(
        pipeline=spec.pipeline.name,
        task=task,
        created_at=datetime.now(UTC),
        data_sha256=run.data_sha256,
        spec_sha256=spec.spec_sha256,
        code_version=run.code_version,
        seed=spec.pipeline.seed,
        versions=run.versions,
        target=spec.target,
    )
    registered = register(run.run_id, tuned, features, split, lineage, plan.target)
    sizes = ", ".join(
        f"{c} {s / 1e6:.1f} MB"
        for c, s in registered.models.select("candidate", "size_bytes").iter_rows()
    )
    log("register: %d models saved with skops (%s)", registered.models.height, sizes)

    best_id = _best(evaluation.metrics, primary, "all" if split is None else "validation")
    decision = champion_decision(
        spec,
        db,
        run.run_id,
        best_id,
        evaluation.metrics,
        features,
        split,
        plan.target,
        may_promote,
    )
    verdict = "promoted" if decision.promoted else "not promoted"
    log("promote: %s %s (%s)", best_id, verdict, decision.reason)
    finished_at = datetime.now(UTC)
    promotions, aliases = promotion_rows(decision, finished_at, set_by=f"train run {run.run_id}")
    assignments, profiles = _segments(run.run_id, tuned, features, row_index)
    checks = None
    if split is not None:
        checks = audit(
            run.run_id,
            best_id,
            tuned,
            features,
            split,
            plan.target,
            primary,
            spec.fairness,
            spec.pipeline.seed,
        )
        _log_audit(checks, log)
    warehouse.write_run(
        db,
        RunBundle(
            run=run.finished("succeeded", finished_at),
            quarantine=checked.quarantine,
            cv_results=pl.concat([t.cv_results for t in tuned]),
            metrics=evaluation.metrics,
            models=registered.models,
            feature_profiles=registered.profiles,
            promotions=promotions,
            aliases=aliases,
            predictions=evaluation.predictions,
            confusion=evaluation.confusion,
            cluster_assignments=assignments,
            cluster_profiles=profiles,
            feature_importance=None if checks is None else checks.importance,
            fairness=None if checks is None else checks.fairness,
            fairness_summary=None if checks is None else checks.fairness_summary,
        ),
    )
    publish_report(db, run.run_id, spec.pipeline.name, log)
    board = warehouse.leaderboard(db, run_id=run.run_id)
    log("done: %d models ranked on %s; written to %s", board.height, primary, db)
    return RunResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        task=task,
        warehouse=db,
        n_rows=raw.frame.height,
        n_invalid=checked.n_invalid,
        best_model_id=best_id,
        primary_metric=primary,
        leaderboard=board,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
    )


def _not_features(spec: Spec) -> tuple[str, ...]:
    """A group id would let a model recognise groups instead of learning; audited attributes
    stay out of the model unless the spec says they may be used."""
    excluded = []
    if spec.split.strategy == "group" and spec.split.column:
        excluded.append(spec.split.column)
    if not spec.fairness.use_as_feature:
        excluded += spec.fairness.sensitive
    return tuple(excluded)


def _log_audit(checks: Audit, log: Callable[..., None]) -> None:
    if checks.importance is not None and not checks.importance.is_empty():
        top = checks.importance.filter(pl.col("rank") <= 3).sort("model_id", "rank")
        log("explain: top features %s", ", ".join(dict.fromkeys(top["feature"])))
    if checks.fairness_summary is not None:
        warned = checks.fairness_summary.filter(pl.col("status") == "warn")
        log(
            "fairness: %d of %d disparities over the limit",
            warned.height,
            checks.fairness_summary.height,
        )


def _plan(spec: Spec, features: Features) -> SearchPlan:
    task = spec.pipeline.task
    target = Target(task)
    if task == "classification":
        assert features.y is not None
        classes = tuple(sorted(np.unique(features.y).tolist(), key=str))
        target = Target(task, classes, _positive_class(spec, features.y, classes))
    return SearchPlan(
        target=target,
        primary=spec.primary_metric,
        folds=spec.cv.folds,
        seed=spec.pipeline.seed,
        strategy=spec.split.strategy,
        repeats=spec.cv.repeats,
        features=spec.features,
        tune_threshold=spec.evaluate.tune_threshold,
    )


def _positive_class(spec: Spec, y: np.ndarray, classes: tuple[object, ...]) -> object:
    """The spec's positive_class, else the rarer class: in imbalanced data the one that matters."""
    if len(classes) != 2:
        return None
    wanted = spec.evaluate.positive_class
    if wanted is not None:
        matches = [c for c in classes if str(c) == wanted]
        if not matches:
            raise MallardError(
                f"[evaluate.positive_class] '{wanted}' is not a class of the target: {classes}"
            )
        return matches[0]
    counts = {c: int(np.sum(y == c)) for c in classes}
    return min(classes, key=lambda c: (counts[c], str(c)))


def _tune_all(
    spec: Spec,
    features: Features,
    split: Split | None,
    plan: SearchPlan,
    log: Callable[..., None],
) -> list[Tuned]:
    """Single candidates run concurrently as Prefect tasks; ensembles then combine the best."""
    named = _with_baseline(spec)
    singles = [(n, c) for n, c in named if c.family not in ENSEMBLES]
    futures: list[PrefectFuture[Tuned]]
    if split is None:
        futures = [cluster.submit(n, c, features, plan) for n, c in singles]
    else:
        futures = [tune.submit(n, c, features, split.train, plan) for n, c in singles]
    tuned = [_logged(f.result(), i, len(named), plan.primary, log) for i, f in enumerate(futures)]
    if split is not None:
        combined = [
            ensemble.submit(n, c, tuned, features, split.train, plan)
            for n, c in named
            if c.family in ENSEMBLES
        ]
        tuned += [
            _logged(f.result(), len(singles) + i, len(named), plan.primary, log)
            for i, f in enumerate(combined)
        ]
    return tuned


def _logged(result: Tuned, i: int, total: int, primary: str, log: Callable[..., None]) -> Tuned:
    score = result.cv_means.get(primary, float("nan"))
    extra = "" if result.threshold is None else f", threshold {result.threshold:.3f}"
    log(
        "tune %d/%d: %s %s = %.4g in %.1f s, best %s%s",
        i + 1,
        total,
        result.name,
        primary,
        score,
        result.seconds,
        result.best_params,
        extra,
    )
    return result


def _with_baseline(spec: Spec) -> list[tuple[str, Candidate]]:
    """The spec's candidates plus a dummy baseline, so a useless model is visible."""
    named = list(zip(spec.candidate_names(), spec.candidates, strict=True))
    needs = spec.pipeline.task != "clustering"
    if needs and not any(candidate.family == BASELINE for candidate in spec.candidates):
        named.append(("baseline", Candidate(family=BASELINE)))
    return named


def _best(metrics: pl.DataFrame, primary: str, split: str) -> str:
    """The champion candidate: chosen on validation, so the test split stays a fair judge."""
    scores = metrics.filter((pl.col("split") == split) & (pl.col("metric") == primary)).sort(
        "value", descending=greater_is_better(primary), nulls_last=True
    )
    real = scores.filter(pl.col("family") != BASELINE)
    return str((real if real.height else scores)["model_id"][0])


def _segments(
    run_id: str, tuned: list[Tuned], features: Features, row_index: pl.Series
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    pairs = [
        cluster_tables(model_id(run_id, t.name), t.labels, features, row_index)
        for t in tuned
        if t.labels is not None
    ]
    if not pairs:
        return None, None
    return pl.concat([a for a, _ in pairs]), pl.concat([p for _, p in pairs])

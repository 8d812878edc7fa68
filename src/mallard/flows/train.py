"""The `train` flow: read the spec and the current champion, then ingest -> validate ->
features -> split -> tune candidates in parallel -> ensembles -> evaluate -> register ->
champion rule -> audit -> one warehouse transaction; then publish the report."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from mallard import warehouse
from mallard.core.catalogue import greater_is_better
from mallard.core.config import warehouse_path
from mallard.core.errors import SpecError
from mallard.core.spec import Spec
from mallard.flows import steps, user_error_logs
from mallard.flows.candidates import tune_all
from mallard.flows.inputs import load_checked_spec
from mallard.flows.publish import publish
from mallard.flows.run_record import RecordedRun, recorded_run
from mallard.flows.runners import candidate_address, dask_runner
from mallard.flows.training_rows import TrainingRows, training_rows
from mallard.tasks.audit import Audit
from mallard.tasks.cluster import segment_tables
from mallard.tasks.context import RunContext
from mallard.tasks.evaluate import Evaluation, model_id
from mallard.tasks.features import Features
from mallard.tasks.metrics import scorers
from mallard.tasks.plan import search_plan
from mallard.tasks.promote import Decision, promotion_rows
from mallard.tasks.register import Lineage, Registered
from mallard.tasks.split import Split
from mallard.tasks.tune import SearchPlan, Tuned
from mallard.tasks.uncertainty import refitted_cv, selection_refits
from mallard.warehouse import RunBundle

user_error_logs.install()

FINAL_SUFFIX = ".final"  # the candidate name of a finalized refit: ridge -> ridge.final


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    task: str
    warehouse: Path
    n_rows: int
    n_invalid: int
    best_model_id: str  # the champion candidate's evaluated model (chosen on CV, never dummy)
    deployed_model_id: str  # what promotion would deploy: its refit on all labelled rows
    primary_metric: str
    promoted: bool
    promotion_reason: str
    warnings: tuple[str, ...] = ()  # what publishing after the commit could not do


@flow(
    name="train",
    # Prefect's own annotation is invariant in the future type, so mypy rejects its runner.
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),  # type: ignore[arg-type]
)
def train(
    spec_path: Path,
    warehouse_file: Path | None = None,
    run_id: str | None = None,
    spec_toml: str | None = None,
    may_promote: bool = True,
    dask_address: str | None = None,
) -> RunResult:
    """Train and evaluate every candidate of the spec; write the run to the warehouse.

    `spec_toml`, when given, is used instead of the file's current text (a stored run's spec,
    for `mallard repro`); relative paths still resolve from `spec_path`'s folder. With
    `may_promote` false the champion rule is recorded as skipped (reproduction runs). The
    candidate searches run on the Dask scheduler at `dask_address`, MALLARD_DASK_ADDRESS or the
    spec's `[train] dask` (runners.candidate_address), else on the flow's threads.
    """
    spec = load_checked_spec(Path(spec_path), spec_toml, trains=True)
    address = candidate_address(dask_address, spec)
    dask = None if address is None else dask_runner(address)  # checked before any run row
    if address is not None:
        get_run_logger().info("candidates: on the Dask scheduler at %s", address)
    db = warehouse_path(warehouse_file)
    champion = warehouse.champion(db, spec.pipeline.name, ignore_run_id=run_id)
    champion_evaluated = _evaluated_sibling(db, champion)
    # Parallelism lives at the candidate level (one task per candidate). Evaluation, importance
    # and registration call predict thousands of times on small frames, where OpenMP/BLAS
    # threads cost more to start than they save (measured: 57 s -> 3 s for one audit).
    with threadpool_limits(limits=1), recorded_run(db, spec, "train", run_id) as run:
        rows = training_rows(spec, run)
        features = rows.features
        plan = search_plan(spec, features)
        context = _context(spec, run, features, plan, rows.split)
        fitting = replace(context, split=rows.fitting)  # [train] max_rows: tuning + selection
        tuned = tune_all(spec, fitting, plan, dask)
        evaluation = steps.evaluation_table(context, tuned, row_index=rows.row_index)
        chosen = _choose(run, fitting, plan, tuned)
        final = _finalized(context, plan, chosen.tuned, rows)
        registered = steps.register_models(context, [*tuned, *final], lineage=_lineage(spec, run))
        decision = steps.champion_decision(
            context,
            pipeline=spec.pipeline.name,
            best_id=chosen.model_id,
            deployed_id=model_id(run.run_id, (final or [chosen.tuned])[0].name),
            metrics=evaluation.metrics,
            champion=champion,
            champion_evaluated=champion_evaluated,
            rule=spec.promote,
            may_promote=may_promote,
        )
        _log_decision(chosen.model_id, decision)
        checks = steps.audit_run(
            context, tuned=tuned, best_id=chosen.model_id, fairness=spec.fairness
        )
        _log_audit(checks)
        run.commit(
            _bundle(
                run,
                rows,
                tuned,
                evaluation.with_metrics(chosen.metrics),
                _linked(registered, chosen, final, context),
                decision,
                checks,
                context,
            )
        )
    warnings = publish(db, run.run_id, spec.pipeline.name)
    return RunResult(
        run_id=run.run_id,
        pipeline=spec.pipeline.name,
        task=spec.pipeline.task,
        warehouse=db,
        n_rows=rows.checked.n_rows,
        n_invalid=rows.checked.n_invalid,
        best_model_id=chosen.model_id,
        deployed_model_id=decision.model_id,
        primary_metric=plan.primary,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class Chosen:
    """The champion candidate of a run, and the evidence it was chosen on."""

    tuned: Tuned
    model_id: str
    metrics: pl.DataFrame | None  # split 'selection' rows of ml.metrics (None: clustering)


def _evaluated_sibling(db: Path, champion: dict[str, Any] | None) -> dict[str, Any] | None:
    """A finalized champion is judged through the model of its configuration that was
    evaluated without the test rows (ml.models.evaluated_model_id)."""
    if champion is None or not champion.get("evaluated_model_id"):
        return None
    return warehouse.model(db, str(champion["evaluated_model_id"]))


def _choose(run: RecordedRun, context: RunContext, plan: SearchPlan, tuned: list[Tuned]) -> Chosen:
    """Supervised: the best mean over CV on train + validation rows (repeated on small data),
    never the dummy. Clustering: the best internal validity on all rows."""
    if context.split is None:
        metric = greater_is_better(plan.primary)
        best = max(
            tuned, key=lambda t: t.cv_means.get(plan.primary, float("-inf")) * (1 if metric else -1)
        )
        run.learned(selection_rule=f"best {plan.primary} on all rows (clustering)")
        return Chosen(tuned=best, model_id=model_id(run.run_id, best.name), metrics=None)
    labelled = np.concatenate([context.split.train, context.split.validation])
    # A model without probabilities (e.g. hard voting) cannot be scored on pr_auc: it is left
    # out of the choice, as it has no such figure to compare.
    scorable = [t for t in tuned if plan.primary in scorers(plan.target, t.model)]
    if not scorable:
        raise SpecError(
            f"[evaluate.primary_metric] no candidate can be scored on {plan.primary} "
            "(it needs probabilities or decision scores): choose another metric or family"
        )
    scorer = scorers(plan.target, scorable[0].model)[plan.primary]
    again = selection_refits(plan, len(labelled))
    if again is not None:  # refits every candidate: say so before the wait
        get_run_logger().info(
            "select: scoring %d candidates' best parameters again by %s",
            len(scorable),
            refitted_cv(again, len(labelled)),
        )
    selection = steps.select_champion(scorable, context.features, labelled, plan, scorer)
    run.learned(selection_rule=selection.rule)
    get_run_logger().info("select: %s (%s)", selection.champion, selection.rule)
    best = next(t for t in tuned if t.name == selection.champion)
    rows = selection.summary.select(
        pl.concat_str(pl.lit(f"{run.run_id}:"), "candidate").alias("model_id"),
        "family",
        pl.lit("selection").alias("split"),
        pl.lit(selection.metric).alias("metric"),
        pl.col("mean").alias("value"),
        "std",
        pl.col("n_folds").cast(pl.Int32),
        pl.lit(None, pl.Float64).alias("ci_low"),
        pl.lit(None, pl.Float64).alias("ci_high"),
    )
    return Chosen(tuned=best, model_id=model_id(run.run_id, best.name), metrics=rows)


def _finalized(
    context: RunContext, plan: SearchPlan, best: Tuned, rows: TrainingRows
) -> list[Tuned]:
    """The chosen configuration refitted on `rows.final_rows`: every labelled row, or a seeded
    sample of [train] max_rows of them (None: the spec turned finalize off). What gets deployed."""
    if context.split is None or rows.final_rows is None:
        return []
    model = steps.finalize(best, context.features, rows.final_rows, plan)
    threshold = getattr(model, "best_threshold_", best.threshold)
    refit = len(rows.final_rows)
    if refit >= rows.labelled_rows:
        get_run_logger().info("finalize: %s refitted on all %d labelled rows", best.name, refit)
    else:
        get_run_logger().info(
            "finalize: %s refitted on a seeded sample of %d of %d labelled rows (max_rows)",
            best.name,
            refit,
            rows.labelled_rows,
        )
    return [
        replace(
            best,
            name=f"{best.name}{FINAL_SUFFIX}",
            model=model,
            threshold=None if threshold is None else float(threshold),
        )
    ]


def _linked(
    registered: Registered, chosen: Chosen, final: list[Tuned], context: RunContext
) -> Registered:
    """ml.models rows say what each model was fitted on; a finalized refit points at the
    evaluated model whose test figures describe it."""
    final_ids = {model_id(context.run_id, t.name) for t in final}
    trained_on = "all" if context.split is None else "train"
    models = registered.models.with_columns(
        evaluated_model_id=pl.when(pl.col("model_id").is_in(list(final_ids)))
        .then(pl.lit(chosen.model_id))
        .otherwise(pl.lit(None, pl.String)),
        trained_on=pl.when(pl.col("model_id").is_in(list(final_ids)))
        .then(pl.lit("labelled"))
        .otherwise(pl.lit(trained_on)),
    )
    return replace(registered, models=models)


def _context(
    spec: Spec, run: RecordedRun, features: Features, plan: SearchPlan, split: Split | None
) -> RunContext:
    return RunContext(
        run_id=run.run_id,
        features=features,
        split=split,
        target=plan.target,
        primary=plan.primary,
        seed=spec.pipeline.seed,
    )


def _lineage(spec: Spec, run: RecordedRun) -> Lineage:
    return Lineage(
        pipeline=spec.pipeline.name,
        task=spec.pipeline.task,
        created_at=datetime.now(UTC),
        data_sha256=run.record.data_sha256,
        spec_sha256=spec.spec_sha256,
        code_version=run.record.code_version,
        seed=spec.pipeline.seed,
        versions=run.record.versions,
        target=spec.target,
    )


def _log_decision(best_id: str, decision: Decision) -> None:
    verdict = "promoted" if decision.promoted else "not promoted"
    get_run_logger().info("promote: %s %s (%s)", best_id, verdict, decision.reason)


def _log_audit(checks: Audit) -> None:
    log = get_run_logger().info
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


def _bundle(
    run: RecordedRun,
    rows: TrainingRows,
    tuned: list[Tuned],
    evaluation: Evaluation,
    registered: Registered,
    decision: Decision,
    checks: Audit,
    context: RunContext,
) -> RunBundle:
    finished = run.finished()
    promotions, aliases = promotion_rows(
        decision, finished.finished_at or datetime.now(UTC), set_by=f"train run {run.run_id}"
    )
    assignments, profiles = segment_tables(run.run_id, tuned, context.features, rows.row_index)
    get_run_logger().info(
        "register: %d models saved with skops (%s)",
        registered.models.height,
        ", ".join(
            f"{c} {s / 1e6:.1f} MB"
            for c, s in registered.models.select("candidate", "size_bytes").iter_rows()
        ),
    )
    return RunBundle(
        run=finished,
        quarantine=rows.checked.quarantine,
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
        feature_importance=checks.importance,
        fairness=checks.fairness,
        fairness_summary=checks.fairness_summary,
    )

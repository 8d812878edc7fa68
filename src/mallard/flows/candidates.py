"""The train flow's candidate fan-out: one Prefect task per candidate search, submitted to the
flow's own threads or to a Dask cluster (flows/runners.py), then the ensembles over the best."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from prefect import Task, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from mallard.core.catalogue import ENSEMBLES
from mallard.core.figures import figure
from mallard.core.spec import Spec
from mallard.flows import steps
from mallard.tasks.context import RunContext
from mallard.tasks.features import Features
from mallard.tasks.plan import candidates_with_baseline
from mallard.tasks.tune import SearchPlan, Tuned


def tune_all(
    spec: Spec, context: RunContext, plan: SearchPlan, dask: TaskRunner[Any] | None
) -> list[Tuned]:
    """Single candidates run concurrently as Prefect tasks (on the flow's threads, or on `dask`);
    ensembles then combine the best. Every future is resolved, so a failed candidate fails the
    flow."""
    with contextlib.ExitStack() as stack:
        if dask is None:
            submit, features = _on_flow_runner, context.features
        else:
            runner = stack.enter_context(dask)
            features = _sent_once(runner, context.features)

            def submit(task: Task[..., Tuned], **parameters: Any) -> PrefectFuture[Tuned]:
                return runner.submit(task, parameters=parameters)

        return _tune_on(submit, spec, context, plan, features)


def _sent_once(runner: Any, features: Features) -> Any:
    """The feature frame copied to every worker once (a Dask future the workers resolve to it),
    instead of pickled into every candidate task's parameters."""
    client = runner.client
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    shared = client.scatter(features, broadcast=True, hash=False)
    get_run_logger().info(
        "candidates: features (%.1f MB) sent once to each of %d Dask workers",
        features.X.estimated_size() / 1e6,
        workers,
    )
    return shared


def _on_flow_runner(task: Task[..., Tuned], **parameters: Any) -> PrefectFuture[Tuned]:
    return task.submit(**parameters)


def _tune_on(
    submit: Callable[..., PrefectFuture[Tuned]],
    spec: Spec,
    context: RunContext,
    plan: SearchPlan,
    features: Any,  # context.features, or a Dask future of it
) -> list[Tuned]:
    named = candidates_with_baseline(spec)
    singles = [(n, c) for n, c in named if c.family not in ENSEMBLES]
    split = context.split
    if split is None:
        futures = [
            submit(steps.tune_clusterer, name=n, candidate=c, features=features, plan=plan)
            for n, c in singles
        ]
    else:
        futures = [
            submit(
                steps.tune_candidate,
                name=n,
                candidate=c,
                features=features,
                train_rows=split.train,
                plan=plan,
            )
            for n, c in singles
        ]
    log = get_run_logger().info
    tuned = resolved(futures, len(named), plan.primary, log)
    if split is not None:
        combined = [
            submit(
                steps.build_ensemble,
                name=n,
                candidate=c,
                members=tuned,
                features=features,
                train_rows=split.train,
                plan=plan,
            )
            for n, c in named
            if c.family in ENSEMBLES
        ]
        tuned += resolved(combined, len(named), plan.primary, log, done_before=len(singles))
    return tuned


def resolved(
    futures: list[PrefectFuture[Tuned]],
    total: int,
    primary: str,
    log: Callable[..., None],
    done_before: int = 0,
) -> list[Tuned]:
    """Each search's result, logged as soon as it finishes (a slow search no longer holds back
    the lines of those done before it), returned in submission order so the run's rows do not
    depend on timing. A failed search raises here and fails the flow."""
    position = {future: i for i, future in enumerate(futures)}
    results: dict[int, Tuned] = {}
    for future in as_completed(futures):
        done = done_before + len(results)
        results[position[future]] = _logged(future.result(), done, total, primary, log)
    return [results[i] for i in range(len(futures))]


def _logged(result: Tuned, i: int, total: int, primary: str, log: Callable[..., None]) -> Tuned:
    score = result.cv_means.get(primary, float("nan"))
    extra = "" if result.threshold is None else f", threshold {result.threshold:.3f}"
    log(
        "tune %d/%d: %s %s = %s in %.1f s, best %s%s",
        i + 1,
        total,
        result.name,
        primary,
        figure(score),
        result.seconds,
        result.best_params,
        extra,
    )
    return result

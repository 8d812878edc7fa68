"""The table of flow steps: each is a Prefect task over one plain function of mallard.tasks,
under that function's own name, so grep finds the step wherever a flow calls it.

Inputs are frames and dataclasses, never hashed: Prefect's input cache would hash whole
DataFrames (~0.6 s per call on millions of rows) and some frames do not hash at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from mallard.tasks import (
    audit,
    champion,
    cluster,
    ensembles,
    evaluate,
    features,
    privacy,
    register,
    split,
    tune,
    uncertainty,
    validate,
)

P = ParamSpec("P")
R = TypeVar("R")


def step(name: str, task_run_name: str | None = None) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A Prefect task over a plain function, named and never input-cached."""

    return task(name=name, cache_policy=NO_CACHE, task_run_name=task_run_name)


quarantine_invalid = step(name="quarantine_invalid")(validate.quarantine_invalid)
protect_pii = step(name="protect_pii")(privacy.protect_pii)
prepare_features = step(name="prepare_features")(features.prepare_features)
make_split = step(name="make_split")(split.make_split)
tune_candidate = step(name="tune_candidate", task_run_name="tune-{name}")(tune.tune_candidate)
tune_clusterer = step(name="tune_clusterer", task_run_name="cluster-{name}")(cluster.tune_clusterer)
build_ensemble = step(name="build_ensemble", task_run_name="ensemble-{name}")(
    ensembles.build_ensemble
)
evaluation_table = step(name="evaluation_table")(evaluate.evaluation_table)
register_models = step(name="register_models")(register.register_models)
select_champion = step(name="select_champion")(uncertainty.select_champion)
finalize = step(name="finalize")(uncertainty.finalize)
champion_decision = step(name="champion_decision")(champion.champion_decision)
audit_run = step(name="audit_run")(audit.audit_run)

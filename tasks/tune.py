"""Tune one candidate: K-fold CV over its search space, then refit the best on the train split."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mallard.spec import Candidate
from mallard.tasks.families import FAMILIES, search_space
from mallard.tasks.features import Features, model_pipeline
from mallard.tasks.metrics import REGRESSION, from_score, scorers

CV_COLUMNS = {
    "candidate": pl.String,
    "family": pl.String,
    "params": pl.String,
    "fold": pl.Int32,
    "metric": pl.String,
    "value": pl.Float64,
}


@dataclass(frozen=True)
class Tuned:
    name: str
    family: str
    best_params: dict[str, Any]
    cv_results: pl.DataFrame  # one row per params x fold x metric
    cv_means: dict[str, float]  # metric -> mean over folds, for the best params
    model: Pipeline  # refitted on the whole train split
    seconds: float


def tune_candidate(
    name: str,
    candidate: Candidate,
    features: Features,
    train_rows: np.ndarray,
    folds: int,
    seed: int,
    primary_metric: str,
) -> Tuned:
    started = time.perf_counter()
    pipeline = model_pipeline(features, FAMILIES[candidate.family].make(seed))
    space = {f"model__{k}": v for k, v in search_space(candidate.family, candidate.params).items()}
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    common: dict[str, Any] = {
        "scoring": scorers(),
        "refit": primary_metric,
        "cv": cv,
        "n_jobs": 1,  # candidates already run in parallel; a second level would oversubscribe
        "error_score": "raise",
    }
    n_configs = prod(len(values) for values in space.values())
    search: GridSearchCV | RandomizedSearchCV
    if candidate.search == "random" and candidate.n_iter < n_configs:
        search = RandomizedSearchCV(
            pipeline, space, n_iter=candidate.n_iter, random_state=seed, **common
        )
    else:
        search = GridSearchCV(pipeline, space, **common)
    X = features.X[train_rows]
    y = features.y[train_rows]
    # One BLAS/OpenMP thread per candidate: the candidates themselves share the cores.
    with threadpool_limits(limits=1):
        search.fit(X, y)
    best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    return Tuned(
        name=name,
        family=candidate.family,
        best_params=best,
        cv_results=_cv_rows(name, candidate.family, search.cv_results_, folds),
        cv_means={
            metric: from_score(metric, float(search.cv_results_[f"mean_test_{metric}"][i]))
            for metric in REGRESSION
            for i in [search.best_index_]
        },
        model=search.best_estimator_,
        seconds=time.perf_counter() - started,
    )


def _cv_rows(name: str, family: str, results: dict[str, Any], folds: int) -> pl.DataFrame:
    rows = []
    for i, params in enumerate(results["params"]):
        shown = json.dumps(
            {k.removeprefix("model__"): _plain(v) for k, v in params.items()}, sort_keys=True
        )
        for fold in range(folds):
            for metric in REGRESSION:
                score = float(results[f"split{fold}_test_{metric}"][i])
                rows.append((name, family, shown, fold, metric, from_score(metric, score)))
    return pl.DataFrame(rows, schema=CV_COLUMNS, orient="row")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@task(name="tune", cache_policy=NO_CACHE, task_run_name="tune-{name}")
def tune(
    name: str,
    candidate: Candidate,
    features: Features,
    train_rows: np.ndarray,
    folds: int,
    seed: int,
    primary_metric: str,
) -> Tuned:
    return tune_candidate(name, candidate, features, train_rows, folds, seed, primary_metric)

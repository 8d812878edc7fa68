"""Tune one candidate: CV over its search space (grid, random or successive halving), refit the
best configuration on the train split, and optionally tune its decision threshold.

scikit-learn is imported inside the functions: it costs about a second at import, which every
command would pay at start-up (validate never tunes)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from mallard.core.catalogue import BASELINE
from mallard.core.errors import InputError
from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks.families import family, search_space
from mallard.tasks.features import Features, model_pipeline
from mallard.tasks.metrics import Scorer, Target, from_score, scorers
from mallard.tasks.threads import (
    fit_threads,
    recorded_single_threaded,
    search_running,
    use_openmp_threads,
)

CORES = os.cpu_count() or 1
CACHE_PREPROCESSING_ROWS = 1_000  # from this many train rows a search shares fold preprocessing
CV_COLUMNS = {
    "candidate": pl.String,
    "family": pl.String,
    "params": pl.String,
    "fold": pl.Int32,
    "metric": pl.String,
    "value": pl.Float64,
    "iteration": pl.Int32,  # successive halving round; null for grid and random search
    "n_resources": pl.Int64,  # training rows used in that round
}


@dataclass(frozen=True)
class SearchPlan:
    """What every candidate of one run shares."""

    target: Target
    primary: str
    folds: int
    seed: int
    strategy: str = "random"  # the split strategy also shapes the CV folds
    repeats: int = 1
    features: FeaturesSection = field(default_factory=FeaturesSection)
    tune_threshold: str | None = None


@dataclass(frozen=True)
class Tuned:
    name: str
    family: str
    best_params: dict[str, Any]
    cv_results: pl.DataFrame  # one row per params x fold x metric
    cv_means: dict[str, float]  # metric -> mean over folds, for the best params
    model: Any  # fitted on the whole train split (a Pipeline, or a threshold-tuned one)
    seconds: float
    threshold: float | None = None  # tuned decision threshold (binary classification)
    labels: np.ndarray | None = None  # clustering: the cluster of each row


def cv_splitter(plan: SearchPlan) -> Any:
    """K-fold as the split strategy implies: stratified for classes, grouped for groups,
    forward-chaining for time; repeated when asked (random and stratified only)."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        RepeatedKFold,
        RepeatedStratifiedKFold,
        StratifiedKFold,
        TimeSeriesSplit,
    )

    if plan.strategy == "group":
        return GroupKFold(n_splits=plan.folds)
    if plan.strategy == "time":
        return TimeSeriesSplit(n_splits=plan.folds)
    stratified = plan.target.task == "classification"
    if plan.repeats > 1:
        kind = RepeatedStratifiedKFold if stratified else RepeatedKFold
        return kind(n_splits=plan.folds, n_repeats=plan.repeats, random_state=plan.seed)
    kind = StratifiedKFold if stratified else KFold
    return kind(n_splits=plan.folds, shuffle=True, random_state=plan.seed)


def train_view(features: Features, rows: np.ndarray, plan: SearchPlan) -> tuple[Any, Any, Any]:
    """X, y and CV groups of the train rows; time order for a time split (forward chaining
    needs rows in time order)."""
    if plan.strategy == "time" and features.split_key is not None:
        rows = rows[np.argsort(features.split_key[rows], kind="stable")]
    groups = None
    if plan.strategy == "group" and features.split_key is not None:
        groups = features.split_key[rows]
    y = None if features.y is None else features.y[rows]
    return features.X[rows], y, groups


def tune_candidate(
    name: str, candidate: Candidate, features: Features, train_rows: np.ndarray, plan: SearchPlan
) -> Tuned:
    from sklearn.model_selection import TunedThresholdClassifierCV

    started = time.perf_counter()
    task = plan.target.task
    chosen = family(task, candidate.family)
    estimator = chosen.make(plan.seed)
    pipeline = model_pipeline(features, estimator, plan.features)
    space = search_space(task, candidate.family, candidate.params)
    prefix = ("model__regressor__" if plan.features.log_target else "model__") + chosen.inner
    grid = {prefix + k: v for k, v in space.items()}
    scoring = scorers(plan.target, pipeline)
    refit = candidate.scoring or plan.primary
    if refit not in scoring:
        raise InputError(
            f"[candidates] '{name}' ({candidate.family}) cannot be scored on {refit}: it has no "
            "probabilities or decision scores; choose another metric or family"
        )
    search = _search(candidate, pipeline, grid, scoring, refit, plan)
    X, y, groups = train_view(features, train_rows, plan)
    _widen_each_round(search, candidate.family, len(train_rows))
    # One BLAS/OpenMP thread per candidate while the candidates share the cores; boosting takes
    # the cores the finished ones left (tasks/threads.py).
    shared = _shared_preprocessing(pipeline, X, _configurations(candidate, grid))
    with search_running(), threadpool_limits(limits=1), shared:
        search.fit(X, y, groups=groups)
        # The cache folder goes with the search; the model keeps nothing of it.
        model, threshold = search.best_estimator_.set_params(memory=None), None
        # A constant baseline has no threshold to tune; it stays the plain reference.
        if plan.tune_threshold and plan.target.binary and candidate.family != BASELINE:
            model = TunedThresholdClassifierCV(
                model,
                scoring=threshold_scorer(plan.tune_threshold, plan.target.pos_label),
                cv=cv_splitter(plan),
                random_state=plan.seed,
            ).fit(X, y)
            threshold = float(model.best_threshold_)
    model = recorded_single_threaded(model)
    halving = candidate.search.startswith("halving")
    metrics = [refit] if halving else list(scoring)
    results = search.cv_results_
    return Tuned(
        name=name,
        family=candidate.family,
        best_params={k.removeprefix(prefix): _plain(v) for k, v in search.best_params_.items()},
        cv_results=_cv_rows(name, candidate.family, results, metrics, prefix, halving),
        cv_means={
            m: from_score(m, float(results[f"mean_test_{'score' if halving else m}"][i]))
            for m in metrics
            for i in [search.best_index_]
        },
        model=model,
        seconds=time.perf_counter() - started,
        threshold=threshold,
    )


@contextmanager
def _shared_preprocessing(pipeline: Any, X: Any, configurations: int) -> Iterator[None]:
    """While the search runs, every configuration fitted on the same fold rows shares one fit of
    the preprocessing (scikit-learn's Pipeline `memory`: the fitted steps before the model,
    cached on disk by their parameters and rows). The search varies only the model's
    parameters, so a fold's imputer, encoder, scaler and PCA are the same for all of them.
    Measured (generated housing, ridge, 7 alphas x 3 folds): at 700k rows a pipeline fit took
    5.3 s of which the ridge 0.3 s; the grid at 200k rows 27.5 -> 12.9 s, at 4,000 rows
    0.78 -> 0.41 s, at 500 rows 0.60 -> 0.65 s (hashing the rows costs more than it saves).
    One configuration has nothing to share: at 10M rows (a 1M-row sample) the cache's writes
    took the dummy baseline's search from 22 to 36 s."""
    if X.shape[0] < CACHE_PREPROCESSING_ROWS or configurations < 2:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="mallard-folds-") as folder:
        pipeline.set_params(memory=folder)
        try:
            yield
        finally:
            pipeline.set_params(memory=None)


def _configurations(candidate: Candidate, grid: dict[str, list[Any]]) -> int:
    """How many configurations the search fits on each fold."""
    n_configs = prod(len(values) for values in grid.values())
    if candidate.search in ("random", "halving_random"):
        return min(candidate.n_iter, n_configs)
    return n_configs


def _widen_each_round(search: Any, family_name: str, n_rows: int) -> None:
    """Before each round of `search` (one for grid and random search, one per successive-halving
    iteration; the last also covers the refit), set the thread count threads.fit_threads allows
    then. `_run_search` is scikit-learn's documented hook for how a search runs its rounds."""
    run_search = search._run_search

    # scikit-learn 1.9 passes callback_ctx only to a _run_search whose signature names it.
    def each_round(evaluate_candidates: Callable[..., Any], callback_ctx: Any = None) -> Any:
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            use_openmp_threads(fit_threads(family_name, n_rows))
            return evaluate_candidates(*args, **kwargs)

        return run_search(evaluate, callback_ctx=callback_ctx)

    search._run_search = each_round


def _search(
    candidate: Candidate,
    pipeline: Any,
    grid: dict[str, list[Any]],
    scoring: dict[str, Scorer],
    refit: str,
    plan: SearchPlan,
) -> Any:
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (registers them)
    from sklearn.model_selection import (
        GridSearchCV,
        HalvingGridSearchCV,
        HalvingRandomSearchCV,
        RandomizedSearchCV,
    )

    cv = cv_splitter(plan)
    common: dict[str, Any] = {
        "cv": cv,
        # Parallelism at one level: the candidates (the flow's task threads), folds in turn.
        # Folds in joblib's loky workers as well broke runs: joblib keeps ONE loky executor per
        # process and does not support concurrent searches on it; when one search failed, it
        # shut the executor down under the others ("The executor underlying Parallel has been
        # shutdown"), and kill -9 of mallard left the workers behind. Measured on the housing
        # example (2,000 rows, shipped candidates + baseline, 2 cores under load ~8-11): 31-37 s
        # with candidates in parallel, 52-59 s with folds in parallel and candidates taking turns,
        # 56 s with both (the old shared executor).
        "n_jobs": 1,
        "error_score": "raise",
    }
    n_configs = prod(len(values) for values in grid.values())
    n_iter = min(candidate.n_iter, n_configs)
    if candidate.search == "halving":
        return HalvingGridSearchCV(
            pipeline, grid, scoring=scoring[refit], random_state=plan.seed, **common
        )
    if candidate.search == "halving_random":
        return HalvingRandomSearchCV(
            pipeline,
            grid,
            n_candidates=n_iter,
            # The last round trains on (nearly) every train row, as in the grid variant; the
            # default would start at a handful of rows and stop after n_iter's rounds on a tiny
            # subset, choosing the winner (and reporting its CV score) from very small fits.
            min_resources="exhaust",
            scoring=scoring[refit],
            random_state=plan.seed,
            **common,
        )
    if candidate.search == "random" and n_iter < n_configs:
        return RandomizedSearchCV(
            pipeline,
            grid,
            n_iter=n_iter,
            scoring=scoring,
            refit=refit,
            random_state=plan.seed,
            **common,
        )
    return GridSearchCV(pipeline, grid, scoring=scoring, refit=refit, **common)


def threshold_scorer(objective: str, pos_label: Any) -> Any:
    """The score TunedThresholdClassifierCV maximises over thresholds."""
    from sklearn.metrics import f1_score, make_scorer

    if objective == "balanced_accuracy":
        return objective
    if objective == "f1":
        return make_scorer(f1_score, pos_label=pos_label, zero_division=0)
    kind, _, floor = objective.partition(":")
    return make_scorer(_constrained, pos_label=pos_label, kind=kind, floor=float(floor))


def _constrained(
    y_true: np.ndarray, y_pred: np.ndarray, pos_label: Any, kind: str, floor: float
) -> float:
    """Maximise recall subject to precision >= floor (or the reverse). Thresholds that miss the
    floor score below every threshold that meets it, closest-to-the-floor first."""
    from sklearn.metrics import precision_score, recall_score

    precision = precision_score(y_true, y_pred, pos_label=pos_label, zero_division=0)
    recall = recall_score(y_true, y_pred, pos_label=pos_label, zero_division=0)
    goal, bound = (recall, precision) if kind == "max_recall_at_precision" else (precision, recall)
    return float(goal if bound >= floor else bound - 1.0)


def _cv_rows(
    name: str,
    family_name: str,
    results: dict[str, Any],
    metrics: list[str],
    prefix: str,
    halving: bool,
) -> pl.DataFrame:
    n_splits = sum(
        1
        for key in results
        if key.startswith("split")
        and key.endswith("_test_score" if halving else f"_test_{metrics[0]}")
    )
    rows = []
    for i, params in enumerate(results["params"]):
        shown = json.dumps(
            {k.removeprefix(prefix): _plain(v) for k, v in params.items()}, sort_keys=True
        )
        iteration = int(results["iter"][i]) if halving else None
        resources = int(results["n_resources"][i]) if halving else None
        for fold in range(n_splits):
            for metric in metrics:
                key = f"split{fold}_test_{'score' if halving else metric}"
                value = from_score(metric, float(results[key][i]))
                rows.append((name, family_name, shown, fold, metric, value, iteration, resources))
    return pl.DataFrame(rows, schema=CV_COLUMNS, orient="row")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value

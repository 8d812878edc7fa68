"""Stacking and voting ensembles built from a run's best tuned candidates.

They are cross-validated on the same folds as their members, so their CV scores sit in the same
leaderboard; each member keeps its tuned hyperparameters and is refitted inside every fold.

scikit-learn is imported when an ensemble is built, not with the module: it costs ~1 s of every
command's start-up (the flows import this module), and only runs with an ensemble need it here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from mallard.core.catalogue import greater_is_better
from mallard.core.errors import InputError
from mallard.core.spec import Candidate
from mallard.tasks.features import Features
from mallard.tasks.metrics import from_score, scorers
from mallard.tasks.tune import CV_COLUMNS, SearchPlan, Tuned, cv_splitter, train_view

DEFAULT_TOP = 3
INNER_FOLDS = 3  # stacking's own CV for the meta-learner; kept small, it runs inside each fold


def build_ensemble(
    name: str,
    candidate: Candidate,
    members: list[Tuned],
    features: Features,
    train_rows: np.ndarray,
    plan: SearchPlan,
) -> Tuned:
    from sklearn.base import clone
    from sklearn.model_selection import cross_validate

    started = time.perf_counter()
    top = int(candidate.params.get("top", [DEFAULT_TOP])[0])
    chosen = _best(members, plan.primary, top)
    if len(chosen) < 2:
        raise InputError(
            f"[candidates] '{name}' ({candidate.family}) needs at least two tuned candidates "
            f"to combine; the run has {len(chosen)}"
        )
    estimators = [(t.name, clone(_base(t.model))) for t in chosen]
    ensemble = _ensemble(candidate.family, estimators, plan)
    scoring = scorers(plan.target, ensemble)
    X, y, groups = train_view(features, train_rows, plan)
    with threadpool_limits(limits=1):
        results = cross_validate(
            ensemble,
            X,
            y,
            groups=groups,
            cv=cv_splitter(plan),
            scoring=scoring,
            error_score="raise",
        )
        ensemble.fit(X, y)
    params = json.dumps({"members": [t.name for t in chosen]})
    n_splits = len(results["fit_time"])
    rows = [
        (
            name,
            candidate.family,
            params,
            fold,
            metric,
            from_score(metric, float(results[f"test_{metric}"][fold])),
            None,
            None,
        )
        for fold in range(n_splits)
        for metric in scoring
    ]
    return Tuned(
        name=name,
        family=candidate.family,
        best_params={"members": [t.name for t in chosen]},
        cv_results=pl.DataFrame(rows, schema=CV_COLUMNS, orient="row"),
        cv_means={m: from_score(m, float(np.mean(results[f"test_{m}"]))) for m in scoring},
        model=ensemble,
        seconds=time.perf_counter() - started,
    )


def _best(members: list[Tuned], primary: str, top: int) -> list[Tuned]:
    scored = [t for t in members if primary in t.cv_means]
    scored.sort(key=lambda t: t.cv_means[primary], reverse=greater_is_better(primary))
    return scored[:top]


def _base(model: Any) -> Any:
    """A threshold-tuned member joins as its underlying pipeline."""
    return getattr(model, "estimator", model) if hasattr(model, "best_threshold_") else model


def _ensemble(kind: str, estimators: list[tuple[str, Any]], plan: SearchPlan) -> Any:
    from sklearn.ensemble import (
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
        VotingRegressor,
    )
    from sklearn.linear_model import LogisticRegression, RidgeCV

    classification = plan.target.task == "classification"
    if kind == "stacking":
        if classification:
            return StackingClassifier(
                estimators, final_estimator=LogisticRegression(max_iter=2000), cv=INNER_FOLDS
            )
        return StackingRegressor(estimators, final_estimator=RidgeCV(), cv=INNER_FOLDS)
    if classification:
        soft = all(hasattr(e, "predict_proba") for _, e in estimators)
        return VotingClassifier(estimators, voting="soft" if soft else "hard")
    return VotingRegressor(estimators)

"""Explain and audit a train run: permutation importance and the fairness audit, on the test
split, for the run's best model (importance for every model when it is cheap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from mallard.core.catalogue import BASELINE
from mallard.core.spec import FairnessSection
from mallard.tasks.context import RunContext
from mallard.tasks.evaluate import model_id
from mallard.tasks.fairness import fairness_summary, fairness_table
from mallard.tasks.importance import permutation_importance_table
from mallard.tasks.metrics import scorers
from mallard.tasks.tune import Tuned

CHEAP_CELLS = 200_000  # test rows x features below which every model gets its importance
REPEATS = 5
# Test rows the importance is measured on: a seeded sample beyond this. At 200k rows the 24k
# test rows made the best model's importance 35 s of a 170 s run; 5,000 rows rank the features
# the same way with slightly wider error bars (the report says so).
IMPORTANCE_MAX_ROWS = 5_000


@dataclass(frozen=True)
class Audit:
    importance: pl.DataFrame | None  # model_id, feature, importance_mean, importance_std, rank
    fairness: pl.DataFrame | None  # model_id, attribute, group, metric, value
    fairness_summary: pl.DataFrame | None  # model_id, attribute, metric, value, ..., status


NO_AUDIT = Audit(importance=None, fairness=None, fairness_summary=None)


def audit_run(
    run: RunContext, *, tuned: list[Tuned], best_id: str, fairness: FairnessSection
) -> Audit:
    if run.split is None:  # clustering: nothing to explain against a target
        return NO_AUDIT
    features, split = run.features, run.split
    assert features.y is not None
    X, y = features.X[split.test], features.y[split.test]
    shown = np.arange(X.height)
    if X.height > IMPORTANCE_MAX_ROWS:
        rng = np.random.default_rng(run.seed)
        shown = np.sort(rng.choice(X.height, size=IMPORTANCE_MAX_ROWS, replace=False))
    X_shown, y_shown = X[shown], y[shown]
    cheap = X_shown.height * X_shown.width <= CHEAP_CELLS
    explained = []
    for result in tuned:
        mid = model_id(run.run_id, result.name)
        if result.family == BASELINE or (mid != best_id and not cheap):
            continue
        scoring = scorers(run.target, result.model)
        if run.primary not in scoring:  # e.g. a hard-voting ensemble has no roc_auc scores
            continue
        scorer = scoring[run.primary]
        ranked = permutation_importance_table(
            result.model, X_shown, y_shown, scorer, REPEATS, run.seed
        )
        explained.append(ranked.with_columns(pl.lit(mid).alias("model_id")))
    importance = pl.concat(explained) if explained else None
    table: pl.DataFrame | None = None
    summary: pl.DataFrame | None = None
    if fairness.sensitive:
        best = next(t for t in tuned if model_id(run.run_id, t.name) == best_id)
        predicted = best.model.predict(X)
        groups = {name: features.audit[name][split.test] for name in fairness.sensitive}
        kind: Literal["classification", "regression"] = (
            "classification" if run.target.task == "classification" else "regression"
        )
        pos_label = run.target.pos_label
        tagged = pl.lit(best_id).alias("model_id")
        table = fairness_table(y, predicted, groups, kind, pos_label).with_columns(tagged)
        summary = fairness_summary(
            y, predicted, groups, kind, fairness.max_disparity, pos_label
        ).with_columns(tagged)
    return Audit(importance=importance, fairness=table, fairness_summary=summary)

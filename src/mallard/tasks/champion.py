"""The champion rule inside a train run: measure the current champion on this run's test rows
(or, for clustering, all rows) and let tasks.promote decide."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from mallard.core.errors import InputError, MallardError
from mallard.core.spec import PromoteSection
from mallard.tasks.audit import RunContext
from mallard.tasks.metrics import clustering_metrics, score_all, scorers
from mallard.tasks.model_files import load_model_row
from mallard.tasks.promote import Decision, decide


def champion_decision(
    run: RunContext,
    *,
    pipeline: str,
    best_id: str,
    metrics: pl.DataFrame,
    champion: dict[str, Any] | None,
    rule: PromoteSection,
    may_promote: bool,
) -> Decision:
    """Whether `best_id` replaces `champion` (an ml.models row read before the run started)."""
    judged_on = "all" if run.split is None else "test"
    model_value = metrics.filter(
        (pl.col("model_id") == best_id)
        & (pl.col("split") == judged_on)
        & (pl.col("metric") == run.primary)
    )["value"][0]
    champion_value, problem = None, None
    if champion is not None:
        try:
            champion_value = measure(run, champion)
        except MallardError as exc:
            problem = str(exc)
        except (KeyError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
            # e.g. the champion was trained on columns this data no longer has
            problem = f"it cannot score this run's rows ({exc})"
    return decide(
        pipeline=pipeline,
        model_id=best_id,
        model_value=model_value,
        metric=run.primary,
        policy=rule.policy if may_promote else "never",
        min_improvement=rule.min_improvement,
        champion_model_id=None if champion is None else champion["model_id"],
        champion_value=champion_value,
        champion_problem=problem,
    )


def measure(run: RunContext, champion: dict[str, Any]) -> float:
    """The champion's primary metric on the rows the new models were judged on."""
    model = load_model_row(champion)
    columns = json.loads(str(champion["feature_names"]))
    features = run.features
    if run.split is None:
        X = features.X.select(columns)
        labels = np.asarray(model.predict(X))  # agglomerative has no predict: AttributeError
        return clustering_metrics(model[:-1].transform(X), labels, run.seed)[run.primary]
    assert features.y is not None
    X, y = features.X[run.split.test].select(columns), features.y[run.split.test]
    scoring = scorers(run.target, model)
    if run.primary not in scoring:
        raise InputError(f"the champion cannot be scored on {run.primary}")
    return score_all({run.primary: scoring[run.primary]}, model, X, y)[run.primary]

"""The champion rule inside a train run: measure the current champion on this run's test rows
(or, for clustering, all rows) and let tasks.promote decide."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from mallard.core.errors import InputError, MallardError
from mallard.core.spec import PromoteSection
from mallard.tasks.context import RunContext
from mallard.tasks.metrics import clustering_metrics, score_all, scorers
from mallard.tasks.model_files import load_model_row
from mallard.tasks.promote import Decision, decide

NORMAL_95 = 1.959964  # the normal quantile of a two-sided 95 % interval


def champion_decision(
    run: RunContext,
    *,
    pipeline: str,
    best_id: str,
    deployed_id: str,
    metrics: pl.DataFrame,
    champion: dict[str, Any] | None,
    champion_evaluated: dict[str, Any] | None,
    rule: PromoteSection,
    may_promote: bool,
) -> Decision:
    """Whether `deployed_id` (the finalized refit of `best_id`, or `best_id` itself) replaces
    `champion` (an ml.models row read before the run started).

    Like is compared with like: `best_id` was fitted without the test rows, so the champion is
    measured through its own evaluated model (`champion_evaluated`, fitted the same way) when it
    is a finalized refit; a refit may have seen these very test rows."""
    judged_on = "all" if run.split is None else "test"
    judged = metrics.filter(
        (pl.col("model_id") == best_id)
        & (pl.col("split") == judged_on)
        & (pl.col("metric") == run.primary)
    ).row(0, named=True)
    model_value = judged["value"]
    champion_value, problem = None, None
    if champion is not None:
        try:
            champion_value = measure(run, champion_evaluated or champion)
        except MallardError as exc:
            problem = str(exc)
        except (KeyError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
            # e.g. the champion was trained on columns this data no longer has
            problem = f"it cannot score this run's rows ({exc})"
    return decide(
        pipeline=pipeline,
        model_id=deployed_id,
        model_value=model_value,
        metric=run.primary,
        policy=rule.policy if may_promote else "never",
        min_improvement=required_gain(
            rule.min_improvement, judged.get("ci_low"), judged.get("ci_high")
        ),
        champion_model_id=None if champion is None else champion["model_id"],
        champion_value=champion_value,
        champion_problem=problem,
    )


def required_gain(rule: float | str, ci_low: float | None, ci_high: float | None) -> float:
    """The spec's min_improvement in the metric's units: "<k>se" is k standard errors of the
    new model's test metric, read off its bootstrap 95 % interval (width = 2 x 1.96 se)."""
    if not isinstance(rule, str):
        return float(rule)
    k = float(rule.removesuffix("se"))
    if ci_low is None or ci_high is None:
        return 0.0  # clustering has no interval: nothing to scale by
    return k * (ci_high - ci_low) / (2 * NORMAL_95)


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

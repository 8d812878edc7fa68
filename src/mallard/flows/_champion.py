"""The champion rule inside a train run: measure the current champion on this run's test rows
(or, for clustering, all rows) and let tasks.promote.decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mallard import warehouse
from mallard.core.errors import MallardError
from mallard.core.spec import Spec
from mallard.tasks.features import Features
from mallard.tasks.metrics import Target, clustering_metrics, score_all, scorers
from mallard.tasks.model_files import load_model
from mallard.tasks.promote import Decision, decide
from mallard.tasks.split import Split


def champion_decision(
    spec: Spec,
    db: Path,
    run_id: str,
    model_id: str,
    metrics: pl.DataFrame,
    features: Features,
    split: Split | None,
    target: Target,
    may_promote: bool,
) -> Decision:
    primary = spec.primary_metric
    judged_on = "all" if split is None else "test"
    model_value = metrics.filter(
        (pl.col("model_id") == model_id)
        & (pl.col("split") == judged_on)
        & (pl.col("metric") == primary)
    )["value"][0]
    champion = warehouse.champion(db, spec.pipeline.name, ignore_run_id=run_id)
    champion_value, problem = None, None
    if champion is not None:
        try:
            champion_value = measure(champion, features, split, target, primary, spec.pipeline.seed)
        except MallardError as exc:
            problem = str(exc)
        except (KeyError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
            # e.g. the champion was trained on columns this data no longer has
            problem = f"it cannot score this run's rows ({exc})"
    return decide(
        pipeline=spec.pipeline.name,
        model_id=model_id,
        model_value=model_value,
        metric=primary,
        policy=spec.promote.policy if may_promote else "never",
        min_improvement=spec.promote.min_improvement,
        champion_model_id=None if champion is None else champion["model_id"],
        champion_value=champion_value,
        champion_problem=problem,
    )


def measure(
    champion: dict[str, Any],
    features: Features,
    split: Split | None,
    target: Target,
    metric: str,
    seed: int,
) -> float:
    """The champion's `metric` on the rows the new models were judged on."""
    model = load_model(
        champion["skops_blob"], str(champion["sha256"]), json.loads(str(champion["trusted_types"]))
    )
    columns = json.loads(str(champion["feature_names"]))
    if split is None:
        X = features.X.select(columns)
        labels = np.asarray(model.predict(X))  # agglomerative has no predict: AttributeError
        return clustering_metrics(model[:-1].transform(X), labels, seed)[metric]
    assert features.y is not None
    X, y = features.X[split.test].select(columns), features.y[split.test]
    scoring = scorers(target, model)
    if metric not in scoring:
        raise MallardError(f"the champion cannot be scored on {metric}")
    return score_all({metric: scoring[metric]}, model, X, y)[metric]

"""Clustering: fit each configuration on every valid row, judge it by internal validity
(silhouette, Davies-Bouldin, Calinski-Harabasz), and describe the segments of the best.

scikit-learn is imported when a clusterer is tuned, not with the module: it costs ~1 s of every
command's start-up (the flows import this module), and only clustering runs need it here."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from mallard.core.catalogue import greater_is_better
from mallard.core.spec import Candidate
from mallard.tasks.evaluate import model_id
from mallard.tasks.families import family, search_space
from mallard.tasks.features import Features, model_pipeline
from mallard.tasks.metrics import clustering_metrics
from mallard.tasks.tune import CV_COLUMNS, SearchPlan, Tuned


def tune_clusterer(name: str, candidate: Candidate, features: Features, plan: SearchPlan) -> Tuned:
    """No folds here: each configuration is one fit on all rows (stored as fold 0)."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    started = time.perf_counter()
    space = search_space("clustering", candidate.family, candidate.params)
    configs: list[dict[str, Any]] = list(ParameterGrid(space))
    if candidate.search in ("random", "halving_random") and candidate.n_iter < len(configs):
        configs = list(ParameterSampler(space, n_iter=candidate.n_iter, random_state=plan.seed))
    rows, fitted = [], []
    metric = candidate.scoring or plan.primary
    with threadpool_limits(limits=1):
        for params in configs:
            pipeline = model_pipeline(
                features, family("clustering", candidate.family).make(plan.seed), plan.features
            )
            pipeline.set_params(**{f"model__{k}": v for k, v in params.items()})
            pipeline.fit(features.X)
            labels = np.asarray(pipeline.named_steps["model"].labels_)
            scores = clustering_metrics(pipeline[:-1].transform(features.X), labels, plan.seed)
            shown = json.dumps(params, sort_keys=True)
            rows += [
                (name, candidate.family, shown, 0, m, v, None, None) for m, v in scores.items()
            ]
            fitted.append((params, scores, pipeline, labels))
    sign = 1.0 if greater_is_better(metric) else -1.0
    best = max(fitted, key=lambda f: sign * np.nan_to_num(f[1][metric], nan=-np.inf * sign))
    params, scores, pipeline, labels = best
    return Tuned(
        name=name,
        family=candidate.family,
        best_params=params,
        cv_results=pl.DataFrame(rows, schema=CV_COLUMNS, orient="row"),
        cv_means=scores,
        model=pipeline,
        seconds=time.perf_counter() - started,
        labels=labels,
    )


def cluster_tables(
    model_id: str, labels: np.ndarray, features: Features, row_index: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Assignments (input row -> cluster) and profiles (size and mean of every numeric input
    feature per cluster), so an analyst can describe each segment in SQL."""
    assignments = pl.DataFrame(
        {"model_id": model_id, "row_index": row_index, "cluster": labels.astype(np.int32)}
    )
    numeric = features.X.select(features.numeric).with_columns(
        pl.Series("cluster", labels.astype(np.int32))
    )
    sizes = numeric.group_by("cluster").len("n_rows")
    means = (
        numeric.group_by("cluster")
        .mean()
        .unpivot(index="cluster", variable_name="feature", value_name="mean")
    )
    profiles = (
        means.join(sizes, on="cluster")
        .with_columns(pl.lit(model_id).alias("model_id"), pl.col("mean").cast(pl.Float64))
        .select("model_id", "cluster", "n_rows", "feature", "mean")
        .sort("cluster", "feature")
    )
    return assignments, profiles


def segment_tables(
    run_id: str, tuned: list[Tuned], features: Features, row_index: pl.Series
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """ml.cluster_assignments and ml.cluster_profiles of every clustering candidate of a run."""
    pairs = [
        cluster_tables(model_id(run_id, t.name), t.labels, features, row_index)
        for t in tuned
        if t.labels is not None
    ]
    if not pairs:
        return None, None
    return pl.concat([a for a, _ in pairs]), pl.concat([p for _, p in pairs])

"""Score each tuned candidate on the validation and test splits, in long form."""

from __future__ import annotations

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mallard.tasks.features import Features
from mallard.tasks.metrics import regression_metrics
from mallard.tasks.split import Split
from mallard.tasks.tune import Tuned

METRIC_COLUMNS = {
    "model_id": pl.String,
    "family": pl.String,
    "split": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}


def model_id(run_id: str, candidate: str) -> str:
    return f"{run_id}:{candidate}"


def evaluation_table(
    run_id: str, tuned: list[Tuned], features: Features, split: Split
) -> pl.DataFrame:
    """cv (mean over folds of the best params), validation and test metrics of every candidate."""
    rows = []
    for result in tuned:
        mid = model_id(run_id, result.name)
        rows += [(mid, result.family, "cv", m, v) for m, v in result.cv_means.items()]
        for split_name, positions in (("validation", split.validation), ("test", split.test)):
            predicted = result.model.predict(features.X[positions])
            scores = regression_metrics(features.y[positions], predicted)
            rows += [(mid, result.family, split_name, m, v) for m, v in scores.items()]
    return pl.DataFrame(rows, schema=METRIC_COLUMNS, orient="row")


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(run_id: str, tuned: list[Tuned], features: Features, split: Split) -> pl.DataFrame:
    return evaluation_table(run_id, tuned, features, split)

"""Permutation importance of the user's input columns, measured on the whole fitted Pipeline.

Shuffling a raw column before the preprocessing means the importance of "city" is one number,
not one per one-hot column, and it is computed the same way for every model family.

The shuffled copies of a column (one per repeat) are stacked and predicted in one call, and the
scorer reads each copy's rows back from those outputs (tasks/replay.py). scikit-learn's
permutation_importance predicts once per column and repeat: on a few hundred test rows the
Pipeline's fixed cost per call (~10-30 ms) was most of a small run's audit.

scikit-learn (and Replay, a scikit-learn estimator) is imported when the table is computed, not
with the module: it costs ~1 s of every command's start-up, and only train runs audit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from mallard.core.errors import InputError

IMPORTANCE_SCHEMA = {
    "feature": pl.String,
    "importance_mean": pl.Float64,
    "importance_std": pl.Float64,
    "rank": pl.Int64,
}
STACKED_CELLS = 4_000_000  # cells of shuffled copies predicted in one call


def permutation_importance_table(
    model: Any,
    X: pl.DataFrame,
    y: np.ndarray | pl.Series,
    scoring: str | Callable[..., float],
    n_repeats: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """feature, importance_mean, importance_std (drop in `scoring` when the column is shuffled,
    over `n_repeats` seeded shuffles), rank: 1 = most important, ties in column order."""
    from sklearn.metrics import check_scoring

    from mallard.tasks.replay import Replay

    if X.height == 0 or X.width == 0:
        raise InputError("permutation importance needs at least one row and one column")
    truth = y.to_numpy() if isinstance(y, pl.Series) else np.asarray(y)
    scorer = check_scoring(model, scoring=scoring)
    baseline = float(scorer(model, X, truth))
    rng = np.random.default_rng(seed)
    n = X.height
    per_call = max(1, min(n_repeats, STACKED_CELLS // (n * X.width)))
    drops = np.empty((X.width, n_repeats))
    for j, name in enumerate(X.columns):
        orders = [rng.permutation(n) for _ in range(n_repeats)]
        for start in range(0, n_repeats, per_call):
            chunk = orders[start : start + per_call]
            stacked = pl.concat([X.with_columns(X[name].gather(order)) for order in chunk])
            replay = Replay(model, stacked)
            for k in range(len(chunk)):
                rows = np.arange(k * n, (k + 1) * n).reshape(-1, 1)
                drops[j, start + k] = baseline - float(scorer(replay, rows, truth))
    table = pl.DataFrame(
        {
            "feature": X.columns,
            "importance_mean": drops.mean(axis=1),
            "importance_std": drops.std(axis=1),
        }
    ).with_columns(pl.col("importance_mean", "importance_std").fill_nan(None))
    return (
        table.sort("importance_mean", descending=True, nulls_last=True, maintain_order=True)
        .with_row_index("rank", offset=1)
        .select("feature", "importance_mean", "importance_std", pl.col("rank").cast(pl.Int64))
    )

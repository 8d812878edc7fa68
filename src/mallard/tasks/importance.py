"""Permutation importance of the user's input columns, measured on the whole fitted Pipeline.

Shuffling a raw column before the preprocessing means the importance of "city" is one number,
not one per one-hot column, and it is computed the same way for every model family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sklearn.inspection import permutation_importance

from mallard.core.errors import InputError

IMPORTANCE_SCHEMA = {
    "feature": pl.String,
    "importance_mean": pl.Float64,
    "importance_std": pl.Float64,
    "rank": pl.Int64,
}


def permutation_importance_table(
    model: Any,
    X: pl.DataFrame,
    y: np.ndarray | pl.Series,
    scoring: str | Callable[..., float],
    n_repeats: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """feature, importance_mean, importance_std (drop in `scoring` when the column is shuffled,
    over `n_repeats` shuffles), rank: 1 = most important, ties in column order."""
    if X.height == 0 or X.width == 0:
        raise InputError("permutation importance needs at least one row and one column")
    result = permutation_importance(
        model,
        _as_pandas(X),
        y.to_numpy() if isinstance(y, pl.Series) else np.asarray(y),
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=seed,
        # One process: the flow already runs candidates in parallel, and nested workers would
        # oversubscribe the cores (see STACK-NOTES, nested parallelism).
        n_jobs=None,
    )
    table = pl.DataFrame(
        {
            "feature": X.columns,
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    ).with_columns(pl.col("importance_mean", "importance_std").fill_nan(None))
    return (
        table.sort("importance_mean", descending=True, nulls_last=True, maintain_order=True)
        .with_row_index("rank", offset=1)
        .select("feature", "importance_mean", "importance_std", pl.col("rank").cast(pl.Int64))
    )


def _as_pandas(X: pl.DataFrame) -> pd.DataFrame:
    """X as pandas, because permutation_importance turns anything without `.iloc` into a NumPy
    array (scikit-learn 1.9), after which the Pipeline's ColumnTransformer can no longer select
    columns by name. Text columns are built as object dtype so a null stays None, the missing
    marker the fitted categorical imputer expects (polars' to_pandas would give pandas 3's
    string dtype with NaN, which that imputer does not treat as missing)."""
    return pd.DataFrame(
        {
            name: pd.Series(column.to_numpy(), dtype=None if column.dtype.is_numeric() else object)
            for name, column in X.to_dict().items()
        }
    )

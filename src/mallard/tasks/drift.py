"""Population stability index (PSI): profile the reference data once, then score new data
against the stored bins. Pure functions over Polars, so a profile can live in any table.

Profile layout, one row per bin, bins numbered from 0 per feature:
- numeric: quantile bins, right-closed, the first open to -inf and the last to +inf (open ends
  have a null lower / upper), then always one last bin for nulls and NaN, category "__null__";
- categorical: one bin per reference category, most frequent first, then "__other__" for
  categories never seen at reference time (fraction 0 there) and "__null__" for nulls.
The special bins are found by position (last, or last two), never by name, so a real category
spelled "__other__" cannot be confused with the bucket.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mallard.core.errors import InputError

PREDICTION = "__prediction__"
OTHER = "__other__"
NULL = "__null__"

PSI_WATCH = 0.1  # psi below this is "stable"
PSI_SHIFTED = 0.25  # psi at or above this is "shifted"; in between is "watch"
# An empty bin on either side makes ln(p_new / p_ref) infinite; 1e-4 stands for "almost never"
# (well under one row in a thousand) so a bin that appears or vanishes counts as strong drift
# without one such bin swamping every other feature in the table.
EPSILON = 1e-4

PROFILE_SCHEMA = {
    "feature": pl.String,
    "kind": pl.String,
    "bin": pl.Int64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "category": pl.String,
    "fraction": pl.Float64,
}
PSI_SCHEMA = {"feature": pl.String, "psi": pl.Float64, "status": pl.String}

Row = tuple[str, str, int, float | None, float | None, str | None, float]


def reference_profile(
    X: pl.DataFrame, numeric: list[str], categorical: list[str], bins: int = 10
) -> pl.DataFrame:
    """Bin edges / categories and the fraction of reference rows in each bin, per feature."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    _require_columns(X, [*numeric, *categorical])
    if X.height == 0:
        raise InputError("cannot profile drift on an empty reference frame")
    rows: list[Row] = []
    for name in numeric:
        rows.extend(_numeric_rows(name, _as_float(X[name]), bins))
    for name in categorical:
        rows.extend(_categorical_rows(name, X[name].cast(pl.String)))
    return pl.DataFrame(rows, schema=PROFILE_SCHEMA, orient="row")


def prediction_profile(predictions: np.ndarray | pl.Series, bins: int = 10) -> pl.DataFrame:
    """A numeric profile of model predictions, under the feature name "__prediction__"."""
    return reference_profile(_prediction_frame(predictions), [PREDICTION], [], bins)


def psi_table(
    profile: pl.DataFrame,
    X_new: pl.DataFrame,
    predictions: np.ndarray | pl.Series | None = None,
) -> pl.DataFrame:
    """PSI and status per profiled feature. "__prediction__" is scored only if predictions are
    given (a feature-only check then simply skips it)."""
    features = _profiled(profile, predictions is not None)
    if predictions is not None:
        _prediction_frame(predictions)  # raises when there are none
    _require_columns(X_new, [name for name in features if name != PREDICTION])
    if X_new.height == 0:
        raise InputError("cannot compute drift on an empty frame")
    return psi_from_counts(profile, bin_counts(profile, X_new, predictions))


def bin_counts(
    profile: pl.DataFrame,
    X_new: pl.DataFrame,
    predictions: np.ndarray | pl.Series | None = None,
) -> dict[str, np.ndarray]:
    """Rows of `X_new` (and `predictions`) in each profiled bin, per feature, in profile order.
    Counts of batches add up (`add_counts`) to the counts of all their rows, so drift over a
    file scored in batches is `psi_from_counts` of the sum: the same figures as `psi_table`."""
    features = _profiled(profile, predictions is not None)
    predicted = None
    if predictions is not None:
        predicted = pl.Series(PREDICTION, np.asarray(predictions, dtype=np.float64).ravel())
    _require_columns(X_new, [name for name in features if name != PREDICTION])
    counts = {}
    for name in features:
        bins = profile.filter(pl.col("feature") == name).sort("bin")
        column = predicted if predicted is not None and name == PREDICTION else X_new[name]
        if bins["kind"][0] == "numeric":
            counts[name] = _numeric_counts(_as_float(column), _edges(bins))
        else:
            counts[name] = _categorical_counts(column.cast(pl.String), bins)
    return counts


def add_counts(
    total: dict[str, np.ndarray] | None, batch: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """`total` plus one batch's `bin_counts` (None: nothing counted yet)."""
    if total is None:
        return dict(batch)
    return {name: total[name] + batch[name] for name in total}


def psi_from_counts(profile: pl.DataFrame, counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """PSI and status per feature from its bin counts (`bin_counts`, summed over batches)."""
    rows = []
    for name, counted in counts.items():
        total = int(counted.sum())
        if total == 0:
            raise InputError("cannot compute drift on an empty frame")
        reference = profile.filter(pl.col("feature") == name).sort("bin")["fraction"]
        psi = psi_value(reference.to_numpy(), counted / total)
        rows.append((name, psi, status(psi)))
    return pl.DataFrame(rows, schema=PSI_SCHEMA, orient="row")


def _profiled(profile: pl.DataFrame, with_predictions: bool) -> list[str]:
    """The profile's features, in its order; "__prediction__" only `with_predictions`."""
    features = profile["feature"].unique(maintain_order=True).to_list()
    if with_predictions:
        if PREDICTION not in features:
            raise InputError("predictions were given but the profile has no prediction bins")
    elif PREDICTION in features:
        features.remove(PREDICTION)
    return features


def psi_value(reference: np.ndarray, new: np.ndarray) -> float:
    """sum((p_new - p_ref) * ln(p_new / p_ref)) over bins, empty bins raised to EPSILON."""
    p_ref = np.clip(reference, EPSILON, None)
    p_new = np.clip(new, EPSILON, None)
    return float(np.sum((p_new - p_ref) * np.log(p_new / p_ref)))


def status(psi: float) -> str:
    if psi < PSI_WATCH:
        return "stable"
    return "watch" if psi < PSI_SHIFTED else "shifted"


def _numeric_rows(name: str, values: pl.Series, bins: int) -> list[Row]:
    present = values.drop_nulls().to_numpy()
    # Interior quantiles only: the outer bins stay open so any future value has a bin. Ties
    # (a constant or few-valued column) collapse to one edge instead of empty zero-width bins.
    edges = (
        np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        if present.size
        else np.array([])
    )
    fractions = _numeric_fractions(values, edges)
    lowers: list[float | None] = [None, *map(float, edges)]
    uppers: list[float | None] = [*map(float, edges), None]
    rows: list[Row] = [
        (name, "numeric", i, lo, up, None, float(fractions[i]))
        for i, (lo, up) in enumerate(zip(lowers, uppers, strict=True))
    ]
    rows.append((name, "numeric", len(rows), None, None, NULL, float(fractions[-1])))
    return rows


def _categorical_rows(name: str, values: pl.Series) -> list[Row]:
    counts = _counts(values)
    # Most frequent first, ties by name, so the same data always gives the same bin numbers.
    counts = counts.sort(["n", "value"], descending=[True, False])
    total = values.len()
    cats = [(str(c), n / total) for c, n in counts.iter_rows()]
    cats += [(OTHER, 0.0), (NULL, values.null_count() / total)]
    return [(name, "categorical", i, None, None, c, f) for i, (c, f) in enumerate(cats)]


def _edges(bins: pl.DataFrame) -> np.ndarray:
    """The stored edges: upper bounds of the value bins (the null bin is last, the +inf is null)."""
    return bins.head(bins.height - 1)["upper"].drop_nulls().to_numpy()


def _numeric_fractions(values: pl.Series, edges: np.ndarray) -> np.ndarray:
    """Fractions per bin: value bins, right-closed (lower < v <= upper), then the null bin."""
    return _numeric_counts(values, edges) / values.len()


def _numeric_counts(values: pl.Series, edges: np.ndarray) -> np.ndarray:
    present = values.drop_nulls().to_numpy()
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return np.append(counts, values.null_count())


def _categorical_counts(values: pl.Series, bins: pl.DataFrame) -> np.ndarray:
    known = bins["category"].head(bins.height - 2).to_list()
    counts = dict(_counts(values).iter_rows())
    seen = [counts.get(category, 0) for category in known]
    other = values.len() - values.null_count() - sum(seen)
    return np.array([*seen, other, values.null_count()], dtype=np.int64)


def _counts(values: pl.Series) -> pl.DataFrame:
    """Non-null values and their counts, as columns "value" and "n" whatever the feature name."""
    return values.drop_nulls().alias("value").value_counts(name="n")


def _as_float(values: pl.Series) -> pl.Series:
    """Float64 with NaN as null: NaN sorts past every edge and would pose as a huge value."""
    if not (values.dtype.is_numeric() or values.dtype in (pl.Boolean, pl.Null)):
        raise InputError(f"drift: column '{values.name}' must be numeric, but it is {values.dtype}")
    return values.cast(pl.Float64).fill_nan(None)


def _prediction_frame(predictions: np.ndarray | pl.Series) -> pl.DataFrame:
    values = pl.Series(PREDICTION, np.asarray(predictions, dtype=np.float64).ravel())
    if values.len() == 0:
        raise InputError("drift: no predictions to profile or compare")
    return values.to_frame()


def _require_columns(X: pl.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in X.columns]
    if missing:
        raise InputError(f"drift: column(s) missing from the data: {', '.join(missing)}")

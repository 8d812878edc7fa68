"""Feature preparation: column drops and DuckDB SQL on the validated rows, then the
scikit-learn preprocessing that lives inside every model's Pipeline (so CV folds never leak)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mallard import warehouse
from mallard.errors import InputError
from mallard.spec import FeaturesSection


@dataclass(frozen=True)
class Features:
    X: pl.DataFrame
    y: np.ndarray
    numeric: list[str]
    categorical: list[str]


def prepare_features(frame: pl.DataFrame, section: FeaturesSection, target: str) -> Features:
    """Apply the spec's drops and SQL; split off the target; sort columns into kinds."""
    unknown = [name for name in section.drop if name not in frame.columns]
    if unknown:
        raise InputError(f"[features.drop] unknown column(s): {', '.join(unknown)}")
    if target in section.drop:
        raise InputError(f"[features.drop] cannot drop the target column '{target}'")
    frame = frame.drop(section.drop)
    if section.sql.strip():
        frame = warehouse.sql_over_frame(frame, section.sql, "source")
    if target not in frame.columns:
        raise InputError(f"[features.sql] the result has no target column '{target}'")
    y = _numeric_target(frame[target])
    X = _model_ready(frame.drop(target))
    if X.width == 0:
        raise InputError("no feature columns left after features.drop / features.sql")
    numeric = [name for name, dtype in X.schema.items() if dtype.is_numeric()]
    categorical = [name for name in X.columns if name not in numeric]
    return Features(X=X, y=y, numeric=numeric, categorical=categorical)


def scoring_features(
    frame: pl.DataFrame, section: FeaturesSection, target: str, feature_names: list[str]
) -> pl.DataFrame:
    """The same features for new rows at score time; the target column may be absent."""
    frame = frame.drop([name for name in section.drop if name in frame.columns])
    if section.sql.strip():
        frame = warehouse.sql_over_frame(frame, section.sql, "source")
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise InputError(
            f"the input lacks feature column(s) the model was trained on: {', '.join(missing)}"
        )
    return _model_ready(frame.select(feature_names))


def preprocessor(features: Features) -> ColumnTransformer:
    """Imputation, scaling and one-hot encoding, fitted inside each CV fold."""
    parts = []
    if features.numeric:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        parts.append(("numeric", numeric, features.numeric))
    if features.categorical:
        categorical = make_pipeline(
            SimpleImputer(strategy="most_frequent", missing_values=None),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=5),
        )
        parts.append(("categorical", categorical, features.categorical))
    return ColumnTransformer(parts, remainder="drop")


def model_pipeline(features: Features, estimator: object) -> Pipeline:
    return Pipeline([("prepare", preprocessor(features)), ("model", estimator)])


def _numeric_target(column: pl.Series) -> np.ndarray:
    if not column.dtype.is_numeric():
        raise InputError(
            f"target column '{column.name}' must be numeric for regression, "
            f'but it is {column.dtype}; declare it as dtype = "float" in [schema.columns]'
        )
    return column.cast(pl.Float64).to_numpy()


def _model_ready(X: pl.DataFrame) -> pl.DataFrame:
    """Booleans become 0/1, dates become days since 1970, so every column is number or text."""
    conversions = []
    for name, dtype in X.schema.items():
        if dtype == pl.Boolean:
            conversions.append(pl.col(name).cast(pl.Int8))
        elif dtype == pl.Date:
            conversions.append(pl.col(name).cast(pl.Int32).cast(pl.Float64))
        elif isinstance(dtype, pl.Datetime):
            conversions.append(pl.col(name).dt.epoch("d").cast(pl.Float64))
        elif not dtype.is_numeric() and dtype != pl.String:
            conversions.append(pl.col(name).cast(pl.String))
    return X.with_columns(conversions) if conversions else X


@task(name="features", cache_policy=NO_CACHE)
def build_features(frame: pl.DataFrame, section: FeaturesSection, target: str) -> Features:
    return prepare_features(frame, section, target)

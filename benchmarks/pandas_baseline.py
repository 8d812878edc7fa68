"""The same job as `mallard run`, written the way a typical notebook would: pandas + scikit-learn.

    python benchmarks/pandas_baseline.py DATA.csv SPEC.toml

Reads the CSV with pandas, drops the rows the housing schema rejects, makes the same
70/15/15 split (same seed semantics as mallard, so both sides see the same rows), tunes the
spec's candidates with GridSearchCV / RandomizedSearchCV (5-fold, n_jobs=-1, as a notebook
would), picks the best by CV RMSE and reports its test R2. The candidates (families and search
spaces) are read from the spec, so this script and mallard always tune the same models.

The last stdout line is `RESULT {json}` for benchmarks/run.py.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tomllib
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

TARGET = "price"

# Estimators with the same constructor defaults as mallard's model families, so that a
# parameter the search space does not set has the same value on both sides.
ESTIMATORS: dict[str, Any] = {
    "dummy": lambda seed: DummyRegressor(strategy="mean"),
    "linear": lambda seed: LinearRegression(),
    "ridge": lambda seed: Ridge(random_state=seed),
    "lasso": lambda seed: Lasso(random_state=seed, max_iter=5000),
    "decision_tree": lambda seed: DecisionTreeRegressor(
        random_state=seed, max_depth=10, min_samples_leaf=5
    ),
    "random_forest": lambda seed: RandomForestRegressor(
        random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2
    ),
    "hist_gradient_boosting": lambda seed: HistGradientBoostingRegressor(random_state=seed),
}


def load_clean(csv: Path) -> tuple[pd.DataFrame, int]:
    """read_csv, then drop what the housing schema rejects (missing price, "n/a" or negative
    lot size, impossible bedroom counts, free-text yes/no answers)."""
    df = pd.read_csv(csv)
    n_raw = len(df)
    df = df.dropna()  # "n/a" and empty cells are NaN for read_csv
    df = df[(df["price"] >= 0) & (df["lotsize"] >= 0) & df["bedrooms"].between(0, 20)]
    df = df[df["driveway"].isin(["yes", "no"])]
    return df.reset_index(drop=True), n_raw - len(df)


def split_positions(n: int, seed: int, test: float, validation: float) -> dict[str, np.ndarray]:
    """The same permutation-based split as mallard (a notebook would call train_test_split
    twice; copying mallard's rule makes the two sides score the same test rows)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test))
    n_validation = max(1, round(n * validation))
    n_train = n - n_test - n_validation
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_validation]),
        "test": np.sort(order[n_train + n_validation :]),
    }


def preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    numeric = X.select_dtypes("number").columns.tolist()
    categorical = [c for c in X.columns if c not in numeric]
    return ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=5),
                ),
                categorical,
            ),
        ]
    )


def candidates(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The spec's candidates plus the dummy baseline mallard always adds."""
    named: list[tuple[str, dict[str, Any]]] = []
    for candidate in spec["candidates"]:
        name = candidate.get("name") or candidate["family"]
        named.append((name, candidate))
    if not any(c["family"] == "dummy" for _, c in named):
        named.append(("baseline", {"family": "dummy"}))
    return named


def search_for(candidate: dict[str, Any], X: pd.DataFrame, seed: int, folds: int) -> Any:
    pipeline = Pipeline(
        [("prepare", preprocessor(X)), ("model", ESTIMATORS[candidate["family"]](seed))]
    )
    space = {f"model__{k}": v for k, v in candidate.get("params", {}).items()}
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    common = {"scoring": "neg_root_mean_squared_error", "cv": cv, "n_jobs": -1}
    n_iter = candidate.get("n_iter", 10)
    n_configs = prod(len(v) for v in space.values())
    if candidate.get("search") == "random" and n_iter < n_configs:
        return RandomizedSearchCV(pipeline, space, n_iter=n_iter, random_state=seed, **common)
    return GridSearchCV(pipeline, space, **common)


def peak_rss_mb() -> float:
    """Largest resident set of this process or any of its (reaped) worker processes."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, children_kb) / 1024


def main(csv: Path, spec_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    spec = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    seed = spec["pipeline"]["seed"]
    folds = spec["cv"]["folds"]

    df, n_dropped = load_clean(csv)
    X, y = df.drop(columns=TARGET), df[TARGET].to_numpy(dtype=float)
    rows = split_positions(len(df), seed, spec["split"]["test"], spec["split"]["validation"])
    X_train, y_train = X.iloc[rows["train"]], y[rows["train"]]
    X_test, y_test = X.iloc[rows["test"]], y[rows["test"]]
    print(f"{len(df)} valid rows ({n_dropped} dropped); {len(X_train)} train / {len(X_test)} test")

    results = []
    for name, candidate in candidates(spec):
        t0 = time.perf_counter()
        search = search_for(candidate, X_train, seed, folds).fit(X_train, y_train)
        seconds = time.perf_counter() - t0
        test_r2 = r2_score(y_test, search.best_estimator_.predict(X_test))
        best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
        results.append(
            {
                "name": name,
                "cv_rmse": -search.best_score_,
                "test_r2": test_r2,
                "seconds": seconds,
                "best_params": best,
            }
        )
        print(
            f"{name}: cv rmse {-search.best_score_:.1f}, test R2 {test_r2:.4f} in {seconds:.1f} s"
        )

    best = min(results, key=lambda r: r["cv_rmse"])
    summary = {
        "n_valid": len(df),
        "n_dropped": n_dropped,
        "best": best["name"],
        "test_r2": best["test_r2"],
        "candidates": results,
        "wall_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }
    print(
        f"best by CV: {best['name']}, test R2 {best['test_r2']:.4f}; "
        f"{summary['wall_s']:.1f} s, peak RSS {summary['peak_rss_mb']:.0f} MB (largest process)"
    )
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} DATA.csv SPEC.toml")
    summary = main(Path(sys.argv[1]), Path(sys.argv[2]))
    print("RESULT " + json.dumps(summary, default=str))

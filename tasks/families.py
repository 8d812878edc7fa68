"""Model families: a name, an estimator factory with sensible defaults, and a default search space.

Defaults keep models small and fits fast (bounded forest depth, leaf size) because a model file
and a search budget are paid for on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

BASELINE = "dummy"


@dataclass(frozen=True)
class Family:
    make: Callable[[int], BaseEstimator]  # seed -> unfitted estimator
    default_space: dict[str, list[Any]] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "dummy": Family(lambda seed: DummyRegressor(strategy="mean")),
    "linear": Family(lambda seed: LinearRegression()),
    "ridge": Family(lambda seed: Ridge(random_state=seed), {"alpha": [0.1, 1.0, 10.0, 100.0]}),
    "lasso": Family(
        lambda seed: Lasso(random_state=seed, max_iter=5000),
        {"alpha": [0.001, 0.01, 0.1, 1.0]},
    ),
    "decision_tree": Family(
        lambda seed: DecisionTreeRegressor(random_state=seed, max_depth=10, min_samples_leaf=5),
        {"max_depth": [4, 8, 12], "min_samples_leaf": [1, 5, 20]},
    ),
    "random_forest": Family(
        lambda seed: RandomForestRegressor(
            random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2, n_jobs=1
        ),
        {"n_estimators": [100], "max_depth": [8, 16], "min_samples_leaf": [1, 5]},
    ),
    "hist_gradient_boosting": Family(
        lambda seed: HistGradientBoostingRegressor(random_state=seed),
        {"learning_rate": [0.05, 0.1], "max_iter": [200]},
    ),
}


def unknown_params(family: str, params: dict[str, list[Any]]) -> list[str]:
    """Names in `params` the family's estimator does not accept."""
    accepted = FAMILIES[family].make(0).get_params()
    return sorted(name for name in params if name not in accepted)


def search_space(family: str, params: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The candidate's space, or the family's default when the spec gives none."""
    return params or FAMILIES[family].default_space

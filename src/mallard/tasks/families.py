"""Model families: a name -> per task, an estimator factory with sensible defaults and a default
search space. Defaults keep models small and fits fast (bounded forest depth, leaf size) because a
model file and a search budget are paid for on every run.

Linear models search their regularisation on a log scale (1e-3 .. 1e3): the right strength
depends on the data's scale and noise, and a linear grid wastes its points on one end. Hist
gradient boosting stops early on an internal 10 % validation split, so `max_iter` is a ceiling
rather than a knob to tune. `mlp` standardises its inputs (the pipeline's scaler) and, for
regression, its target too: unscaled house prices (1e5) starve Adam's small initial weights.

`stacking` and `voting` are ensembles of a run's best tuned candidates: the flow builds them
(tasks/ensembles.py), so they have no factory here.

scikit-learn is imported when a factory first runs, not with the module: it costs ~1 s of every
command's start-up, and the family names and search spaces here are plain data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mallard.core.catalogue import BASELINE, ENSEMBLES
from mallard.core.errors import SpecError
from mallard.core.spec import Spec


class _Submodule:
    """A scikit-learn submodule, imported on the first attribute read: the factories below name
    `linear_model.Ridge` etc. but only run when a candidate is built."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # e.g. copy's or pickle's probes; never a constructor
            raise AttributeError(attr)
        return getattr(importlib.import_module(f"sklearn.{self._name}"), attr)


if TYPE_CHECKING:
    from sklearn import (
        cluster,
        compose,
        dummy,
        ensemble,
        linear_model,
        neighbors,
        neural_network,
        preprocessing,
        svm,
        tree,
    )
    from sklearn.base import BaseEstimator
else:
    cluster, compose, dummy, ensemble, linear_model = map(
        _Submodule, ["cluster", "compose", "dummy", "ensemble", "linear_model"]
    )
    neighbors, neural_network, preprocessing, svm, tree = map(
        _Submodule, ["neighbors", "neural_network", "preprocessing", "svm", "tree"]
    )

Factory = Callable[[int], "BaseEstimator"]  # seed -> unfitted estimator


@dataclass(frozen=True)
class Family:
    make: Factory
    default_space: dict[str, list[Any]] = field(default_factory=dict)
    # Where the knobs sit inside `make`'s estimator, e.g. "regressor__" when the estimator is
    # wrapped (target scaling). Specs and results name the knobs without it.
    inner: str = ""

    def estimator_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` (spec names) as keys `make(seed).set_params` accepts."""
        return {self.inner + key: value for key, value in params.items()}


LOG_ALPHA = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]  # ridge alpha; logistic C likewise
_TREE_SPACE: dict[str, list[Any]] = {"max_depth": [4, 8, 12], "min_samples_leaf": [1, 5, 20]}
_FOREST_SPACE: dict[str, list[Any]] = {
    "n_estimators": [100],
    "max_depth": [8, 16],
    "min_samples_leaf": [2, 5],
}
_BOOSTING_SPACE: dict[str, list[Any]] = {
    "n_estimators": [100],
    "learning_rate": [0.05, 0.1],
    "max_depth": [3],
}
_HIST_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.05, 0.1],
    "max_leaf_nodes": [15, 31],
    "l2_regularization": [0.0, 1.0],
}
_MLP_SPACE: dict[str, list[Any]] = {
    "hidden_layer_sizes": [(64,), (64, 32)],
    "alpha": [0.0001, 0.01, 1.0],
}
_KNN_SPACE: dict[str, list[Any]] = {"n_neighbors": [5, 15, 30], "weights": ["uniform", "distance"]}
_BALANCE: dict[str, list[Any]] = {"class_weight": [None, "balanced"]}
# Early stopping on 10 % of the fit's rows: max_iter is a ceiling, not a knob to tune.
_HIST_FIXED: dict[str, Any] = {
    "early_stopping": True,
    "max_iter": 500,
    "n_iter_no_change": 20,
    "validation_fraction": 0.1,
}
# Adam at 0.01 rather than 0.001: on small tables an epoch is one or two steps, so at 0.001
# early stopping ends a fit before it has learnt anything; measured on generated housing rows,
# 0.01 is also 2-5x faster at 500-20k rows and as good (holdout R² 0.778/0.895/0.908 vs
# 0.747/0.893/0.906).
_MLP_FIXED: dict[str, Any] = {
    "learning_rate_init": 0.01,
    "early_stopping": True,
    "max_iter": 300,
    "n_iter_no_change": 10,
    "validation_fraction": 0.1,
}


def _mlp_regressor(seed: int) -> BaseEstimator:
    """MLP on a standardised target; the pipeline already standardises the inputs."""
    return compose.TransformedTargetRegressor(
        regressor=neural_network.MLPRegressor(random_state=seed, **_MLP_FIXED),
        transformer=preprocessing.StandardScaler(),
    )


REGRESSION: dict[str, Family] = {
    "dummy": Family(lambda seed: dummy.DummyRegressor(strategy="mean")),
    "linear": Family(lambda seed: linear_model.LinearRegression()),
    "ridge": Family(lambda seed: linear_model.Ridge(random_state=seed), {"alpha": LOG_ALPHA}),
    "lasso": Family(
        lambda seed: linear_model.Lasso(random_state=seed, max_iter=5000),
        {"alpha": [0.0001, 0.001, 0.01, 0.1, 1.0]},
    ),
    "elastic_net": Family(
        lambda seed: linear_model.ElasticNet(random_state=seed, max_iter=5000),
        {"alpha": [0.001, 0.01, 0.1, 1.0], "l1_ratio": [0.2, 0.5, 0.8]},
    ),
    "decision_tree": Family(
        lambda seed: tree.DecisionTreeRegressor(
            random_state=seed, max_depth=10, min_samples_leaf=5
        ),
        _TREE_SPACE,
    ),
    "random_forest": Family(
        lambda seed: ensemble.RandomForestRegressor(
            random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2, n_jobs=1
        ),
        _FOREST_SPACE,
    ),
    "extra_trees": Family(
        lambda seed: ensemble.ExtraTreesRegressor(
            random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2, n_jobs=1
        ),
        _FOREST_SPACE,
    ),
    "adaboost": Family(
        lambda seed: ensemble.AdaBoostRegressor(random_state=seed),
        {"n_estimators": [50, 100], "learning_rate": [0.5, 1.0]},
    ),
    "gradient_boosting": Family(
        lambda seed: ensemble.GradientBoostingRegressor(random_state=seed), _BOOSTING_SPACE
    ),
    "hist_gradient_boosting": Family(
        lambda seed: ensemble.HistGradientBoostingRegressor(random_state=seed, **_HIST_FIXED),
        _HIST_SPACE,
    ),
    "bagging": Family(
        lambda seed: ensemble.BaggingRegressor(random_state=seed), {"n_estimators": [10, 30]}
    ),
    "knn": Family(lambda seed: neighbors.KNeighborsRegressor(), _KNN_SPACE),
    "svm": Family(lambda seed: svm.SVR(), {"C": [0.1, 1.0, 10.0]}),
    "mlp": Family(_mlp_regressor, _MLP_SPACE, inner="regressor__"),
}

CLASSIFICATION: dict[str, Family] = {
    "dummy": Family(lambda seed: dummy.DummyClassifier(strategy="prior")),
    "logistic_regression": Family(
        lambda seed: linear_model.LogisticRegression(random_state=seed, max_iter=2000),
        {"C": LOG_ALPHA, **_BALANCE},
    ),
    "ridge": Family(
        lambda seed: linear_model.RidgeClassifier(random_state=seed),
        {"alpha": LOG_ALPHA, **_BALANCE},
    ),
    "decision_tree": Family(
        lambda seed: tree.DecisionTreeClassifier(
            random_state=seed, max_depth=10, min_samples_leaf=5
        ),
        {**_TREE_SPACE, **_BALANCE},
    ),
    "random_forest": Family(
        lambda seed: ensemble.RandomForestClassifier(
            random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2, n_jobs=1
        ),
        {**_FOREST_SPACE, **_BALANCE},
    ),
    "extra_trees": Family(
        lambda seed: ensemble.ExtraTreesClassifier(
            random_state=seed, n_estimators=100, max_depth=12, min_samples_leaf=2, n_jobs=1
        ),
        {**_FOREST_SPACE, **_BALANCE},
    ),
    "adaboost": Family(
        lambda seed: ensemble.AdaBoostClassifier(random_state=seed),
        {"n_estimators": [50, 100], "learning_rate": [0.5, 1.0]},
    ),
    "gradient_boosting": Family(
        lambda seed: ensemble.GradientBoostingClassifier(random_state=seed), _BOOSTING_SPACE
    ),
    "hist_gradient_boosting": Family(
        lambda seed: ensemble.HistGradientBoostingClassifier(random_state=seed, **_HIST_FIXED),
        {**_HIST_SPACE, **_BALANCE},
    ),
    "bagging": Family(
        lambda seed: ensemble.BaggingClassifier(random_state=seed), {"n_estimators": [10, 30]}
    ),
    "knn": Family(lambda seed: neighbors.KNeighborsClassifier(), _KNN_SPACE),
    "svm": Family(lambda seed: svm.SVC(random_state=seed), {"C": [0.1, 1.0, 10.0], **_BALANCE}),
    "mlp": Family(
        lambda seed: neural_network.MLPClassifier(random_state=seed, **_MLP_FIXED), _MLP_SPACE
    ),
}

CLUSTERING: dict[str, Family] = {
    "kmeans": Family(
        lambda seed: cluster.KMeans(random_state=seed, n_init=10),
        {"n_clusters": [2, 3, 4, 5, 6]},
    ),
    "agglomerative": Family(
        lambda seed: cluster.AgglomerativeClustering(),
        {"n_clusters": [2, 3, 4, 5, 6], "linkage": ["ward", "average"]},
    ),
}

FAMILIES: dict[str, dict[str, Family]] = {
    "regression": REGRESSION,
    "classification": CLASSIFICATION,
    "clustering": CLUSTERING,
}
BASELINES = {"regression": BASELINE, "classification": BASELINE}


def known(task: str) -> list[str]:
    """Family names a spec may use for `task`."""
    names = list(FAMILIES[task])
    return sorted(names + list(ENSEMBLES)) if task != "clustering" else sorted(names)


def family(task: str, name: str) -> Family:
    return FAMILIES[task][name]


def unknown_params(task: str, name: str, params: dict[str, list[Any]]) -> list[str]:
    """Names in `params` the family's estimator does not accept."""
    if name in ENSEMBLES:
        return sorted(set(params) - {"top"})
    chosen = family(task, name)
    accepted = chosen.make(0).get_params()
    return sorted(p for p in params if chosen.inner + p not in accepted)


def search_space(task: str, name: str, params: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The candidate's space, or the family's default when the spec gives none. TOML has no
    null, so the string "none" stands for Python's None (e.g. class_weight = ["none", ...])."""
    space = params or family(task, name).default_space
    return {
        key: [None if isinstance(v, str) and v.lower() == "none" else v for v in values]
        for key, values in space.items()
    }


def check_candidates(spec: Spec) -> None:
    """Every candidate names a family of its task and only parameters its estimator has."""
    path = spec.spec_path
    task = spec.pipeline.task
    for i, candidate in enumerate(spec.candidates):
        if candidate.family not in known(task):
            raise SpecError(
                f"{path}: [candidates[{i}].family] unknown model family "
                f"'{candidate.family}' for {task}; known families: {', '.join(known(task))}"
            )
        bad = unknown_params(task, candidate.family, candidate.params)
        if bad:
            raise SpecError(
                f"{path}: [candidates[{i}].params] '{candidate.family}' has no parameter(s) "
                f"{', '.join(bad)}"
            )
        for param, values in candidate.params.items():
            if not values:
                raise SpecError(
                    f"{path}: [candidates[{i}].params.{param}] needs at least one value"
                )
        if candidate.family not in ENSEMBLES:
            space = search_space(task, candidate.family, candidate.params)
            for param, values in space.items():
                for value in values:
                    problem = invalid_value(task, candidate.family, param, value)
                    if problem:
                        raise SpecError(
                            f"{path}: [candidates[{i}].params.{param}] {problem} "
                            "Change or remove that value in the spec."
                        )


def invalid_value(task: str, name: str, param: str, value: Any) -> str | None:
    """Why the family's estimator refuses `param = value` (scikit-learn's own constraint check,
    as `fit` would run it), or None if it accepts it. Checks one value on a fresh estimator, so a
    typo fails at load time rather than after the other candidates have trained."""
    from sklearn.base import BaseEstimator

    chosen = family(task, name)
    estimator = chosen.make(0)
    try:
        estimator.set_params(**chosen.estimator_params({param: value}))
        nested = [estimator, *estimator.get_params(deep=True).values()]
        for part in nested:
            if isinstance(part, BaseEstimator) and hasattr(part, "_validate_params"):
                part._validate_params()
    except (ValueError, TypeError) as exc:  # InvalidParameterError is both
        return " ".join(str(exc).split())
    return None

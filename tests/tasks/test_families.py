"""Every model family of every task fits and predicts through the tuning code; default search
spaces are valid for their estimators; bad names and wrong-task families are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.model_selection import ParameterGrid

from mallard.core.errors import SpecError
from mallard.core.spec import Candidate, FeaturesSection, parse_spec
from mallard.tasks.cluster import tune_clusterer
from mallard.tasks.families import (
    BASELINE,
    ENSEMBLES,
    FAMILIES,
    check_candidates,
    known,
    search_space,
    unknown_params,
)
from mallard.tasks.features import prepare_features
from mallard.tasks.metrics import Target, score_all, scorers
from mallard.tasks.model_files import LOADABLE_TYPES, load_model, save_model
from mallard.tasks.tune import SearchPlan, tune_candidate

ROWS = 120
TRAIN = np.arange(90)
HELD_OUT = np.arange(90, ROWS)
SMALL = {"n_estimators": [5], "max_iter": [20]}  # keeps forests and boosting fast


def table(seed: int = 0) -> pl.DataFrame:
    """Two informative numeric columns and a category; a price and a yes/no label follow them."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=ROWS)
    b = rng.normal(size=ROWS)
    colour = rng.choice(["red", "green", "blue"], ROWS)
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "colour": colour,
            "price": 3 * a - 2 * b + (colour == "red") + rng.normal(0, 0.3, ROWS),
            "bought": np.where(a + b + rng.normal(0, 0.5, ROWS) > 0, "yes", "no"),
        }
    )


REGRESSION_DATA = prepare_features(table(), FeaturesSection(drop=["bought"]), "price")
CLASSIFICATION_DATA = prepare_features(
    table(), FeaturesSection(drop=["price"]), "bought", task="classification"
)
CLUSTERING_DATA = prepare_features(table(), FeaturesSection(drop=["price", "bought"]), None)


def one_config(task: str, name: str) -> dict[str, list[Any]]:
    """The middle value of each default hyperparameter (log-spaced regularisation starts far
    out), with small ensembles."""
    space = FAMILIES[task][name].default_space
    return {
        key: SMALL.get(key, values[len(values) // 2 : len(values) // 2 + 1])
        for key, values in space.items()
    }


def plan_for(task: str) -> SearchPlan:
    target = (
        Target("classification", ("no", "yes"), "yes") if task == "classification" else Target(task)
    )
    primary = {"regression": "rmse", "classification": "f1_macro", "clustering": "silhouette"}
    return SearchPlan(target=target, primary=primary[task], folds=3, seed=1)


@pytest.mark.parametrize("name", sorted(FAMILIES["regression"]))
def test_every_regression_family_fits_and_predicts(name: str) -> None:
    params = one_config("regression", name)

    tuned = tune_candidate(
        name, Candidate(family=name, params=params), REGRESSION_DATA, TRAIN, plan_for("regression")
    )

    predicted = tuned.model.predict(REGRESSION_DATA.X[HELD_OUT])
    assert predicted.shape == (len(HELD_OUT),)
    assert np.isfinite(predicted).all()
    assert tuned.cv_results["fold"].n_unique() == 3
    assert tuned.cv_results["params"].unique().to_list() == [
        json.dumps({k: v[0] for k, v in params.items()}, sort_keys=True)
    ]
    assert tuned.best_params == {k: v[0] for k, v in params.items()}
    if name != BASELINE:  # learnable data: every real model beats the mean (r2 0)
        assert tuned.cv_means["r2"] > 0.15, tuned.cv_means


@pytest.mark.parametrize("name", sorted(FAMILIES["classification"]))
def test_every_classification_family_fits_and_predicts(name: str) -> None:
    params = one_config("classification", name)

    tuned = tune_candidate(
        name,
        Candidate(family=name, params=params),
        CLASSIFICATION_DATA,
        TRAIN,
        plan_for("classification"),
    )

    assert CLASSIFICATION_DATA.y is not None
    X, y = CLASSIFICATION_DATA.X[HELD_OUT], CLASSIFICATION_DATA.y[HELD_OUT]
    predicted = tuned.model.predict(X)
    assert set(predicted) <= {"yes", "no"}
    assert len(predicted) == len(HELD_OUT)
    # every metric scores a held-out split of text labels, one scorer at a time as evaluate does
    target = plan_for("classification").target
    held_out = score_all(scorers(target, tuned.model), tuned.model, X, y)
    assert "f1_macro" in held_out and "roc_auc" in held_out
    assert all(np.isfinite(v) for v in held_out.values()), held_out
    assert tuned.best_params == {k: v[0] for k, v in params.items()}
    if name != BASELINE:
        assert tuned.cv_means["accuracy"] > 0.7, tuned.cv_means
        assert len(set(predicted)) == 2


THREE_CLASSES = prepare_features(
    table().with_columns(
        pl.when(pl.col("a") < -0.4)
        .then(pl.lit("low"))
        .when(pl.col("a") < 0.4)
        .then(pl.lit("mid"))
        .otherwise(pl.lit("high"))
        .alias("band")
    ),
    FeaturesSection(drop=["price", "bought"]),
    "band",
    task="classification",
)


@pytest.mark.parametrize("name", sorted(FAMILIES["classification"]))
def test_every_classification_family_handles_three_classes(name: str) -> None:
    target = Target("classification", ("high", "low", "mid"))
    plan = SearchPlan(target=target, primary="f1_macro", folds=3, seed=1)

    tuned = tune_candidate(
        name,
        Candidate(family=name, params=one_config("classification", name)),
        THREE_CLASSES,
        TRAIN,
        plan,
    )

    assert THREE_CLASSES.y is not None
    X, y = THREE_CLASSES.X[HELD_OUT], THREE_CLASSES.y[HELD_OUT]
    held_out = score_all(scorers(target, tuned.model), tuned.model, X, y)
    assert "pr_auc" not in held_out and "pr_auc" not in tuned.cv_means  # binary only
    # one-vs-rest ROC AUC reads probabilities: only models that have them are scored on it
    has_proba = hasattr(tuned.model, "predict_proba")
    assert ("roc_auc" in held_out) == ("log_loss" in held_out) == has_proba
    assert all(np.isfinite(v) for v in held_out.values()), held_out
    if name != BASELINE:
        assert set(tuned.model.predict(X)) == {"low", "mid", "high"}


@pytest.mark.parametrize("name", sorted(FAMILIES["clustering"]))
def test_every_clustering_family_labels_every_row(name: str) -> None:
    params = {**one_config("clustering", name), "n_clusters": [3]}

    tuned = tune_clusterer(
        name, Candidate(family=name, params=params), CLUSTERING_DATA, plan_for("clustering")
    )

    assert tuned.labels is not None
    assert tuned.labels.shape == (ROWS,)
    assert sorted(np.unique(tuned.labels).tolist()) == [0, 1, 2]
    assert tuned.best_params == {k: v[0] for k, v in params.items()}
    assert set(tuned.cv_results["metric"]) == {"silhouette", "davies_bouldin", "calinski_harabasz"}


def all_families() -> list[tuple[str, str]]:
    return [(task, name) for task, families in FAMILIES.items() for name in sorted(families)]


@pytest.mark.parametrize(("task", "name"), all_families())
def test_the_default_space_is_accepted_by_the_estimator(task: str, name: str) -> None:
    space = search_space(task, name, {})

    chosen = FAMILIES[task][name]
    for config in ParameterGrid(space):
        inner = chosen.estimator_params(config)
        estimator = chosen.make(0).set_params(**inner)
        estimator._validate_params()  # sklearn's own check of types and ranges
        assert {k: estimator.get_params()[k] for k in inner} == inner


def test_families_with_a_tunable_knob_have_a_default_space() -> None:
    untuned = {(t, n) for t, n in all_families() if not FAMILIES[t][n].default_space}

    assert untuned == {
        ("regression", "dummy"),
        ("regression", "linear"),
        ("classification", "dummy"),
    }


@pytest.mark.parametrize("task", sorted(FAMILIES))
def test_unknown_params_names_the_bad_hyperparameter(task: str) -> None:
    for name in FAMILIES[task]:
        good = dict(one_config(task, name))
        bad = {**good, "not_a_knob": [1], "alpha_": [2]}
        assert unknown_params(task, name, good) == [], name
        assert unknown_params(task, name, bad) == ["alpha_", "not_a_knob"], name


def test_unknown_params_of_ensembles_accepts_only_top() -> None:
    for name in ENSEMBLES:
        assert unknown_params("regression", name, {"top": [2]}) == []
        assert unknown_params("classification", name, {"top": [2], "C": [1.0]}) == ["C"]


def test_none_strings_stand_for_python_none() -> None:
    space = search_space(
        "classification", "logistic_regression", {"class_weight": ["none", "None"]}
    )

    assert space == {"class_weight": [None, None]}


def test_known_lists_ensembles_for_supervised_tasks_only() -> None:
    assert "stacking" in known("regression") and "voting" in known("classification")
    assert "stacking" not in known("clustering")
    assert "logistic_regression" in known("classification")
    assert "logistic_regression" not in known("regression")
    assert known("clustering") == ["agglomerative", "kmeans"]


SPEC = """
[pipeline]
name = "p"
task = "{task}"
{target}

[source]
sql = "SELECT 1 AS x"

[[candidates]]
family = "{first}"

[[candidates]]
family = "{second}"
"""


def spec(task: str, first: str, second: str) -> str:
    target = "" if task == "clustering" else 'target = "y"'
    return SPEC.format(task=task, target=target, first=first, second=second)


@pytest.mark.parametrize(
    ("task", "family"),
    [
        ("regression", "logistic_regression"),
        ("regression", "kmeans"),
        ("classification", "lasso"),
        ("classification", "agglomerative"),
        ("clustering", "ridge"),
        ("clustering", "stacking"),
    ],
)
def test_a_family_of_another_task_is_a_spec_error_naming_the_key(
    task: str, family: str, tmp_path: Path
) -> None:
    valid = {"regression": "ridge", "classification": "ridge", "clustering": "kmeans"}[task]
    check_candidates(parse_spec(spec(task, valid, valid), tmp_path / "p.toml"))  # valid

    with pytest.raises(SpecError) as error:
        check_candidates(parse_spec(spec(task, valid, family), tmp_path / "p.toml"))

    message = str(error.value)
    assert "[candidates[1].family]" in message
    assert f"'{family}'" in message and task in message


def test_a_bad_hyperparameter_is_a_spec_error_naming_the_candidate(tmp_path: Path) -> None:
    text = spec("regression", "ridge", "random_forest") + "params = { n_trees = [10] }\n"

    with pytest.raises(SpecError, match=r"\[candidates\[1\]\.params\].*n_trees"):
        check_candidates(parse_spec(text, tmp_path / "p.toml"))


# A fitted MLP keeps its Adam optimizer state (plain arrays and floats): the code's allow-list
# must hold it, or mallard could never load an mlp it saved.
MLP_TYPES = frozenset({"sklearn.neural_network._stochastic_optimizers.AdamOptimizer"})


def test_mlp_types_are_in_the_code_allow_list() -> None:
    assert MLP_TYPES <= LOADABLE_TYPES


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_mlp_trains_saves_with_skops_and_reloads(task: str) -> None:
    data = REGRESSION_DATA if task == "regression" else CLASSIFICATION_DATA
    params = {"hidden_layer_sizes": [[16]], "alpha": [0.0001, 0.01]}  # lists, as TOML gives

    tuned = tune_candidate(
        "mlp", Candidate(family="mlp", params=params), data, TRAIN, plan_for(task)
    )

    assert tuned.best_params["alpha"] in (0.0001, 0.01)
    assert tuned.best_params["hidden_layer_sizes"] == [16]
    inner = tuned.model.named_steps["model"]
    network = inner.regressor_ if task == "regression" else inner
    assert network.early_stopping and network.n_iter_ <= 300
    assert network.hidden_layer_sizes == [16]
    file = save_model(tuned.model)
    assert set(file.trusted_types) <= LOADABLE_TYPES
    reloaded = load_model(file.blob, file.sha256, file.trusted_types)
    X = data.X[HELD_OUT]
    assert np.array_equal(reloaded.predict(X), tuned.model.predict(X))
    if task == "regression":
        assert tuned.cv_means["r2"] > 0.5, tuned.cv_means  # the target is scaled: it learns
    else:
        assert tuned.cv_means["accuracy"] > 0.7, tuned.cv_means


def test_mlp_knobs_are_named_as_in_the_spec_whatever_wraps_the_network() -> None:
    assert unknown_params("regression", "mlp", {"alpha": [1.0], "hidden_layer_sizes": [[8]]}) == []
    assert unknown_params("regression", "mlp", {"regressor__alpha": [1.0]}) == ["regressor__alpha"]
    assert unknown_params("classification", "mlp", {"alpha": [1.0]}) == []


def test_linear_regularisation_is_searched_on_a_log_scale() -> None:
    for task, name, knob in [
        ("regression", "ridge", "alpha"),
        ("classification", "ridge", "alpha"),
        ("classification", "logistic_regression", "C"),
    ]:
        values = np.array(FAMILIES[task][name].default_space[knob])
        assert values.min() <= 1e-3 and values.max() >= 1e3
        assert np.allclose(np.diff(np.log10(values)), 1.0)  # one point per decade


def test_hist_gradient_boosting_stops_early_by_default() -> None:
    for task in ("regression", "classification"):
        model = FAMILIES[task]["hist_gradient_boosting"].make(0)
        assert model.early_stopping is True and model.max_iter >= 300
        assert {"learning_rate", "max_leaf_nodes", "l2_regularization"} <= set(
            FAMILIES[task]["hist_gradient_boosting"].default_space
        )

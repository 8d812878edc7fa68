"""Stacking and voting ensembles of tuned candidates: cross-validated like their members, built
from the best of them, and refused when fewer than two can be combined."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import (
    StackingClassifier,
    StackingRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.pipeline import Pipeline

from mallard.core.catalogue import REGRESSION
from mallard.core.errors import InputError
from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks.ensembles import build_ensemble
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.tune import CV_COLUMNS, SearchPlan, Tuned, tune_candidate

ROWS = 240
TRAIN = np.arange(180)
HELD_OUT = np.arange(180, ROWS)


def frame(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "blue"], ROWS)
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "colour": colour,
            "price": 3 * a + b**2 + (colour == "red") + rng.normal(0, 0.3, ROWS),
            "label": np.where(a - b + rng.normal(0, 0.7, ROWS) > 0, "yes", "no"),
        }
    )


REG = prepare_features(frame(), FeaturesSection(drop=["label"]), "price")
CLF = prepare_features(frame(), FeaturesSection(drop=["price"]), "label", task="classification")
REG_PLAN = SearchPlan(Target("regression"), "rmse", folds=3, seed=0)
CLF_PLAN = SearchPlan(Target("classification", ("no", "yes"), "yes"), "f1_macro", 3, 0)

REG_MEMBERS = {
    "ridge": Candidate(family="ridge", params={"alpha": [1.0]}),
    "tree": Candidate(family="decision_tree", params={"max_depth": [4]}),
    "knn": Candidate(family="knn", params={"n_neighbors": [10]}),
    "baseline": Candidate(family="dummy"),
}
CLF_MEMBERS = {
    "logistic": Candidate(family="logistic_regression", params={"C": [1.0]}),
    "tree": Candidate(family="decision_tree", params={"max_depth": [4]}),
    "ridge": Candidate(family="ridge", params={"alpha": [1.0]}),  # no predict_proba
    "baseline": Candidate(family="dummy"),
}


def tune_all(members: dict[str, Candidate], features: Features, plan: SearchPlan) -> list[Tuned]:
    return [tune_candidate(n, c, features, TRAIN, plan) for n, c in members.items()]


@pytest.fixture(scope="module")
def regressors() -> list[Tuned]:
    return tune_all(REG_MEMBERS, REG, REG_PLAN)


@pytest.fixture(scope="module")
def classifiers() -> list[Tuned]:
    return tune_all(CLF_MEMBERS, CLF, CLF_PLAN)


def members_of(tuned: Tuned) -> list[str]:
    (params,) = tuned.cv_results["params"].unique().to_list()
    members = json.loads(params)["members"]
    assert members == tuned.best_params["members"]
    return members


def ranked(members: list[Tuned], metric: str, descending: bool) -> list[str]:
    order = sorted(members, key=lambda t: t.cv_means[metric], reverse=descending)
    return [t.name for t in order]


@pytest.mark.parametrize(
    ("kind", "expected"), [("stacking", StackingRegressor), ("voting", VotingRegressor)]
)
def test_regression_ensembles_of_the_best_members(
    kind: str, expected: type[Any], regressors: list[Tuned]
) -> None:
    built = build_ensemble(
        kind, Candidate(family=kind, params={"top": [2]}), regressors, REG, TRAIN, REG_PLAN
    )

    model: Any = built.model
    assert type(model) is expected
    best_two = ranked(regressors, "rmse", descending=False)[:2]
    assert members_of(built) == best_two
    assert [name for name, _ in model.estimators] == best_two
    results = built.cv_results
    assert results.schema == pl.Schema(CV_COLUMNS)
    assert results.height == 3 * len(REGRESSION)
    assert set(results["metric"]) == set(REGRESSION) == set(built.cv_means)
    assert set(results["candidate"]) == {kind} and set(results["family"]) == {kind}
    for metric, value in built.cv_means.items():
        fold_mean = results.filter(pl.col("metric") == metric)["value"].mean()
        assert value == pytest.approx(fold_mean)
    predicted = model.predict(REG.X[HELD_OUT])
    assert predicted.shape == (len(HELD_OUT),) and np.isfinite(predicted).all()
    # combining two good models is far better than the mean
    baseline = next(t for t in regressors if t.name == "baseline")
    assert built.cv_means["rmse"] < 0.6 * baseline.cv_means["rmse"]


@pytest.mark.parametrize(
    ("kind", "expected"), [("stacking", StackingClassifier), ("voting", VotingClassifier)]
)
def test_classification_ensembles_of_the_best_members(
    kind: str, expected: type[Any], classifiers: list[Tuned]
) -> None:
    built = build_ensemble(kind, Candidate(family=kind), classifiers, CLF, TRAIN, CLF_PLAN)

    model: Any = built.model
    assert type(model) is expected
    assert members_of(built) == ranked(classifiers, "f1_macro", descending=True)[:3]
    results = built.cv_results
    assert results["fold"].n_unique() == 3
    assert set(results["metric"]) == set(built.cv_means)
    metrics = set(results["metric"])
    assert {"f1_macro", "accuracy", "balanced_accuracy"} <= metrics
    # ROC AUC needs scores: a stack's meta-learner has them, a hard vote (a ridge member) not
    soft = kind == "stacking" or model.voting == "soft"
    assert ("roc_auc" in metrics) == soft
    predicted = model.predict(CLF.X[HELD_OUT])
    assert set(predicted) == {"yes", "no"}
    assert built.cv_means["accuracy"] > 0.75


def test_every_member_keeps_its_tuned_hyperparameters(regressors: list[Tuned]) -> None:
    built = build_ensemble(
        "voting", Candidate(family="voting", params={"top": [3]}), regressors, REG, TRAIN, REG_PLAN
    )

    fitted = dict(built.model.named_estimators_)
    assert set(fitted) == {"ridge", "tree", "knn"}
    assert fitted["ridge"].named_steps["model"].alpha == 1.0
    assert fitted["tree"].named_steps["model"].max_depth == 4
    assert fitted["knn"].named_steps["model"].n_neighbors == 10
    # members are refitted copies, not the tuned objects themselves
    originals = {t.name: t.model for t in regressors}
    assert all(fitted[name] is not originals[name] for name in fitted)


def test_soft_voting_only_when_every_member_has_probabilities(classifiers: list[Tuned]) -> None:
    with_proba = [t for t in classifiers if t.name in ("logistic", "tree")]
    with_ridge = [t for t in classifiers if t.name in ("logistic", "ridge")]

    soft = build_ensemble("v", Candidate(family="voting"), with_proba, CLF, TRAIN, CLF_PLAN)
    hard = build_ensemble("v", Candidate(family="voting"), with_ridge, CLF, TRAIN, CLF_PLAN)

    assert soft.model.voting == "soft"
    assert "log_loss" in set(soft.cv_results["metric"])
    assert hard.model.voting == "hard"
    assert "log_loss" not in set(hard.cv_results["metric"])  # no probabilities to score


def test_a_threshold_tuned_member_joins_as_its_pipeline() -> None:
    plan = SearchPlan(CLF_PLAN.target, "f1_macro", 3, 0, tune_threshold="f1")
    members = tune_all({k: CLF_MEMBERS[k] for k in ("logistic", "tree")}, CLF, plan)
    assert all(t.threshold is not None for t in members)

    built = build_ensemble("s", Candidate(family="stacking"), members, CLF, TRAIN, plan)

    assert all(isinstance(e, Pipeline) for _, e in built.model.estimators)


@pytest.mark.parametrize("kind", ["stacking", "voting"])
def test_fewer_than_two_members_is_an_input_error(kind: str, regressors: list[Tuned]) -> None:
    with pytest.raises(InputError, match=r"needs at least two tuned candidates.*has 1"):
        build_ensemble(kind, Candidate(family=kind), regressors[:1], REG, TRAIN, REG_PLAN)
    with pytest.raises(InputError, match=rf"'{kind}' \({kind}\).*has 0"):
        build_ensemble(kind, Candidate(family=kind), [], REG, TRAIN, REG_PLAN)
    with pytest.raises(InputError, match=r"has 1"):  # top = 1 leaves one member
        build_ensemble(
            kind, Candidate(family=kind, params={"top": [1]}), regressors, REG, TRAIN, REG_PLAN
        )


def test_members_without_the_primary_metric_are_not_combined(regressors: list[Tuned]) -> None:
    plan = SearchPlan(Target("regression"), "r2", folds=3, seed=0)
    stripped = [
        Tuned(t.name, t.family, t.best_params, t.cv_results, {}, t.model, t.seconds)
        if t.name != "ridge"
        else t
        for t in regressors
    ]

    with pytest.raises(InputError, match=r"has 1"):
        build_ensemble("voting", Candidate(family="voting"), stripped, REG, TRAIN, plan)

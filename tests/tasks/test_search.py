"""Search strategies (grid, random, successive halving), per-candidate scoring, repeated and
stratified CV folds, as tune_candidate stores them in cv_results."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
)

from mallard.core.catalogue import CLASSIFICATION, REGRESSION, greater_is_better
from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.tune import SearchPlan, Tuned, cv_splitter, train_view, tune_candidate

ROWS = 300
ALL_ROWS = np.arange(ROWS)
TREE_GRID = {"max_depth": [1, 2, 3, 4, 6, 8], "min_samples_leaf": [1, 5]}  # 12 configs


def regression_data() -> Features:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "blue"], ROWS)
    y = 3 * a + b + 2 * (colour == "red") + rng.normal(0, 0.5, ROWS)
    return prepare_features(pl.DataFrame({"a": a, "b": b, "colour": colour, "y": y}), FEATS, "y")


def imbalanced_data() -> Features:
    """~8% 'fraud' rows (25 of 300), driven by a and b."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    y = np.where(a + 0.5 * b + rng.normal(0, 1, ROWS) > 2.2, "fraud", "ok")
    frame = pl.DataFrame({"a": a, "b": b, "y": y})
    return prepare_features(frame, FEATS, "y", task="classification")


FEATS = FeaturesSection()
REG = regression_data()
CLF = imbalanced_data()
assert CLF.y is not None
N_FRAUD = int((CLF.y == "fraud").sum())
BINARY = Target("classification", ("fraud", "ok"), "fraud")


def regression_plan(**extra: Any) -> SearchPlan:
    return SearchPlan(Target("regression"), "rmse", folds=3, seed=0, **extra)


def classification_plan(**extra: Any) -> SearchPlan:
    return SearchPlan(BINARY, "f1_macro", folds=4, seed=0, **extra)


def regress(candidate: Candidate, **extra: Any) -> Tuned:
    return tune_candidate("c", candidate, REG, ALL_ROWS, regression_plan(**extra))


def classify(candidate: Candidate, **extra: Any) -> Tuned:
    return tune_candidate("c", candidate, CLF, ALL_ROWS, classification_plan(**extra))


def configs(tuned: Tuned) -> list[dict[str, Any]]:
    return [json.loads(p) for p in tuned.cv_results["params"].unique(maintain_order=True)]


def means(results: pl.DataFrame, metric: str) -> dict[str, float]:
    rows = results.filter(pl.col("metric") == metric).group_by("params").agg(pl.col("value").mean())
    return dict(zip(rows["params"], rows["value"], strict=True))


def test_data_is_imbalanced() -> None:
    assert 15 <= N_FRAUD <= 35


# --- grid and random -----------------------------------------------------------------------------


def test_grid_search_scores_every_config_on_every_fold_and_metric() -> None:
    tuned = regress(Candidate(family="decision_tree", params=TREE_GRID))

    results = tuned.cv_results
    assert len(configs(tuned)) == 12
    assert results.height == 12 * 3 * len(REGRESSION)
    assert set(results["metric"]) == set(REGRESSION)
    assert (
        results["iteration"].null_count() == results["n_resources"].null_count() == results.height
    )
    rmse = means(results, "rmse")
    assert json.dumps(tuned.best_params, sort_keys=True) == min(rmse, key=rmse.__getitem__)


def test_grid_search_on_classes_stores_every_classification_metric() -> None:
    tuned = classify(Candidate(family="logistic_regression", params={"C": [0.1, 1.0]}))

    assert set(tuned.cv_results["metric"]) == set(CLASSIFICATION)
    assert set(tuned.cv_means) == set(CLASSIFICATION)
    assert tuned.cv_results.height == 2 * 4 * len(CLASSIFICATION)


def test_a_model_without_probabilities_has_no_log_loss() -> None:
    tuned = classify(Candidate(family="svm", params={"C": [1.0]}))

    assert set(tuned.cv_results["metric"]) == set(CLASSIFICATION) - {"log_loss"}


def test_random_search_tries_n_iter_distinct_configs_from_the_space() -> None:
    tuned = classify(Candidate(family="decision_tree", search="random", n_iter=4, params=TREE_GRID))

    tried = configs(tuned)
    assert len(tried) == 4
    assert len({json.dumps(c, sort_keys=True) for c in tried}) == 4
    for config in tried:
        assert config["max_depth"] in TREE_GRID["max_depth"]
        assert config["min_samples_leaf"] in TREE_GRID["min_samples_leaf"]
    assert tuned.cv_results.height == 4 * 4 * len(CLASSIFICATION)
    assert tuned.cv_results["iteration"].null_count() == tuned.cv_results.height


# --- successive halving --------------------------------------------------------------------------


def rounds(tuned: Tuned) -> pl.DataFrame:
    return (
        tuned.cv_results.group_by("iteration")
        .agg(
            pl.len().alias("rows"),
            pl.col("params").n_unique().alias("configs"),
            pl.col("n_resources").min().alias("resources"),
            pl.col("n_resources").n_unique().alias("distinct_resources"),
        )
        .sort("iteration")
    )


def check_halving(tuned: Tuned, metric: str, first_round_configs: int, folds: int) -> None:
    results = tuned.cv_results
    assert set(results["metric"]) == {metric}  # halving optimises one metric, stores only it
    assert set(tuned.cv_means) == {metric}
    assert results["iteration"].null_count() == results["n_resources"].null_count() == 0
    per_round = rounds(tuned)
    assert per_round.height >= 2
    assert per_round["iteration"].to_list() == list(range(per_round.height))
    assert per_round["configs"][0] == first_round_configs
    assert per_round["rows"][0] == first_round_configs * folds
    assert (per_round["rows"].diff().drop_nulls() < 0).all()  # fewer rows in later rounds
    assert (per_round["resources"].diff().drop_nulls() > 0).all()  # on more training rows
    assert (per_round["distinct_resources"] == 1).all()
    # the last round trains on most of the train rows, and the winner comes from it
    assert per_round["resources"][-1] > ROWS / 2
    last = results.filter(pl.col("iteration") == per_round.height - 1)
    scores = means(last, metric)
    pick = max if greater_is_better(metric) else min
    best = pick(scores, key=scores.__getitem__)
    assert json.dumps(tuned.best_params, sort_keys=True) == best
    assert tuned.cv_means[metric] == pytest.approx(scores[best])


def test_halving_grid_starts_with_every_config_and_narrows_down() -> None:
    tuned = regress(Candidate(family="decision_tree", search="halving", params=TREE_GRID))

    check_halving(tuned, "rmse", first_round_configs=12, folds=3)


def test_halving_random_starts_with_n_iter_configs() -> None:
    candidate = Candidate(
        family="decision_tree", search="halving_random", n_iter=6, params=TREE_GRID
    )

    tuned = regress(candidate)

    check_halving(tuned, "rmse", first_round_configs=6, folds=3)


def test_halving_on_classes_keeps_the_rare_class_in_every_fold() -> None:
    candidate = Candidate(
        family="logistic_regression", search="halving", params={"C": [0.01, 0.1, 1.0, 10.0]}
    )

    tuned = classify(candidate)

    check_halving(tuned, "f1_macro", first_round_configs=4, folds=4)
    assert tuned.cv_results["value"].is_nan().sum() == 0


def test_halving_stores_the_candidates_own_scoring_metric() -> None:
    candidate = Candidate(family="decision_tree", search="halving", scoring="r2", params=TREE_GRID)

    tuned = regress(candidate)

    check_halving(tuned, "r2", first_round_configs=12, folds=3)


# --- what the search optimises -------------------------------------------------------------------

BALANCE = {"class_weight": ["none", "balanced"]}


@pytest.mark.parametrize(
    ("scoring", "winner"), [("recall", "balanced"), ("accuracy", None), (None, None)]
)
def test_scoring_on_a_candidate_changes_what_the_search_optimises(
    scoring: str | None, winner: str | None
) -> None:
    """On imbalanced data, reweighting the classes buys recall at the cost of accuracy."""
    tuned = classify(Candidate(family="logistic_regression", scoring=scoring, params=BALANCE))

    assert tuned.best_params == {"class_weight": winner}
    metric = scoring or "f1_macro"  # the run's primary metric when the candidate names none
    scores = means(tuned.cv_results, metric)
    assert json.dumps(tuned.best_params) == max(scores, key=scores.__getitem__)
    # all metrics are still recorded, whichever one picked the winner
    assert set(tuned.cv_results["metric"]) == set(CLASSIFICATION)


def test_recall_scoring_finds_more_of_the_rare_class_than_accuracy_scoring() -> None:
    by_recall = classify(Candidate(family="logistic_regression", scoring="recall", params=BALANCE))
    by_accuracy = classify(
        Candidate(family="logistic_regression", scoring="accuracy", params=BALANCE)
    )

    assert by_recall.cv_means["recall"] > by_accuracy.cv_means["recall"] + 0.2
    assert by_accuracy.cv_means["accuracy"] > by_recall.cv_means["accuracy"]


# --- the folds -----------------------------------------------------------------------------------


def test_repeated_kfold_doubles_the_folds_for_regression() -> None:
    candidate = Candidate(family="ridge", params={"alpha": [1.0]})

    once = regress(candidate)
    twice = regress(candidate, repeats=2)

    assert isinstance(cv_splitter(regression_plan(repeats=2)), RepeatedKFold)
    assert sorted(once.cv_results["fold"].unique()) == [0, 1, 2]
    assert sorted(twice.cv_results["fold"].unique()) == [0, 1, 2, 3, 4, 5]
    assert twice.cv_results.height == 2 * once.cv_results.height


def test_repeated_kfold_doubles_the_folds_for_classes_and_stays_stratified() -> None:
    plan = classification_plan(repeats=2)
    candidate = Candidate(family="logistic_regression", params={"C": [1.0]})

    tuned = tune_candidate("c", candidate, CLF, ALL_ROWS, plan)

    splitter = cv_splitter(plan)
    assert isinstance(splitter, RepeatedStratifiedKFold)
    assert tuned.cv_results["fold"].n_unique() == 8
    X, y, _ = train_view(CLF, ALL_ROWS, plan)
    test_folds = [test for _, test in splitter.split(X, y)]
    assert len(test_folds) == 8
    # each repeat covers every row once, with a different shuffle
    for repeat in (test_folds[:4], test_folds[4:]):
        assert sorted(np.concatenate(repeat).tolist()) == ALL_ROWS.tolist()
    assert not all(
        np.array_equal(a, b) for a, b in zip(test_folds[:4], test_folds[4:], strict=True)
    )
    for test in test_folds:
        assert abs(int((y[test] == "fraud").sum()) - N_FRAUD / 4) <= 1


def test_classification_folds_are_stratified_on_imbalanced_data() -> None:
    plan = classification_plan()
    X, y, groups = train_view(CLF, ALL_ROWS, plan)

    splitter = cv_splitter(plan)

    assert isinstance(splitter, StratifiedKFold) and groups is None
    fraud_per_fold = [int((y[test] == "fraud").sum()) for _, test in splitter.split(X, y)]
    assert min(fraud_per_fold) >= 1  # every fold has both classes
    assert max(fraud_per_fold) - min(fraud_per_fold) <= 1  # and the same share of fraud
    assert sum(fraud_per_fold) == N_FRAUD


def test_every_classification_fold_can_score_the_rare_class() -> None:
    tuned = classify(Candidate(family="logistic_regression", params={"C": [1.0]}))

    per_fold = tuned.cv_results.filter(pl.col("metric").is_in(["roc_auc", "pr_auc", "recall"]))
    assert per_fold.height == 3 * 4
    assert per_fold["value"].is_nan().sum() == 0
    assert (per_fold.filter(pl.col("metric") == "roc_auc")["value"] > 0.7).all()


def test_regression_folds_are_shuffled_kfold() -> None:
    splitter = cv_splitter(regression_plan())

    assert isinstance(splitter, KFold) and splitter.shuffle
    first_test = next(iter(splitter.split(REG.X)))[1]
    assert not np.array_equal(first_test, np.arange(len(first_test)))

"""Bootstrap intervals, CV mean ± std, champion selection on train + validation, and the final
refit on every labelled row, on small seeded tables."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
)

from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks import uncertainty
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target, resampled_metric, score_all, scorers
from mallard.tasks.tune import SearchPlan, Tuned, tune_candidate
from mallard.tasks.uncertainty import (
    SMALL_SELECTION_REPEATS,
    best_cv,
    bootstrap_interval,
    cv_summary,
    finalize,
    holdout_intervals,
    select_champion,
    selection_plan,
)


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(mean_squared_error(y, p)))


def noisy(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=rows)
    return y, y + rng.normal(0, 0.5, rows)


def test_the_interval_contains_the_estimate_and_is_deterministic_per_seed() -> None:
    y, p = noisy(200)

    first = bootstrap_interval(y, p, rmse, n_boot=300, seed=7)
    again = bootstrap_interval(y, p, rmse, n_boot=300, seed=7)
    other = bootstrap_interval(y, p, rmse, n_boot=300, seed=8)

    assert first.low < first.estimate < first.high
    assert first.estimate == pytest.approx(rmse(y, p))
    assert first == again
    assert other != first
    assert first.n_boot == 300 and first.level == 0.95


def test_the_interval_narrows_with_more_rows() -> None:
    widths = []
    for rows in (100, 1_000, 10_000):
        y, p = noisy(rows, seed=1)
        interval = bootstrap_interval(y, p, r2_score, n_boot=200, seed=0)
        widths.append(interval.high - interval.low)

    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 5  # ~ sqrt(100)


def test_undefined_resamples_are_left_out() -> None:
    from sklearn.metrics import roc_auc_score

    y = np.array([0] * 9 + [1])  # many resamples hold no positive: ROC AUC undefined there
    score = np.linspace(0, 1, 10)

    interval = bootstrap_interval(y, score, roc_auc_score, n_boot=200, seed=0)

    assert 0 < interval.n_boot < 200
    assert interval.contains(interval.estimate)


def table(rows: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "y": 2 * a - b + rng.normal(0, 1.0, rows),
            "label": np.where(a + rng.normal(0, 0.7, rows) > 0, "yes", "no"),
        }
    )


PLAN = SearchPlan(target=Target("regression"), primary="rmse", folds=3, seed=1)


def tuned_pair(data: Features, train: np.ndarray) -> list[Tuned]:
    ridge = tune_candidate(
        "ridge", Candidate(family="ridge", params={"alpha": [0.1, 10.0]}), data, train, PLAN
    )
    tree = tune_candidate(
        "tree",
        Candidate(family="decision_tree", params={"max_depth": [2]}),
        data,
        train,
        PLAN,
    )
    dummy = tune_candidate("dummy", Candidate(family="dummy"), data, train, PLAN)
    return [ridge, tree, dummy]


def test_holdout_intervals_match_the_scorers_point_figures() -> None:
    data = prepare_features(table(300), FeaturesSection(drop=["label"]), "y")
    assert data.y is not None
    train, test = np.arange(200), np.arange(200, 300)
    ridge = tuned_pair(data, train)[0]
    scoring = scorers(PLAN.target, ridge.model)
    X, y = data.X[test], data.y[test]

    intervals = holdout_intervals(scoring, ridge.model, X, y, n_boot=200, seed=3)

    points = score_all(scoring, ridge.model, X, y)
    assert set(intervals) == set(points)
    for name, interval in intervals.items():
        assert interval.estimate == pytest.approx(points[name])
        assert interval.contains(points[name])
    assert intervals["rmse"].low > 0  # the metric's own sign, not the scorer's


def test_holdout_intervals_for_classes_read_probabilities_of_the_positive_class() -> None:
    data = prepare_features(table(300), FeaturesSection(drop=["y"]), "label", task="classification")
    assert data.y is not None
    plan = SearchPlan(
        target=Target("classification", ("no", "yes"), "yes"), primary="f1_macro", folds=3, seed=1
    )
    model = tune_candidate(
        "lr",
        Candidate(family="logistic_regression", params={"C": [1.0]}),
        data,
        np.arange(200),
        plan,
    ).model
    scoring = scorers(plan.target, model)
    X, y = data.X[200:], data.y[200:]

    intervals = holdout_intervals(scoring, model, X, y, n_boot=100, seed=0)

    points = score_all(scoring, model, X, y)
    for name in ("roc_auc", "pr_auc", "f1", "log_loss", "accuracy"):
        assert intervals[name].estimate == pytest.approx(points[name]), name


class _Fixed(BaseEstimator):
    """A fitted model whose predictions are given (the replay reads predict only)."""

    def __init__(self, predictions: np.ndarray | None = None) -> None:
        self.predictions = predictions

    def predict(self, X: np.ndarray) -> np.ndarray:
        assert self.predictions is not None
        return self.predictions[np.asarray(X, dtype=int).ravel()]


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("rmse", rmse),
        ("mae", mean_absolute_error),
        ("mape", mean_absolute_percentage_error),
        ("r2", r2_score),
    ],
)
def test_blockwise_regression_intervals_equal_scikit_learns_resample_by_resample(
    name: str, reference: Callable[[np.ndarray, np.ndarray], float]
) -> None:
    y, p = noisy(150, seed=4)
    y[:3] = 0.0  # MAPE's zero guard
    scorer = scorers(Target("regression"), None)[name]
    calls = []

    def counted(*args: object) -> float:
        calls.append(1)
        return float(scorer(*args))

    fast = holdout_intervals({name: counted}, _Fixed(p), np.arange(150), y, n_boot=400, seed=9)[
        name
    ]
    assert len(calls) == 1  # the point estimate; the 400 resamples are one array expression
    slow = bootstrap_interval(y, p, reference, n_boot=400, seed=9)

    assert fast.n_boot == slow.n_boot == 400
    assert (fast.estimate, fast.low, fast.high) == pytest.approx(
        (slow.estimate, slow.low, slow.high), rel=1e-9
    )


def test_blockwise_accuracy_equals_scikit_learns_and_r2_of_a_constant_target_is_finite() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(np.array(["no", "yes"]), 120)
    p = np.where(rng.random(120) < 0.8, y, "no")
    scoring = {
        "accuracy": scorers(Target("classification", ("no", "yes"), "yes"), None)["accuracy"]
    }

    fast = holdout_intervals(scoring, _Fixed(p), np.arange(120), y, n_boot=300, seed=1)
    slow = bootstrap_interval(y, p, accuracy_score, n_boot=300, seed=1)
    assert (fast["accuracy"].low, fast["accuracy"].high) == pytest.approx((slow.low, slow.high))

    constant = np.ones(20)
    r2 = resampled_metric("r2")
    assert r2 is not None
    exact, off = (
        r2(constant[None, :], constant[None, :]),
        r2(constant[None, :], constant[None, :] * 2),
    )
    assert exact.tolist() == [r2_score(constant, constant)] and off.tolist() == [0.0]


@pytest.mark.parametrize("classes", [("no", "yes"), ("a", "b", "c")])
@pytest.mark.parametrize("name", ["precision", "recall", "f1", "f1_macro", "balanced_accuracy"])
def test_blockwise_label_metrics_equal_scikit_learns_resample_by_resample(
    classes: tuple[str, ...], name: str
) -> None:
    rng = np.random.default_rng(len(classes))
    y = rng.choice(np.array(classes), 60)
    p = np.where(rng.random(60) < 0.6, y, classes[0])  # some classes rarely predicted
    target = Target("classification", classes, "yes" if len(classes) == 2 else None)
    scorer = scorers(target, None)[name]
    calls = []

    def counted(*args: object) -> float:
        calls.append(1)
        return float(scorer(*args))

    fast = holdout_intervals(
        {name: counted}, _Fixed(p), np.arange(60), y, target=target, n_boot=300, seed=2
    )[name]

    # pos_label only where scikit-learn reads it (binary); macro averages every class.
    binary = len(classes) == 2 and name != "f1_macro"
    by_label = {"average": "binary", "pos_label": "yes"} if binary else {"average": "macro"}
    reference = {
        "precision": partial(precision_score, **by_label, zero_division=0),
        "recall": partial(recall_score, **by_label, zero_division=0),
        "f1": partial(f1_score, **by_label, zero_division=0),
        "f1_macro": partial(f1_score, average="macro", zero_division=0),
        "balanced_accuracy": balanced_accuracy_score,
    }[name]
    slow = bootstrap_interval(y, p, reference, n_boot=300, seed=2)
    assert len(calls) == 1
    assert fast.n_boot == slow.n_boot
    assert (fast.estimate, fast.low, fast.high) == pytest.approx(
        (slow.estimate, slow.low, slow.high), rel=1e-9
    )


def test_resamples_are_the_same_whatever_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    y, p = noisy(500, seed=5)
    whole = bootstrap_interval(y, p, rmse, n_boot=200, seed=3)
    monkeypatch.setattr(uncertainty, "RESAMPLE_BLOCK_CELLS", 1_700)  # 3 resamples per block
    blocked = bootstrap_interval(y, p, rmse, n_boot=200, seed=3)
    assert (blocked.low, blocked.high, blocked.n_boot) == (whole.low, whole.high, whole.n_boot)


def test_cv_summary_gives_mean_and_std_over_folds() -> None:
    data = prepare_features(table(150), FeaturesSection(drop=["label"]), "y")
    ridge = tuned_pair(data, np.arange(150))[0]

    summary = cv_summary(ridge.cv_results)

    assert summary.height == 2 * len(ridge.cv_results["metric"].unique())  # 2 alphas
    assert (summary["n_folds"] == 3).all()
    mean, std = best_cv(ridge)["rmse"]
    assert mean == pytest.approx(ridge.cv_means["rmse"])
    assert std > 0


def test_selection_uses_train_and_validation_rows_with_repeats_when_small() -> None:
    data = prepare_features(table(240), FeaturesSection(drop=["label"]), "y")
    train, validation = np.arange(160), np.arange(160, 200)
    tuned = tuned_pair(data, train)
    rows = np.concatenate([train, validation])

    chosen = select_champion(tuned, data, rows, PLAN, scorers(PLAN.target, None)["rmse"])
    again = select_champion(tuned, data, rows, PLAN, scorers(PLAN.target, None)["rmse"])

    assert chosen.champion == "ridge"  # linear data: the line beats a depth-2 tree
    assert chosen.summary["candidate"].to_list()[0] == "ridge"
    assert chosen.summary["candidate"].to_list()[-1] == "dummy"
    assert (chosen.summary["n_folds"] == 3 * SMALL_SELECTION_REPEATS).all()
    assert "lowest mean rmse" in chosen.rule and "200 train + validation rows" in chosen.rule
    assert "repeats" in chosen.rule and "dummy" in chosen.rule
    assert chosen.folds.equals(again.folds)  # seeded: the same folds every time


def test_the_baseline_is_never_chosen_and_large_data_reuse_the_tuning_cv() -> None:
    data = prepare_features(table(200), FeaturesSection(drop=["label"]), "y")
    tuned = tuned_pair(data, np.arange(150))

    chosen = select_champion(
        tuned, data, np.arange(150), PLAN, scorers(PLAN.target, None)["rmse"], reuse_above=100
    )

    assert chosen.champion == "ridge"
    assert "tuning CV" in chosen.rule
    assert (chosen.summary["n_folds"] == 3).all()
    ridge_mean = chosen.summary.filter(pl.col("candidate") == "ridge")["mean"].item()
    assert ridge_mean == pytest.approx(tuned[0].cv_means["rmse"])


def test_selection_plan_repeats_only_small_random_or_stratified_data() -> None:
    assert selection_plan(PLAN, 500).repeats == SMALL_SELECTION_REPEATS
    assert selection_plan(PLAN, 50_000).repeats == 1
    grouped = SearchPlan(target=PLAN.target, primary="rmse", folds=3, seed=1, strategy="group")
    assert selection_plan(grouped, 500).repeats == 1


def test_finalize_refits_the_same_configuration_on_every_labelled_row() -> None:
    data = prepare_features(table(200), FeaturesSection(drop=["label"]), "y")
    assert data.y is not None
    train, everything = np.arange(140), np.arange(200)
    ridge = tuned_pair(data, train)[0]

    final = finalize(ridge, data, everything, PLAN)

    assert final is not ridge.model
    assert final.get_params()["model__alpha"] == ridge.best_params["alpha"]
    assert final.named_steps["prepare"].n_features_in_ == data.X.width
    # it has seen every labelled row; the evaluated model had not seen the last 60
    imputer = final.named_steps["prepare"].named_transformers_["numeric"][0]
    assert imputer.statistics_[0] == pytest.approx(float(np.median(data.X["a"].to_numpy())))
    evaluated = ridge.model.named_steps["prepare"].named_transformers_["numeric"][0]
    assert evaluated.statistics_[0] == pytest.approx(float(np.median(data.X["a"][:140].to_numpy())))
    assert not np.allclose(final.predict(data.X), ridge.model.predict(data.X))

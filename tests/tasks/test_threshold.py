"""Decision-threshold tuning on imbalanced data (the fraud generator): a threshold tuned on CV
beats the default 0.5 on a held-out split, and constrained objectives hold their floor."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score

from mallard.core.spec import Candidate, FeaturesSection, SplitSection
from mallard.examples import fraud
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.split import make_split
from mallard.tasks.tune import SearchPlan, Tuned, _constrained, threshold_scorer, tune_candidate

NOT_FEATURES = ["transaction_id", "customer_id", "email", "postcode", "age_group"]
BINARY = Target("classification", (0, 1), 1)
LOGISTIC = Candidate(family="logistic_regression", params={"C": [1.0]})


def fraud_features(rows: int = 4000, seed: int = 1) -> Features:
    """The generator's rows, typed, without its planted defects (as validation would leave)."""
    frame = (
        fraud(rows, seed)
        .with_columns(
            pl.col("amount", "distance_from_home_km").cast(pl.Float64),
            pl.col("hour", "velocity_24h", "is_fraud").cast(pl.Int64),
        )
        .filter(
            (pl.col("amount") >= 0)
            & (pl.col("hour") <= 23)
            & (pl.col("merchant_category") != "???")
        )
    )
    return prepare_features(
        frame, FeaturesSection(drop=NOT_FEATURES), "is_fraud", task="classification"
    )


FEATURES = fraud_features()
assert FEATURES.y is not None
Y = FEATURES.y
SPLIT = make_split(
    len(Y), SplitSection(strategy="stratified", test=0.3, validation=0.15), 1, folds=4, y=Y
)
TRAIN = np.concatenate([SPLIT.train, SPLIT.validation])  # tuning and threshold CV
HELD_OUT = SPLIT.test  # never seen by either


def tuned_with(objective: str | None) -> Tuned:
    plan = SearchPlan(
        BINARY, "pr_auc", folds=4, seed=1, strategy="stratified", tune_threshold=objective
    )
    return tune_candidate("lr", LOGISTIC, FEATURES, TRAIN, plan)


def scores(tuned: Tuned, rows: np.ndarray) -> dict[str, float]:
    predicted = tuned.model.predict(FEATURES.X[rows])
    actual = Y[rows]
    return {
        "f1": float(f1_score(actual, predicted)),
        "precision": float(precision_score(actual, predicted, zero_division=0)),
        "recall": float(recall_score(actual, predicted)),
    }


@pytest.fixture(scope="module")
def plain() -> Tuned:
    return tuned_with(None)


@pytest.fixture(scope="module")
def by_f1() -> Tuned:
    return tuned_with("f1")


@pytest.fixture(scope="module")
def by_recall_at_precision() -> Tuned:
    return tuned_with("max_recall_at_precision:0.5")


def test_the_data_is_imbalanced_and_the_held_out_split_has_fraud() -> None:
    assert 0.01 < Y.mean() < 0.03
    assert Y[HELD_OUT].sum() >= 15


def test_without_threshold_tuning_the_model_cuts_at_one_half(plain: Tuned) -> None:
    assert plain.threshold is None
    X = FEATURES.X[HELD_OUT]
    proba = plain.model.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(plain.model.predict(X), (proba > 0.5).astype(int))


def test_f1_tuning_moves_the_threshold_and_beats_one_half_on_held_out_rows(
    plain: Tuned, by_f1: Tuned
) -> None:
    assert by_f1.threshold is not None
    # rare positives: the F1-optimal cut sits well below 0.5
    assert 0.02 < by_f1.threshold < 0.45
    assert by_f1.model.best_threshold_ == by_f1.threshold
    tuned, default = scores(by_f1, HELD_OUT), scores(plain, HELD_OUT)
    assert tuned["f1"] > default["f1"] + 0.05, (tuned, default)
    assert tuned["recall"] > default["recall"]
    # same hyperparameters and pipeline: only the cut moved
    assert by_f1.best_params == plain.best_params


def test_the_tuned_model_predicts_positive_at_or_above_its_threshold(by_f1: Tuned) -> None:
    X = FEATURES.X[HELD_OUT]
    proba = by_f1.model.predict_proba(X)[:, 1]

    predicted = by_f1.model.predict(X)

    assert by_f1.threshold is not None
    np.testing.assert_array_equal(predicted, (proba >= by_f1.threshold).astype(int))
    assert ((proba >= by_f1.threshold) & (proba < 0.5)).any()  # rows the default cut would miss


def test_recall_at_precision_holds_the_precision_floor(
    plain: Tuned, by_recall_at_precision: Tuned, by_f1: Tuned
) -> None:
    tuned = by_recall_at_precision
    assert tuned.threshold is not None
    # its CV score is the recall (in [0, 1]) only when the floor was met; a miss scores below 0
    assert 0.0 <= tuned.model.best_score_ <= 1.0
    on_train = scores(tuned, TRAIN)
    assert on_train["precision"] >= 0.5
    # where precision allows, it finds more fraud than the default cut
    assert on_train["recall"] > scores(plain, TRAIN)["recall"]
    # a precision floor is stricter than F1 here: a higher threshold
    assert by_f1.threshold is not None and tuned.threshold > by_f1.threshold
    held_out = scores(tuned, HELD_OUT)
    assert held_out["precision"] >= 0.4, held_out  # ~0.5 on unseen rows, few positives


def test_the_constrained_objective_ranks_every_miss_below_every_hit() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    meets = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])  # precision 2/3, recall 1/2
    misses_close = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])  # precision 3/5, recall 3/4
    misses_far = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1])  # precision 2/5, recall 1

    def score(predicted: np.ndarray) -> float:
        return _constrained(y, predicted, 1, "max_recall_at_precision", 0.65)

    assert score(meets) == pytest.approx(0.5)
    assert score(misses_close) == pytest.approx(0.6 - 1.0)
    assert score(misses_far) == pytest.approx(0.4 - 1.0)
    assert score(meets) > score(misses_close) > score(misses_far)


def test_precision_at_recall_is_the_mirror_objective() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    strict = np.array([1, 0, 0, 0, 0, 0, 0, 0])  # precision 1, recall 1/4
    loose = np.array([1, 1, 1, 0, 1, 0, 0, 0])  # precision 3/4, recall 3/4

    def score(predicted: np.ndarray) -> float:
        return _constrained(y, predicted, 1, "max_precision_at_recall", 0.7)

    assert score(loose) == pytest.approx(0.75)
    assert score(strict) == pytest.approx(0.25 - 1.0)


def test_threshold_scorers_score_the_positive_class() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 1))
    y = np.where(X[:, 0] + rng.normal(0, 1, 200) > 1.5, "fraud", "ok")
    model = LogisticRegression().fit(X, y)
    predicted = model.predict(X)
    assert 0 < (predicted == "fraud").sum() < (y == "fraud").sum()

    f1 = threshold_scorer("f1", "fraud")(model, X, y)
    floor = threshold_scorer("max_recall_at_precision:0.4", "fraud")(model, X, y)

    assert f1 == pytest.approx(f1_score(y, predicted, pos_label="fraud"))
    assert f1 != pytest.approx(f1_score(y, predicted, pos_label="ok"))
    assert floor == pytest.approx(recall_score(y, predicted, pos_label="fraud"))
    assert threshold_scorer("balanced_accuracy", "fraud") == "balanced_accuracy"


def test_the_baseline_and_multiclass_targets_get_no_threshold() -> None:
    rows = np.arange(600)
    plan = SearchPlan(BINARY, "f1", folds=3, seed=0, tune_threshold="f1")
    baseline = tune_candidate("baseline", Candidate(family="dummy"), FEATURES, rows, plan)
    assert baseline.threshold is None
    assert not hasattr(baseline.model, "best_threshold_")

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    label = np.select([x < -0.5, x < 0.5], ["low", "mid"], "high")
    three = prepare_features(
        pl.DataFrame({"x": x, "label": label}), FeaturesSection(), "label", task="classification"
    )
    multiclass = SearchPlan(
        Target("classification", ("high", "low", "mid")), "f1_macro", 3, 0, tune_threshold="f1"
    )
    tuned = tune_candidate("lr", LOGISTIC, three, np.arange(300), multiclass)
    assert tuned.threshold is None
    assert set(tuned.model.predict(three.X)) == {"low", "mid", "high"}

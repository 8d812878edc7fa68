"""Permutation importance over raw input columns of a fitted one-hot Pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from mallard.core.errors import InputError
from mallard.core.spec import FeaturesSection
from mallard.tasks.features import model_pipeline, prepare_features
from mallard.tasks.importance import IMPORTANCE_SCHEMA, permutation_importance_table

ROWS = 300


def sample(seed: int = 7) -> pl.DataFrame:
    """`signal` drives the regression target, `city` the class; the rest is noise. The city column
    has nulls so the pipeline's categorical imputer is exercised through permutation too."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=ROWS)
    city = rng.choice(["north", "south", "east", "west"], ROWS).astype(object)
    city[rng.random(ROWS) < 0.05] = None
    north = city == "north"
    return pl.DataFrame(
        {
            "signal": signal,
            "noise": rng.normal(size=ROWS),
            "rooms": rng.integers(1, 6, ROWS),
            "city": pl.Series(city, dtype=pl.String),
            "price": 5.0 * signal + rng.normal(scale=0.5, size=ROWS),
            "bought": (north ^ (rng.random(ROWS) < 0.1)).astype(np.int64),
        }
    )


def fitted(target: str, estimator: Any) -> tuple[Pipeline, pl.DataFrame, np.ndarray]:
    """The model, its input columns and the target, built as the train flow builds them."""
    task = "regression" if target == "price" else "classification"
    other = "bought" if target == "price" else "price"
    data = prepare_features(sample(), FeaturesSection(drop=[other]), target, task=task)
    y = data.y
    assert y is not None
    return model_pipeline(data, estimator).fit(data.X, y), data.X, y


def test_the_driving_feature_ranks_first_for_a_regressor() -> None:
    model, X, y = fitted("price", Ridge())

    table = permutation_importance_table(model, X, y, "r2")

    assert table.schema == pl.Schema(IMPORTANCE_SCHEMA)
    assert table["feature"][0] == "signal"
    assert table["importance_mean"][0] > 1.0  # shuffling it wipes out r2 (~0.99) and then some
    assert sorted(table["feature"]) == sorted(X.columns)  # raw columns, not one-hot ones
    assert table["rank"].to_list() == list(range(1, X.width + 1))
    assert table["importance_mean"].is_sorted(descending=True)


def test_a_categorical_driver_ranks_first_for_a_classifier_with_roc_auc() -> None:
    model, X, y = fitted("bought", LogisticRegression())

    table = permutation_importance_table(model, X, pl.Series(y), "roc_auc")

    assert table["feature"].to_list()[0] == "city"
    assert table["importance_mean"][0] > 0.2
    assert table["rank"].to_list() == [1, 2, 3, 4]
    noise = table.filter(pl.col("feature") != "city")["importance_mean"]
    assert noise.abs().max() < 0.05  # type: ignore[operator]


def test_same_seed_same_table_and_another_seed_another() -> None:
    model, X, y = fitted("price", Ridge())

    first = permutation_importance_table(model, X, y, "r2", n_repeats=3, seed=1)
    again = permutation_importance_table(model, X, y, "r2", n_repeats=3, seed=1)
    other = permutation_importance_table(model, X, y, "r2", n_repeats=3, seed=2)

    assert first.equals(again)
    assert not first.equals(other)


def test_an_empty_frame_is_refused() -> None:
    model, X, y = fitted("price", Ridge())

    with pytest.raises(InputError, match="at least one row"):
        permutation_importance_table(model, X.head(0), y[:0], "r2")


def test_the_figures_agree_with_scikit_learns_permutation_importance() -> None:
    model, X, y = fitted("price", Ridge())

    ours = permutation_importance_table(model, X, y, "r2", n_repeats=30, seed=0)
    # pandas, with text as object dtype so a null stays None (what the fitted imputer expects)
    frame = pd.DataFrame({c: pd.Series(X[c].to_list(), dtype=object) for c in X.columns})
    frame = frame.astype({c: float for c in X.columns if X[c].dtype.is_numeric()})
    theirs = permutation_importance(model, frame, y, scoring="r2", n_repeats=30, random_state=0)

    by_feature = dict(zip(X.columns, theirs.importances_mean, strict=True))
    for row in ours.iter_rows(named=True):
        expected = by_feature[row["feature"]]
        assert row["importance_mean"] == pytest.approx(expected, rel=0.1, abs=0.01), row


def test_the_shuffled_copies_of_a_column_are_predicted_in_one_call() -> None:
    model, X, y = fitted("price", Ridge())
    calls: list[int] = []

    original = model.predict

    def predict(frame: Any) -> Any:
        calls.append(len(frame))
        return original(frame)

    model.predict = predict  # type: ignore[method-assign]
    permutation_importance_table(model, X, y, "r2", n_repeats=5, seed=0)

    assert calls == [ROWS] + [5 * ROWS] * X.width  # the baseline, then one call per column


def test_the_audit_measures_importance_on_a_seeded_sample_of_a_large_test_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mallard.core.spec import Candidate, FairnessSection
    from mallard.tasks import audit
    from mallard.tasks.context import RunContext
    from mallard.tasks.evaluate import model_id
    from mallard.tasks.metrics import Target
    from mallard.tasks.split import Split
    from mallard.tasks.tune import SearchPlan, tune_candidate

    data = prepare_features(sample(), FeaturesSection(drop=["bought"]), "price")
    split = Split(train=np.arange(100), validation=np.arange(100, 120), test=np.arange(120, ROWS))
    plan = SearchPlan(target=Target("regression"), primary="rmse", folds=2, seed=3)
    ridge = tune_candidate("ridge", Candidate(family="ridge"), data, split.train, plan)
    context = RunContext("run-1", data, split, Target("regression"), "rmse", seed=3)
    seen: list[pl.DataFrame] = []

    def spy(model: Any, X: pl.DataFrame, *args: Any) -> pl.DataFrame:
        seen.append(X)
        return permutation_importance_table(model, X, *args)

    monkeypatch.setattr(audit, "IMPORTANCE_MAX_ROWS", 50)
    monkeypatch.setattr(audit, "permutation_importance_table", spy)
    run = audit.audit_run(
        context, tuned=[ridge], best_id=model_id("run-1", "ridge"), fairness=FairnessSection()
    )
    again = audit.audit_run(
        context, tuned=[ridge], best_id=model_id("run-1", "ridge"), fairness=FairnessSection()
    )

    assert [x.height for x in seen] == [50, 50]  # 180 test rows, sampled down
    assert seen[0].equals(seen[1])  # seeded: the same rows every time
    assert run.importance is not None and run.importance.equals(again.importance)

"""tune_candidate: CV results in long form, metric signs, search strategies, and no leakage."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from mallard.core.catalogue import REGRESSION
from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks.families import FAMILIES, Family
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.model_files import save_model
from mallard.tasks.tune import CV_COLUMNS, SearchPlan, Tuned, tune_candidate

REGRESSORS = FAMILIES["regression"]
N_ROWS = 200
METRICS = sorted(REGRESSION)


def generated(seed: int = 0, noise_only: bool = False) -> Features:
    """200 rows: price depends on two numeric columns and a category, plus noise."""
    rng = np.random.default_rng(seed)
    lotsize = rng.normal(5000, 1000, N_ROWS)
    bedrooms = rng.integers(1, 6, N_ROWS).astype(float)
    driveway = rng.choice(["yes", "no"], N_ROWS)
    noise = rng.normal(0, 1, N_ROWS)
    if noise_only:
        price = rng.normal(100_000, 20_000, N_ROWS)
    else:
        price = 50_000 + 20 * lotsize + 8_000 * bedrooms + 10_000 * (driveway == "yes")
        price = price + rng.normal(0, 3_000, N_ROWS)
    frame = pl.DataFrame(
        {
            "price": price,
            "lotsize": lotsize,
            "bedrooms": bedrooms,
            "noise": noise,
            "driveway": driveway,
        }
    )
    return prepare_features(frame, FeaturesSection(), "price")


FEATURES = generated()
TRAIN_ROWS = np.sort(np.random.default_rng(1).permutation(N_ROWS)[:160])


def run(
    candidate: Candidate,
    *,
    features: Features = FEATURES,
    folds: int = 4,
    seed: int = 42,
    primary: str = "rmse",
    name: str = "cand",
) -> Tuned:
    plan = SearchPlan(target=Target("regression"), primary=primary, folds=folds, seed=seed)
    return tune_candidate(name, candidate, features, TRAIN_ROWS, plan)


def params_of(tuned: Tuned) -> list[dict[str, Any]]:
    return [json.loads(p) for p in tuned.cv_results["params"].unique(maintain_order=True)]


def mean_by_params(tuned: Tuned, metric: str) -> dict[str, float]:
    rows = (
        tuned.cv_results.filter(pl.col("metric") == metric)
        .group_by("params")
        .agg(pl.col("value").mean())
    )
    return dict(zip(rows["params"], rows["value"], strict=True))


@pytest.fixture(scope="module")
def ridge() -> Tuned:
    return run(Candidate(family="ridge", params={"alpha": [0.1, 10.0, 1000.0]}), name="ridge")


def test_cv_results_have_one_row_per_config_fold_and_metric(ridge: Tuned) -> None:
    results = ridge.cv_results

    assert results.schema == pl.Schema(CV_COLUMNS)
    assert results.height == 3 * 4 * len(REGRESSION)
    assert sorted(results["metric"].unique().to_list()) == METRICS
    assert sorted(results["fold"].unique().to_list()) == [0, 1, 2, 3]
    assert params_of(ridge) == [{"alpha": 0.1}, {"alpha": 10.0}, {"alpha": 1000.0}]
    assert results.group_by("params", "fold", "metric").len()["len"].max() == 1
    assert set(results["candidate"]) == {"ridge"} and set(results["family"]) == {"ridge"}
    assert results["value"].null_count() == 0


def test_error_metrics_are_stored_positive_not_negated(ridge: Tuned) -> None:
    results = ridge.cv_results

    for metric in ("rmse", "mae", "mape"):
        assert (results.filter(pl.col("metric") == metric)["value"] > 0).all(), metric
    # the price scale: the noise is 3 000, so a good fold RMSE is thousands, not -thousands
    best = results.filter(
        (pl.col("metric") == "rmse") & (pl.col("params") == json.dumps({"alpha": 0.1}))
    )
    assert 1_000 < float(best["value"].mean()) < 10_000  # type: ignore[arg-type]
    assert ridge.cv_means["rmse"] > 0
    assert ridge.cv_means["r2"] > 0.9


def test_rmse_is_at_least_mae_in_every_fold(ridge: Tuned) -> None:
    wide = ridge.cv_results.pivot("metric", index=["params", "fold"], values="value")

    assert (wide["rmse"] >= wide["mae"]).all()


def test_cv_means_are_the_fold_means_of_the_best_params(ridge: Tuned) -> None:
    best = json.dumps(ridge.best_params, sort_keys=True)

    for metric in REGRESSION:
        assert ridge.cv_means[metric] == pytest.approx(mean_by_params(ridge, metric)[best])


def test_best_params_minimise_rmse_when_it_is_primary(ridge: Tuned) -> None:
    means = mean_by_params(ridge, "rmse")

    assert json.dumps(ridge.best_params) == min(means, key=means.__getitem__)
    assert ridge.best_params == {"alpha": 0.1}


def test_best_params_maximise_r2_when_it_is_primary() -> None:
    tuned = run(Candidate(family="ridge", params={"alpha": [1000.0, 0.1]}), primary="r2")
    means = mean_by_params(tuned, "r2")

    assert json.dumps(tuned.best_params) == max(means, key=means.__getitem__)
    assert tuned.best_params == {"alpha": 0.1}


def test_the_refitted_model_predicts_well(ridge: Tuned) -> None:
    held_out = np.setdiff1d(np.arange(N_ROWS), TRAIN_ROWS)

    predicted = ridge.model.predict(FEATURES.X[held_out])

    rmse = float(np.sqrt(np.mean((predicted - FEATURES.y[held_out]) ** 2)))
    assert rmse < 10_000
    assert ridge.model.named_steps["model"].alpha == 0.1
    assert ridge.seconds > 0


def test_random_search_samples_n_iter_configs() -> None:
    candidate = Candidate(
        family="decision_tree",
        search="random",
        n_iter=3,
        params={"max_depth": [2, 3, 4, 5, 6], "min_samples_leaf": [1, 5]},
    )

    first = run(candidate, folds=3)
    again = run(candidate, folds=3)

    sampled = params_of(first)
    assert len(sampled) == 3
    assert len({json.dumps(p, sort_keys=True) for p in sampled}) == 3
    for params in sampled:
        assert params["max_depth"] in [2, 3, 4, 5, 6] and params["min_samples_leaf"] in [1, 5]
    assert first.cv_results.height == 3 * 3 * len(REGRESSION)
    assert params_of(again) == sampled  # the seed fixes the sample


def test_random_search_with_n_iter_over_the_grid_size_tries_the_whole_grid() -> None:
    candidate = Candidate(
        family="decision_tree", search="random", n_iter=50, params={"max_depth": [2, 4]}
    )

    tuned = run(candidate, folds=2)

    assert sorted(p["max_depth"] for p in params_of(tuned)) == [2, 4]
    assert tuned.cv_results.height == 2 * 2 * len(REGRESSION)


def test_empty_params_use_the_family_default_space() -> None:
    tuned = run(Candidate(family="ridge"), folds=2)

    assert [p["alpha"] for p in params_of(tuned)] == REGRESSORS["ridge"].default_space["alpha"]


def test_a_family_without_a_space_is_one_config() -> None:
    tuned = run(Candidate(family="dummy"), folds=3, name="baseline")

    assert tuned.best_params == {}
    assert params_of(tuned) == [{}]
    assert tuned.cv_results.height == 3 * len(REGRESSION)
    assert tuned.cv_means["r2"] < 0.05  # predicting the mean explains nothing


def test_same_seed_same_results_different_seed_different_folds() -> None:
    candidate = Candidate(family="ridge", params={"alpha": [1.0]})

    first = run(candidate, seed=5)
    again = run(candidate, seed=5)
    other = run(candidate, seed=6)

    assert first.cv_results.equals(again.cv_results)
    assert not first.cv_results.equals(other.cv_results)


# --- leakage canaries --------------------------------------------------------------------------

SEEN: list[np.ndarray] = []  # the preprocessed matrix every probe fit received


class PreprocessedInputProbe(RegressorMixin, BaseEstimator):
    """Predicts the training mean and records what the preprocessing handed it."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift

    def fit(self, X: Any, y: np.ndarray) -> PreprocessedInputProbe:
        SEEN.append(np.asarray(X, dtype=float).copy())
        self.mean_ = float(np.mean(y)) + self.shift
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), self.mean_)


@pytest.mark.parametrize("cached", [False, True], ids=["fitted", "shared-by-fold"])
def test_preprocessing_is_fitted_inside_each_fold(
    monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    """A scaler fitted inside a fold centres exactly that fold's training rows. One fitted on all
    train rows before CV (leaking the held-out fold's statistics) would leave them off centre.
    Shared between a fold's configurations (larger tables), each fold still has its own."""
    monkeypatch.setattr("mallard.tasks.tune.CACHE_PREPROCESSING_ROWS", 0 if cached else 10**9)
    monkeypatch.setitem(REGRESSORS, "probe", Family(lambda seed: PreprocessedInputProbe()))
    # the probe records what it sees in this process, so the folds must be fitted here too
    monkeypatch.setattr("mallard.tasks.tune.CORES", 1)
    SEEN.clear()
    folds = 4

    tuned = run(Candidate(family="probe", params={"shift": [0.0, 1.0]}), folds=folds)

    n_numeric = len(FEATURES.numeric)
    assert n_numeric == 3
    fold_fits, refit = SEEN[:-1], SEEN[-1]
    assert len(fold_fits) == 2 * folds
    assert [len(X) for X in fold_fits] == [len(TRAIN_ROWS) * (folds - 1) // folds] * (2 * folds)
    for X in fold_fits:
        numeric = X[:, :n_numeric]
        np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-9)
        np.testing.assert_allclose(numeric.std(axis=0), 1.0, atol=1e-9)
    # the refit sees the whole train split, and only it
    assert len(refit) == len(TRAIN_ROWS)
    np.testing.assert_allclose(refit[:, :n_numeric].mean(axis=0), 0.0, atol=1e-9)
    assert tuned.best_params == {"shift": 0.0}


def test_the_refitted_preprocessing_saw_only_the_train_rows(ridge: Tuned) -> None:
    scaler = ridge.model.named_steps["prepare"].named_transformers_["numeric"][-1]
    train_X = FEATURES.X[TRAIN_ROWS].select(FEATURES.numeric).to_numpy()
    all_X = FEATURES.X.select(FEATURES.numeric).to_numpy()

    assert scaler.n_samples_seen_ == len(TRAIN_ROWS)
    np.testing.assert_allclose(scaler.mean_, train_X.mean(axis=0))
    assert not np.allclose(scaler.mean_, all_X.mean(axis=0))


def test_pure_noise_gives_no_predictive_cv_score() -> None:
    noise = generated(seed=3, noise_only=True)

    tuned = run(Candidate(family="decision_tree", params={"max_depth": [3, 6]}), features=noise)

    assert tuned.cv_means["r2"] < 0.05
    r2_by_fold = tuned.cv_results.filter(pl.col("metric") == "r2")["value"]
    assert float(r2_by_fold.mean()) < 0.05  # type: ignore[arg-type]


def test_sharing_fold_preprocessing_changes_no_score_and_no_model_byte(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cache only saves work: the same CV rows, the same refitted model file (the sha256
    `mallard repro` compares), and nothing of the cache left in the model or on disk."""
    from sklearn.compose import ColumnTransformer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr("mallard.tasks.tune.CORES", 1)  # the fits counted in this process
    fits = []
    fit_transform = ColumnTransformer.fit_transform

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        return fit_transform(self, *args, **kwargs)

    monkeypatch.setattr(ColumnTransformer, "fit_transform", counted)
    candidate = Candidate(family="ridge", params={"alpha": [0.1, 10.0, 1000.0]})
    runs, counts = {}, {}
    for threshold in (10**9, 0):
        monkeypatch.setattr("mallard.tasks.tune.CACHE_PREPROCESSING_ROWS", threshold)
        fits.clear()
        runs[threshold] = run(candidate, name="ridge")
        counts[threshold] = len(fits)
    plain, shared = runs[10**9], runs[0]

    assert counts == {10**9: 3 * 4 + 1, 0: 4 + 1}  # per config and fold, or per fold; + refit

    assert shared.cv_results.equals(plain.cv_results)
    assert shared.best_params == plain.best_params
    assert shared.model.get_params()["memory"] is None
    assert save_model(shared.model).sha256 == save_model(plain.model).sha256
    assert list(tmp_path.iterdir()) == []  # the cache folder went with the search


def test_a_single_configuration_shares_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """One configuration per fold (the dummy baseline, a fixed model) has nothing to share:
    no cache folder is made, so the rows are neither hashed nor written."""
    monkeypatch.setattr("mallard.tasks.tune.CACHE_PREPROCESSING_ROWS", 0)
    made = []
    folder = tempfile.TemporaryDirectory

    def recorded(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("prefix"))
        return folder(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recorded)
    run(Candidate(family="ridge", params={"alpha": [1.0]}))
    run(Candidate(family="ridge", params={"alpha": [0.1, 1.0, 10.0]}, search="random", n_iter=1))
    assert made == []
    run(Candidate(family="ridge", params={"alpha": [0.1, 1.0]}))
    assert made == ["mallard-folds-"]

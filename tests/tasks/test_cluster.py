"""Clustering on the segments generator: the number of segments found by silhouette, the tables
that describe them, and PCA in front of the clusterer."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.decomposition import PCA

from mallard.core.catalogue import CLUSTERING
from mallard.core.spec import Candidate, FeaturesSection
from mallard.examples import segments
from mallard.tasks.cluster import cluster_tables, tune_clusterer
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.tune import CV_COLUMNS, SearchPlan, Tuned

KS = [2, 3, 4, 5, 6]


def customers(rows: int = 800, seed: int = 3) -> pl.DataFrame:
    """The generator's rows, typed, without its planted defects (as validation would leave)."""
    return (
        segments(rows, seed)
        .with_columns(
            pl.col("customer_id", "recency_days", "frequency", "tenure_months").cast(pl.Int64),
            pl.col("monetary").cast(pl.Float64),
        )
        .filter((pl.col("recency_days") >= 0) & (pl.col("channel") != "fax"))
    )


def prepared(section: FeaturesSection, seed: int = 3) -> tuple[Features, SearchPlan]:
    features = prepare_features(customers(seed=seed), section, None)
    return features, SearchPlan(Target("clustering"), "silhouette", 5, 0, features=section)


SECTION = FeaturesSection(drop=["customer_id"])
FEATURES, PLAN = prepared(SECTION)
SETUP = (FEATURES, PLAN)


def silhouettes(tuned: Tuned) -> dict[int, float]:
    rows = tuned.cv_results.filter(pl.col("metric") == "silhouette")
    return {
        json.loads(p)["n_clusters"]: v for p, v in zip(rows["params"], rows["value"], strict=True)
    }


@pytest.fixture(scope="module")
def kmeans() -> Tuned:
    return tune_clusterer("kmeans", Candidate(family="kmeans", params={"n_clusters": KS}), *SETUP)


@pytest.mark.parametrize("seed", [3, 7])
def test_kmeans_finds_the_four_segments_by_silhouette(seed: int) -> None:
    features, plan = prepared(SECTION, seed)

    tuned = tune_clusterer(
        "k", Candidate(family="kmeans", params={"n_clusters": KS}), features, plan
    )

    scores = silhouettes(tuned)
    assert sorted(scores) == KS
    assert tuned.best_params == {"n_clusters": 4}
    assert max(scores, key=scores.__getitem__) == 4
    assert scores[4] > scores[2]  # four segments, not the two-way split
    assert tuned.labels is not None and len(np.unique(tuned.labels)) == 4


def test_every_configuration_is_one_fit_scored_on_every_metric(kmeans: Tuned) -> None:
    results = kmeans.cv_results

    assert results.schema == pl.Schema(CV_COLUMNS)
    assert results.height == len(KS) * len(CLUSTERING)
    assert set(results["fold"]) == {0}
    assert set(results["metric"]) == set(CLUSTERING) == set(kmeans.cv_means)
    assert results["iteration"].null_count() == results.height
    best = results.filter(pl.col("params") == json.dumps(kmeans.best_params))
    assert dict(zip(best["metric"], best["value"], strict=True)) == kmeans.cv_means


def test_the_labels_belong_to_the_fitted_model(kmeans: Tuned) -> None:
    assert kmeans.labels is not None
    assert kmeans.labels.shape == (FEATURES.X.height,)
    np.testing.assert_array_equal(kmeans.model.predict(FEATURES.X), kmeans.labels)
    assert kmeans.model.named_steps["model"].n_clusters == 4


def test_a_lower_is_better_scoring_metric_picks_the_minimum() -> None:
    candidate = Candidate(family="kmeans", scoring="davies_bouldin", params={"n_clusters": KS})

    tuned = tune_clusterer("k", candidate, FEATURES, PLAN)

    rows = tuned.cv_results.filter(pl.col("metric") == "davies_bouldin")
    lowest = rows.sort("value")["params"][0]
    assert json.dumps(tuned.best_params) == lowest
    assert tuned.cv_means["davies_bouldin"] == rows["value"].min()


def test_a_single_cluster_scores_nan_and_never_wins() -> None:
    candidate = Candidate(family="kmeans", params={"n_clusters": [1, 3]})

    tuned = tune_clusterer("k", candidate, FEATURES, PLAN)

    one = tuned.cv_results.filter(pl.col("params") == json.dumps({"n_clusters": 1}))
    assert one["value"].is_nan().all()
    assert tuned.best_params == {"n_clusters": 3}


def test_random_search_samples_n_iter_configurations() -> None:
    candidate = Candidate(
        family="agglomerative",
        search="random",
        n_iter=3,
        params={"n_clusters": KS, "linkage": ["ward", "average"]},
    )

    tuned = tune_clusterer("a", candidate, FEATURES, PLAN)

    tried = tuned.cv_results["params"].unique()
    assert tried.len() == 3
    assert tuned.cv_results.height == 3 * len(CLUSTERING)


def test_cluster_tables_describe_each_segment(kmeans: Tuned) -> None:
    assert kmeans.labels is not None
    row_index = pl.Series(np.arange(FEATURES.X.height) * 2)  # input positions, not 0..n

    assignments, profiles = cluster_tables("run:kmeans", kmeans.labels, FEATURES, row_index)

    assert assignments.columns == ["model_id", "row_index", "cluster"]
    assert assignments.height == FEATURES.X.height
    assert assignments["row_index"].to_list() == row_index.to_list()
    np.testing.assert_array_equal(assignments["cluster"].to_numpy(), kmeans.labels)
    assert set(assignments["model_id"]) == {"run:kmeans"}

    numeric = ["frequency", "monetary", "recency_days", "tenure_months"]
    assert sorted(FEATURES.numeric) == numeric  # channel is text: it has no mean
    assert profiles.columns == ["model_id", "cluster", "n_rows", "feature", "mean"]
    assert profiles.height == 4 * len(numeric)  # one row per cluster x numeric feature
    assert profiles.group_by("cluster", "feature").len()["len"].max() == 1
    assert sorted(profiles["feature"].unique()) == numeric
    sizes = profiles.select("cluster", "n_rows").unique()
    assert sizes.height == 4
    assert sizes["n_rows"].sum() == FEATURES.X.height
    for cluster_id, feature, n_rows, mean in profiles.select(
        "cluster", "feature", "n_rows", "mean"
    ).iter_rows():
        members = kmeans.labels == cluster_id
        assert n_rows == members.sum()
        assert mean == pytest.approx(FEATURES.X[feature].to_numpy()[members].mean())


def test_segments_differ_on_recency() -> None:
    """The generator's lapsed customers (recency ~240 days) form their own segment."""
    tuned = tune_clusterer("k", Candidate(family="kmeans", params={"n_clusters": [4]}), *SETUP)
    assert tuned.labels is not None

    _, profiles = cluster_tables("m", tuned.labels, FEATURES, pl.Series(range(FEATURES.X.height)))

    recency = profiles.filter(pl.col("feature") == "recency_days").sort("mean")["mean"]
    assert recency[-1] > 150 and recency[-2] < 60


@pytest.mark.parametrize(("pca", "components"), [(2, 2), (0.9, None)])
def test_pca_in_the_features_section_adds_a_pca_step(pca: float, components: int | None) -> None:
    section = FeaturesSection(drop=["customer_id"], pca=pca)
    features, plan = prepared(section)

    tuned = tune_clusterer(
        "k", Candidate(family="kmeans", params={"n_clusters": [4]}), features, plan
    )

    steps = list(tuned.model.named_steps)
    assert steps == ["prepare", "pca", "model"]
    step = tuned.model.named_steps["pca"]
    assert isinstance(step, PCA)
    width = tuned.model.named_steps["prepare"].transform(features.X).shape[1]
    space = tuned.model[:-1].transform(features.X)
    if components is not None:
        assert space.shape[1] == components
    else:
        assert 1 <= space.shape[1] < width
        assert step.explained_variance_ratio_.sum() >= 0.9
    assert tuned.model.named_steps["model"].cluster_centers_.shape == (4, space.shape[1])


def test_without_pca_there_is_no_pca_step(kmeans: Tuned) -> None:
    assert list(kmeans.model.named_steps) == ["prepare", "model"]

"""The train flow for every task, end to end on small data: classification (binary with a tuned
threshold, and three classes), clustering, and a leakage canary on permutation importance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mallard import warehouse
from mallard.core.catalogue import CLASSIFICATION, CLUSTERING
from mallard.examples import write_example
from mallard.flows.train import RunResult, train

pytestmark = pytest.mark.usefixtures("prefect_server")

FRAUD_CANDIDATES = """
[[candidates]]
family = "logistic_regression"
params = { C = [1.0], class_weight = ["balanced"] }

[[candidates]]
family = "decision_tree"
params = { max_depth = [4], min_samples_leaf = [10] }

"""


def cut_candidates(text: str, candidates: str, before: str) -> str:
    """The spec with its [[candidates]] replaced, up to the `before` section."""
    start, end = text.index("[[candidates]]"), text.index(before)
    return text[:start] + candidates + text[end:]


def run(spec: Path, db: Path) -> RunResult:
    result = train(spec, db)
    assert isinstance(result, RunResult), result  # a failed run returns its Prefect state
    return result


def sql(db: Path, query: str, run_id: str) -> pl.DataFrame:
    return warehouse.query_params(db, query, [run_id])


def valid_rows(db: Path, run_id: str) -> int:
    run = warehouse.run_record(db, run_id)
    assert run is not None and run["status"] == "succeeded"
    return int(run["n_rows"]) - int(run["n_invalid"])


# --- binary classification: the fraud example ----------------------------------------------------


@pytest.fixture(scope="module")
def fraud_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    folder = tmp_path_factory.mktemp("fraud")
    spec = write_example("fraud", folder, rows=2000, seed=5)
    text = cut_candidates(spec.read_text(), FRAUD_CANDIDATES, "[fairness]")
    spec.write_text(text.replace("folds = 4", "folds = 3"))
    db = folder / "warehouse.duckdb"
    return run(spec, db), db


def test_classification_metrics_on_validation_and_test(fraud_run: tuple[RunResult, Path]) -> None:
    result, db = fraud_run

    metrics = sql(db, "SELECT * FROM ml.metrics WHERE run_id = ?", result.run_id)

    assert result.task == "classification" and result.primary_metric == "pr_auc"
    models = set(metrics["model_id"])
    assert {m.rsplit(":", 1)[1] for m in models} == {
        "logistic_regression",
        "decision_tree",
        "baseline",
    }
    assert set(metrics["split"]) == {"cv", "selection", "validation", "test"}
    for split in ("validation", "test"):
        for model in models:
            rows = metrics.filter((pl.col("split") == split) & (pl.col("model_id") == model))
            assert set(rows["metric"]) == set(CLASSIFICATION), (split, model)
            assert rows["value"].is_nan().sum() == 0
    test = metrics.filter(pl.col("split") == "test")
    roc = test.filter(pl.col("metric") == "roc_auc")
    auc = dict(zip(roc["model_id"], roc["value"], strict=True))
    assert auc[f"{result.run_id}:logistic_regression"] > 0.8  # fraud is learnable
    assert auc[f"{result.run_id}:baseline"] == pytest.approx(0.5)


def test_confusion_counts_sum_to_the_test_rows(fraud_run: tuple[RunResult, Path]) -> None:
    result, db = fraud_run
    n_valid = valid_rows(db, result.run_id)

    confusion = sql(db, "SELECT * FROM ml.confusion WHERE run_id = ?", result.run_id)
    predictions = sql(
        db, "SELECT * FROM ml.predictions WHERE run_id = ? AND split = 'test'", result.run_id
    )

    assert set(confusion["split"]) == {"validation", "test"}
    test = confusion.filter(pl.col("split") == "test")
    totals = test.group_by("model_id").agg(pl.col("n").sum())
    assert totals.height == 3
    n_test = predictions.filter(pl.col("model_id") == totals["model_id"][0]).height
    assert abs(n_test - 0.2 * n_valid) <= 1
    assert set(totals["n"]) == {n_test}
    validation = confusion.filter(pl.col("split") == "validation")
    n_validation = validation.group_by("model_id").agg(pl.col("n").sum())["n"]
    assert n_validation.n_unique() == 1 and abs(n_validation[0] - 0.2 * n_valid) <= 1
    assert set(test["actual"]) == {"0", "1"} and set(test["predicted"]) <= {"0", "1"}
    # the confusion matrix agrees with the stored test predictions
    model = f"{result.run_id}:logistic_regression"
    from_predictions = (
        predictions.filter(pl.col("model_id") == model)
        .group_by(pl.col("actual_label").alias("actual"), pl.col("label").alias("predicted"))
        .len("n")
        .sort("actual", "predicted")
    )
    stored = test.filter(pl.col("model_id") == model).select("actual", "predicted", "n")
    assert stored.sort("actual", "predicted").cast({"n": pl.UInt32}).equals(from_predictions)


def test_test_predictions_carry_label_and_probability(fraud_run: tuple[RunResult, Path]) -> None:
    result, db = fraud_run

    predictions = sql(
        db, "SELECT * FROM ml.predictions WHERE run_id = ? AND split = 'test'", result.run_id
    )
    models = sql(db, "SELECT * FROM ml.models WHERE run_id = ?", result.run_id)

    assert predictions["label"].null_count() == predictions["probability"].null_count() == 0
    assert predictions["prediction"].null_count() == predictions.height  # no numeric target
    assert set(predictions["label"]) <= {"0", "1"} and set(predictions["actual_label"]) == {
        "0",
        "1",
    }
    assert predictions["probability"].is_between(0, 1).all()
    assert predictions.group_by("model_id").len()["len"].n_unique() == 1  # same test rows each
    threshold = dict(zip(models["candidate"], models["decision_threshold"], strict=True))
    positive = dict(zip(models["candidate"], models["positive_class"], strict=True))
    assert set(positive.values()) == {"1"}
    assert threshold["baseline"] is None  # a constant model has no threshold
    for candidate in ("logistic_regression", "decision_tree"):
        cut = threshold[candidate]
        assert cut is not None and 0 < cut < 1 and cut != 0.5
        # the stored threshold is the one the model predicts with
        rows = predictions.filter(pl.col("model_id") == f"{result.run_id}:{candidate}")
        expected = np.where(rows["probability"].to_numpy() >= cut, "1", "0")
        np.testing.assert_array_equal(rows["label"].to_numpy(), expected)


def test_the_classification_run_is_ranked_on_its_primary_metric(
    fraud_run: tuple[RunResult, Path],
) -> None:
    result, db = fraud_run

    board = warehouse.leaderboard(db, run_id=result.run_id)

    assert set(board["metric"]) == {"pr_auc"}
    assert board.height == 3
    assert board["rank"].to_list() == sorted(board["rank"].to_list())
    # ranked the way the champion is chosen: the selection CV on train + validation rows
    assert board["selection_value"].to_list() == sorted(
        board["selection_value"].to_list(), reverse=True
    )
    assert board["family"][-1] == "dummy"


# --- three classes -------------------------------------------------------------------------------

MULTICLASS_SPEC = """
[pipeline]
name = "tiers"
task = "classification"
target = "tier"
seed = 2

[source]
path = "tiers.csv"

[schema.columns]
spend = { dtype = "float", ge = 0 }
visits = { dtype = "int", ge = 0 }
region = { dtype = "str" }
tier = { dtype = "str", isin = ["bronze", "silver", "gold"], nullable = false }

[split]
strategy = "group"
column = "household"

[cv]
folds = 3

[[candidates]]
family = "logistic_regression"
params = { C = [1.0] }

[[candidates]]
family = "svm"
params = { C = [1.0] }

[evaluate]
tune_threshold = "f1"
"""


def tiers(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, rows)
    visits = rng.poisson(4, rows)
    score = spend / 50 + visits / 2 + rng.normal(0, 0.5, rows)
    tier = np.select([score < 3, score < 5], ["bronze", "silver"], "gold")
    return pl.DataFrame(
        {
            "household": rng.integers(0, 120, rows),
            "spend": spend.round(2),
            "visits": visits,
            "region": rng.choice(["north", "south"], rows),
            "tier": tier,
        }
    )


def test_a_multiclass_run_scores_one_vs_rest(tmp_path: Path, db: Path) -> None:
    tiers(600, 2).write_csv(tmp_path / "tiers.csv")
    spec = tmp_path / "tiers.toml"
    spec.write_text(MULTICLASS_SPEC)

    result = run(spec, db)

    metrics = sql(db, "SELECT * FROM ml.metrics WHERE run_id = ?", result.run_id)
    assert result.primary_metric == "f1_macro"
    logistic = metrics.filter(pl.col("model_id") == f"{result.run_id}:logistic_regression")
    for split in ("cv", "validation", "test"):
        names = set(logistic.filter(pl.col("split") == split)["metric"])
        assert names == set(CLASSIFICATION) - {"pr_auc"}, split  # pr_auc is binary only
    svm = metrics.filter(pl.col("model_id") == f"{result.run_id}:svm")
    assert "roc_auc" not in set(svm["metric"])  # no probabilities for one-vs-rest AUC
    assert "f1_macro" in set(svm["metric"])
    test_f1 = logistic.filter((pl.col("split") == "test") & (pl.col("metric") == "f1_macro"))
    assert test_f1["value"][0] > 0.6
    confusion = sql(db, "SELECT * FROM ml.confusion WHERE run_id = ?", result.run_id)
    assert set(confusion["actual"]) == {"bronze", "silver", "gold"}
    models = sql(db, "SELECT * FROM ml.models WHERE run_id = ?", result.run_id)
    # no threshold or positive class for three classes; the group column is not a feature
    assert models["decision_threshold"].null_count() == models.height
    assert models["positive_class"].null_count() == models.height
    for names in models["feature_names"]:
        assert json.loads(names) == ["spend", "visits", "region"]
    predictions = sql(
        db, "SELECT * FROM ml.predictions WHERE run_id = ? AND split = 'test'", result.run_id
    )
    assert set(predictions["label"]) <= {"bronze", "silver", "gold"}
    board = warehouse.leaderboard(db, run_id=result.run_id)
    assert board.height == 3 and set(board["metric"]) == {"f1_macro"}


# --- clustering: the segments example ------------------------------------------------------------

SEGMENT_CANDIDATES = """
[[candidates]]
family = "kmeans"
params = { n_clusters = [3, 4] }

[[candidates]]
family = "agglomerative"
params = { n_clusters = [4], linkage = ["ward"] }

"""


def test_a_clustering_run_writes_segments_and_is_ranked(tmp_path: Path, db: Path) -> None:
    spec = write_example("segments", tmp_path, rows=600, seed=4)
    spec.write_text(cut_candidates(spec.read_text(), SEGMENT_CANDIDATES, "[evaluate]"))

    result = run(spec, db)

    run_id = result.run_id
    n_valid = valid_rows(db, run_id)
    assert result.n_invalid > 0 and n_valid > 550  # the generator plants a few bad rows
    metrics = sql(db, "SELECT * FROM ml.metrics WHERE run_id = ?", run_id)
    assert set(metrics["split"]) == {"all"}
    assert metrics.height == 2 * len(CLUSTERING)
    assert set(metrics["metric"]) == set(CLUSTERING)
    assert sql(db, "SELECT * FROM ml.predictions WHERE run_id = ?", run_id).height == 0

    assignments = sql(db, "SELECT * FROM ml.cluster_assignments WHERE run_id = ?", run_id)
    per_model = assignments.group_by("model_id").agg(
        pl.len(), pl.col("row_index").n_unique().alias("rows"), pl.col("cluster").n_unique()
    )
    assert per_model.height == 2
    assert set(per_model["len"]) == set(per_model["rows"]) == {n_valid}  # one per valid row
    quarantined = set(
        sql(db, "SELECT row_index FROM ml.quarantine WHERE run_id = ?", run_id)["row_index"]
    )
    assert quarantined and not quarantined & set(assignments["row_index"])

    profiles = sql(db, "SELECT * FROM ml.cluster_profiles WHERE run_id = ?", run_id)
    numeric = {"recency_days", "frequency", "monetary", "tenure_months"}
    for model_id, clusters in zip(per_model["model_id"], per_model["cluster"], strict=True):
        rows = profiles.filter(pl.col("model_id") == model_id)
        assert set(rows["feature"]) == numeric
        assert rows.height == clusters * len(numeric)
        assert rows.select("cluster", "n_rows").unique()["n_rows"].sum() == n_valid

    board = warehouse.leaderboard(db, "segments")
    assert board["run_id"].unique().to_list() == [run_id]
    assert set(board["metric"]) == {"silhouette"}
    assert board.height == 2 and board["rank"].to_list() == [1, 2]
    assert board["value"].to_list() == sorted(board["value"].to_list(), reverse=True)
    assert board["value"].null_count() == 0
    assert result.best_model_id == board["model_id"][0]


# --- leakage canary: a pure-noise column must not look important ---------------------------------


def test_a_pure_noise_feature_has_no_permutation_importance(housing_spec: Path, db: Path) -> None:
    data = housing_spec.parent / "data" / "housing.csv"
    frame = pl.read_csv(data, infer_schema=False)
    noise = np.random.default_rng(11).normal(0, 1, frame.height)
    frame.with_columns(pl.Series("noise", noise.round(4))).write_csv(data)

    result = run(housing_spec, db)

    importance = sql(db, "SELECT * FROM ml.feature_importance WHERE run_id = ?", result.run_id)
    assert set(importance["model_id"].str.split(":").list.last()) == {"ridge", "decision_tree"}
    for model_id, rows in importance.group_by("model_id"):
        assert "noise" in set(rows["feature"]), model_id
        top = rows.sort("rank")
        noise_row = rows.filter(pl.col("feature") == "noise")
        assert top["feature"][0] != "noise"
        assert noise_row["rank"][0] > 1
        # the drop in score from shuffling noise is tiny next to the best feature's
        assert abs(noise_row["importance_mean"][0]) < 0.05 * top["importance_mean"][0]
    ridge = importance.filter(pl.col("model_id") == f"{result.run_id}:ridge")
    noise_rank = ridge.filter(pl.col("feature") == "noise")["rank"][0]
    assert noise_rank > ridge.height / 2  # a linear model uses every column: noise ranks low

"""The HTML run report: sections per task, self-containment, escaping, and the markdown summary.

One warehouse holds four hand-made runs (regression, binary classification, clustering, failed),
written with write_run exactly as the flows write them, so no flow or model runs here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mallard.core.errors import InputError
from mallard.report import markdown_summary, render_report
from mallard.report.data import ReportData, binary_outcomes
from mallard.warehouse import RunBundle, RunRecord, write_run
from mallard.warehouse.connection import connect
from mallard.warehouse.report_queries import report_data

STARTED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
EVIL = "<b>tree</b>"  # a candidate name that must come out escaped everywhere
N_TEST = 40


def record(run_id: str, task: str, metric: str, greater: bool, **fields: object) -> RunRecord:
    defaults: dict[str, object] = {
        "status": "succeeded",
        "finished_at": STARTED + timedelta(seconds=12),
        "source": "data/x.csv",
        "data_sha256": "d" * 64,
        "n_rows": 200,
        "n_invalid": 3,
        "seed": 42,
        "primary_metric": metric,
        "greater_is_better": greater,
        "code_version": "abc123",
        "versions": {"python": "3.11", "scikit-learn": "1.9"},
    }
    defaults.update(fields)
    return RunRecord(
        run_id=run_id,
        pipeline=run_id.split("-")[0],
        task=task,
        started_at=STARTED,
        spec_toml='[pipeline]\nname = "x"\n',
        spec_sha256="s" * 64,
        **defaults,  # type: ignore[arg-type]
    )


def quarantine() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "row_index": [3, 8, 9],
            "column_name": ["price", "price", "rooms"],
            "check_name": ["greater_than_or_equal_to(0)", "greater_than_or_equal_to(0)", "cast"],
            "failure_value": ["-1", "-5", "<script>alert(1)</script>"],
        }
    )


def cv_rows(candidates: dict[str, str], metric: str, base: float) -> pl.DataFrame:
    """Two configurations x three folds per candidate, scores spread around `base`."""
    rows = []
    for c, (candidate, family) in enumerate(candidates.items()):
        for k, params in enumerate(['{"alpha": 0.1}', '{"alpha": 10.0}']):
            for fold in range(3):
                rows.append(
                    (candidate, family, params, fold, metric, base + c + 0.3 * k + fold / 10)
                )
    return pl.DataFrame(
        rows, schema=["candidate", "family", "params", "fold", "metric", "value"], orient="row"
    )


def metric_rows(run_id: str, values: dict[str, tuple[str, float]], metric: str) -> pl.DataFrame:
    rows = []
    for candidate, (family, value) in values.items():
        for split, shift in (("test", 0.0), ("validation", 0.1), ("cv", 0.2)):
            rows.append((f"{run_id}:{candidate}", family, split, metric, value + shift))
    return pl.DataFrame(
        rows, schema=["model_id", "family", "split", "metric", "value"], orient="row"
    )


def model_rows(run_id: str, candidates: dict[str, str], **extra: list[object]) -> pl.DataFrame:
    n = len(candidates)
    return pl.DataFrame(
        {
            "model_id": [f"{run_id}:{c}" for c in candidates],
            "pipeline": [run_id.split("-")[0]] * n,
            "candidate": list(candidates),
            "family": list(candidates.values()),
            "params": ["{}"] * n,
            "created_at": [STARTED] * n,
            "skops_blob": [b"not a model"] * n,
            "size_bytes": [11] * n,
            "sha256": ["m" * 64] * n,
            "trusted_types": ["[]"] * n,
            "feature_names": [json.dumps(["a", "b"])] * n,
            **extra,
        }
    )


def regression_run(db: Path) -> None:
    run_id = "housing-reg"
    candidates = {"ridge": "ridge", EVIL: "decision_tree", "baseline": "dummy"}
    rng = np.random.default_rng(0)
    actual = rng.uniform(100, 200, N_TEST)
    write_run(
        db,
        RunBundle(
            run=record(run_id, "regression", "rmse", False),
            quarantine=quarantine(),
            cv_results=cv_rows(candidates, "rmse", 10.0),
            metrics=metric_rows(
                run_id,
                {
                    "ridge": ("ridge", 9.0),
                    EVIL: ("decision_tree", 7.0),
                    "baseline": ("dummy", 30.0),
                },
                "rmse",
            ),
            models=model_rows(run_id, candidates),
            predictions=pl.DataFrame(
                {
                    "model_id": [f"{run_id}:{EVIL}"] * N_TEST,
                    "row_index": range(N_TEST),
                    "prediction": actual + rng.normal(0, 5, N_TEST),
                    "actual": actual,
                    "split": ["test"] * N_TEST,
                }
            ),
            feature_importance=pl.DataFrame(
                {
                    "model_id": [f"{run_id}:{EVIL}"] * 2,
                    "feature": ["lotsize", "bedrooms"],
                    "importance_mean": [0.5, 0.1],
                    "importance_std": [0.05, 0.02],
                    "rank": [1, 2],
                }
            ),
        ),
    )


def classification_run(db: Path) -> None:
    run_id = "churn-clf"
    candidates = {"logistic": "logistic_regression", "baseline": "dummy"}
    rng = np.random.default_rng(1)
    actual = rng.integers(0, 2, N_TEST)
    probability = np.clip(0.3 * actual + rng.uniform(0, 0.7, N_TEST), 0, 1)
    label = np.where(probability >= 0.4, "yes", "no")
    best = f"{run_id}:logistic"
    write_run(
        db,
        RunBundle(
            run=record(run_id, "classification", "f1", True),
            cv_results=cv_rows(candidates, "f1", 0.5),
            metrics=metric_rows(
                run_id, {"logistic": ("logistic_regression", 0.8), "baseline": ("dummy", 0.3)}, "f1"
            ),
            models=model_rows(
                run_id, candidates, decision_threshold=[0.4, None], positive_class=["yes", None]
            ),
            predictions=pl.DataFrame(
                {
                    "model_id": [best] * N_TEST,
                    "row_index": range(N_TEST),
                    "label": label,
                    "probability": probability,
                    "actual_label": np.where(actual == 1, "yes", "no"),
                    "split": ["test"] * N_TEST,
                }
            ),
            confusion=pl.DataFrame(
                {
                    "model_id": [best] * 4,
                    "split": ["test"] * 4,
                    "actual": ["no", "no", "yes", "yes"],
                    "predicted": ["no", "yes", "no", "yes"],
                    "n": [15, 5, 3, 17],
                }
            ),
            fairness_summary=pl.DataFrame(
                {
                    "model_id": [best],
                    "attribute": ["sex"],
                    "metric": ["demographic_parity_difference"],
                    "value": [0.1],
                    "max_disparity": [0.2],
                    "status": ["pass"],
                }
            ),
        ),
    )
    # Straight SQL, not write_run: writes._insert_frame does not quote column names, and the
    # column "group" of ml.fairness is an SQL keyword, so write_run cannot write it yet.
    with connect(db) as con:
        con.executemany(
            'INSERT INTO ml.fairness (run_id, model_id, attribute, "group", metric, value) '
            "VALUES (?, ?, 'sex', ?, ?, ?)",
            [
                [run_id, best, group, metric, value]
                for group, metric, value in [
                    ("f", "selection_rate", 0.4),
                    ("f", "recall", 0.8),
                    ("m", "selection_rate", 0.5),
                    ("m", "recall", 0.7),
                ]
            ],
        )


def clustering_run(db: Path) -> None:
    run_id = "shops-clu"
    model = f"{run_id}:kmeans"
    features = ["spend", "visits", "age"]
    means = {0: [10.0, 2.0, 30.0], 1: [50.0, 8.0, 45.0], 2: [20.0, 1.0, 60.0]}
    sizes = {0: 50, 1: 30, 2: 20}
    write_run(
        db,
        RunBundle(
            run=record(run_id, "clustering", "silhouette", True),
            # Clustering has no holdout: its metrics are on all rows (split 'all').
            metrics=pl.DataFrame(
                {
                    "model_id": [model],
                    "family": ["kmeans"],
                    "split": ["all"],
                    "metric": ["silhouette"],
                    "value": [0.4],
                }
            ),
            models=model_rows(run_id, {"kmeans": "kmeans"}),
            cluster_assignments=pl.DataFrame(
                {
                    "model_id": [model] * 100,
                    "row_index": range(100),
                    "cluster": [c for c, n in sizes.items() for _ in range(n)],
                }
            ),
            cluster_profiles=pl.DataFrame(
                [
                    (model, c, sizes[c], f, means[c][i])
                    for c in means
                    for i, f in enumerate(features)
                ],
                schema=["model_id", "cluster", "n_rows", "feature", "mean"],
                orient="row",
            ),
        ),
    )


def bare_run(db: Path) -> None:
    """What the regression train flow stores before test predictions are written: no plots of
    predictions, but the sections still say what is missing."""
    run_id = "housing-bare"
    write_run(
        db,
        RunBundle(
            run=record(run_id, "regression", "rmse", False),
            cv_results=cv_rows({"ridge": "ridge"}, "rmse", 3.0),
            metrics=metric_rows(run_id, {"ridge": ("ridge", 2.0)}, "rmse"),
        ),
    )


def failed_run(db: Path) -> None:
    write_run(
        db,
        RunBundle(
            run=record(
                "housing-bad",
                "regression",
                "rmse",
                False,
                status="failed",
                error="30% of rows are invalid <i>(limit 5%)</i>",
                n_invalid=60,
            ),
            quarantine=quarantine(),
        ),
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("report") / "warehouse.duckdb"
    for write in (regression_run, classification_run, clustering_run, bare_run, failed_run):
        write(db)
    return db


@pytest.fixture(scope="module")
def reports(warehouse: Path) -> dict[str, str]:
    return {
        run_id: render_report(warehouse, run_id)
        for run_id in ("housing-reg", "churn-clf", "shops-clu", "housing-bare", "housing-bad")
    }


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


COMMON = ["lineage", "validation", "leaderboard", "cv"]


@pytest.mark.parametrize(
    ("run_id", "expected", "plots"),
    [
        ("housing-reg", [*COMMON, "predicted-vs-actual", "residuals", "importance"], 4),
        ("churn-clf", [*COMMON, "roc", "pr", "threshold", "confusion", "fairness"], 5),
        ("shops-clu", ["lineage", "validation", "leaderboard", "cv", "clusters", "profiles"], 3),
        ("housing-bare", [*COMMON, "predicted-vs-actual", "residuals"], 1),
        ("housing-bad", ["lineage", "validation", "error"], 0),
    ],
)
def test_each_run_has_its_sections_and_inline_plots(
    reports: dict[str, str], run_id: str, expected: list[str], plots: int
) -> None:
    html = reports[run_id]
    assert section_ids(html) == expected
    images = re.findall(r'<img src="([^"]*)"', html)
    assert len(images) == plots
    assert all(src.startswith("data:image/png;base64,") for src in images)


@pytest.mark.parametrize(
    "run_id", ["housing-reg", "churn-clf", "shops-clu", "housing-bare", "housing-bad"]
)
def test_reports_are_self_contained(reports: dict[str, str], run_id: str) -> None:
    html = reports[run_id]
    assert html.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in html.lower()


def test_missing_predictions_are_said_not_skipped(reports: dict[str, str]) -> None:
    html = reports["housing-bare"]
    assert html.count("No test-split predictions with known actual values are stored") == 2


def test_user_text_is_escaped(reports: dict[str, str]) -> None:
    html = reports["housing-reg"]
    assert "&lt;b&gt;tree&lt;/b&gt;" in html
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # a quarantined failure value
    failed = reports["housing-bad"]
    assert "&lt;i&gt;(limit 5%)&lt;/i&gt;" in failed
    assert "<i>" not in failed


def test_lineage_and_validation_facts(reports: dict[str, str]) -> None:
    html = reports["housing-reg"]
    for fact in ("housing-reg", "d" * 64, "s" * 64, "abc123", "scikit-learn", "greater_than"):
        assert fact in html
    assert "<dd>3</dd>" in html  # rows quarantined


def test_best_model_is_leaderboard_rank_one(warehouse: Path) -> None:
    data = ReportData.load(warehouse, "housing-reg")
    assert data.best_model_id() == f"housing-reg:{EVIL}"  # rmse 7 beats 9 and 30
    assert ReportData.load(warehouse, "churn-clf").best_model_id() == "churn-clf:logistic"


def test_report_data_frames(warehouse: Path) -> None:
    data = report_data(warehouse, "churn-clf")
    predictions = data["predictions"]
    assert isinstance(predictions, pl.DataFrame)
    assert predictions.columns == [
        "model_id",
        "row_index",
        "prediction",
        "label",
        "probability",
        "actual",
        "actual_label",
    ]
    assert predictions.height == N_TEST
    models = data["models"]
    assert isinstance(models, pl.DataFrame)
    assert "skops_blob" not in models.columns
    assert data["run"]["versions"] == {"python": "3.11", "scikit-learn": "1.9"}
    failed = report_data(warehouse, "housing-bad")
    empty = {k for k, v in failed.items() if isinstance(v, pl.DataFrame) and not v.height}
    assert empty == set(failed) - {"run", "quarantine"}


def test_positive_class_is_the_one_predicted_with_high_probability() -> None:
    # The positive class sorts first here, so scikit-learn's "later class" rule would be wrong.
    frame = pl.DataFrame(
        {
            "label": ["a", "a", "b", "b"],
            "probability": [0.9, 0.7, 0.2, 0.1],
            "actual_label": ["a", "b", "b", "a"],
        }
    )
    outcome = binary_outcomes(frame)
    assert not isinstance(outcome, str)
    assert (outcome.positive, outcome.negative) == ("a", "b")
    assert outcome.y_true.tolist() == [1, 0, 0, 1]
    assert isinstance(binary_outcomes(frame.with_columns(actual_label=pl.lit("a"))), str)
    stored = binary_outcomes(frame, positive="b")  # the model's stored positive class wins
    assert not isinstance(stored, str)
    assert stored.positive == "b"
    assert stored.y_true.tolist() == [0, 1, 1, 0]


def test_rendering_is_deterministic(warehouse: Path, reports: dict[str, str]) -> None:
    assert render_report(warehouse, "shops-clu") == reports["shops-clu"]


def test_a_missing_run_is_an_input_error(warehouse: Path) -> None:
    with pytest.raises(InputError, match="no-such-run"):
        render_report(warehouse, "no-such-run")
    with pytest.raises(InputError):
        markdown_summary(warehouse, "no-such-run")


def test_clustering_is_ranked_on_all_rows(warehouse: Path, reports: dict[str, str]) -> None:
    html = reports["shops-clu"]
    assert "Ranked on all rows" in html
    assert "<th>all rows</th>" in html
    assert "best model on all rows: **shops-clu:kmeans**" in markdown_summary(
        warehouse, "shops-clu"
    )
    assert "<th>test</th>" in reports["housing-reg"]


def test_markdown_summary(warehouse: Path) -> None:
    text = markdown_summary(warehouse, "housing-reg")
    assert "pipeline **housing**" in text
    assert "status **succeeded**" in text
    assert r"\<b\>tree\</b\>" in text
    assert "<b>" not in text
    assert text.count("\n| ") == 4  # header + three models
    failed = markdown_summary(warehouse, "housing-bad")
    assert "status **failed**" in failed
    assert "no leaderboard rows" in failed

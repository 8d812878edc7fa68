"""The sections that depend on the run's task, plus feature importance.

Plots show one model: the leaderboard's rank 1 (chosen on validation), named on every plot.
A section whose data is missing still appears, saying what is missing, so a reader can tell
"nothing stored" from "the report forgot".
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mallard.report import plots
from mallard.report.data import ReportData, binary_outcomes, confusion_counts
from mallard.report.sections import Plot, Section, table
from mallard.tasks.audit import IMPORTANCE_MAX_ROWS, REPEATS

IMPORTANCE_TOP = 25  # more bars than this are unreadable; the tail is near zero anyway


def build(data: ReportData) -> list[Section]:
    if data.task == "regression":
        return regression(data)
    if data.task == "classification":
        return classification(data)
    if data.task == "clustering":
        return clustering(data)
    return []


def _test_rows(data: ReportData, *required: str) -> tuple[str | None, pl.DataFrame]:
    rows = data.predictions.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in required))
    return data.model_rows(rows)


def regression(data: ReportData) -> list[Section]:
    scatter = Section("predicted-vs-actual", "Predicted vs actual")
    spread = Section("residuals", "Residuals")
    model_id, rows = _test_rows(data, "prediction", "actual")
    if model_id is None:
        note = "No test-split predictions with known actual values are stored for this run."
        return [Section(s.id, s.title, notes=[note]) for s in (scatter, spread)]
    actual = rows["actual"].to_numpy().astype(float)
    predicted = rows["prediction"].to_numpy().astype(float)
    scatter.notes.append(f"{model_id} on {rows.height} test-split rows; dashed: perfect fit.")
    scatter.plots.append(
        Plot(plots.predicted_vs_actual(actual, predicted, model_id), "predicted vs actual")
    )
    spread.notes.append("Residual = actual - predicted; a pattern against the prediction is bias.")
    spread.plots.append(Plot(plots.residuals(actual, predicted, model_id), "residuals"))
    return [scatter, spread]


def classification(data: ReportData) -> list[Section]:
    curves = [
        Section("roc", "ROC curve"),
        Section("pr", "Precision-recall curve"),
        Section("threshold", "Precision, recall and F1 by threshold"),
    ]
    model_id, rows = _test_rows(data, "actual_label")
    outcome = (
        binary_outcomes(rows, data.positive_class(model_id))
        if model_id is not None
        else "no test-split predictions"
    )
    if model_id is None or isinstance(outcome, str):
        for section in curves:
            section.notes.append(f"Not drawn: {outcome}.")
    else:
        threshold = data.decision_threshold(model_id)
        about = (
            f"{model_id} on {outcome.y_true.size} test-split rows; positive class "
            f"'{outcome.positive}'."
        )
        title = f"{model_id}: test split"
        roc_, pr_, by_threshold = curves
        roc_.plots.append(
            Plot(plots.roc(outcome.y_true, outcome.score, threshold, title), "ROC curve")
        )
        pr_.plots.append(Plot(plots.pr(outcome.y_true, outcome.score, threshold, title), "PR"))
        by_threshold.plots.append(
            Plot(plots.threshold_curve(outcome.y_true, outcome.score, threshold), "thresholds")
        )
        for section in curves:
            section.notes.append(about)
    return [*curves, confusion(data)]


def confusion(data: ReportData) -> Section:
    section = Section("confusion", "Confusion matrix")
    model_id = data.best_model_id()
    if model_id is None and data.confusion.height:
        model_id = str(data.confusion["model_id"][0])
    split, counts = confusion_counts(data, model_id) if model_id else ("", pl.DataFrame())
    if not counts.height:
        section.notes.append("No confusion counts or labelled test predictions for this run.")
        return section
    labels = sorted(set(counts["actual"]) | set(counts["predicted"]))
    matrix = np.zeros((len(labels), len(labels)))
    for actual, predicted, n in counts.iter_rows():
        matrix[labels.index(actual), labels.index(predicted)] += n
    text = [[str(int(v)) for v in row] for row in matrix]
    section.notes.append(
        f"{model_id}, {split} split: rows are the true class, columns the predicted."
    )
    section.plots.append(
        Plot(
            plots.heatmap(
                matrix,
                labels,
                labels,
                text,
                xlabel="predicted",
                ylabel="actual",
                cmap="Blues",
                scale="rows",
            ),
            "confusion matrix",
        )
    )
    return section


def clustering(data: ReportData) -> list[Section]:
    clusters = Section("clusters", "Clusters")
    profiles = Section("profiles", "Cluster profiles")
    model_id, means = data.model_rows(data.cluster_profiles)
    sized_model, sizes = _cluster_sizes(data, model_id, means)
    if not sizes.height:
        clusters.notes.append("No cluster assignments or profiles are stored for this run.")
    else:
        names = [f"cluster {c}" for c in sizes["cluster"]]
        counts = [int(n) for n in sizes["n_rows"]]
        clusters.notes.append(f"{sized_model}: rows per cluster.")
        clusters.plots.append(Plot(plots.cluster_sizes(names, counts), "cluster sizes"))
    if model_id is None:
        profiles.notes.append("No cluster profiles (per-cluster feature means) are stored.")
        return [clusters, profiles]
    wide = means.pivot(on="feature", index="cluster", values="mean", aggregate_function="first")
    wide = wide.sort("cluster")
    features = [c for c in wide.columns if c != "cluster"]
    raw = wide.select(features).to_numpy().astype(float)
    # Standardise each feature across clusters so features on different scales share a colour
    # scale; the cells still print the raw means.
    spread = np.nanstd(raw, axis=0)
    z = np.nan_to_num((raw - np.nanmean(raw, axis=0)) / np.where(spread > 0, spread, 1.0))
    names = [f"cluster {c}" for c in wide["cluster"]]
    text = [[f"{v:.3g}" for v in row] for row in raw] if raw.size <= 400 else None
    profiles.notes.append(
        f"{model_id}: mean of each numeric feature per cluster; colour is the mean in standard "
        "deviations from the average over clusters."
    )
    profiles.plots.append(
        Plot(
            plots.heatmap(
                z,
                names,
                features,
                text,
                xlabel="feature",
                ylabel="",
                cmap="RdBu_r",
                scale="standard deviations from the mean over clusters",
                centred=True,
            ),
            "cluster profiles",
        )
    )
    profiles.tables.append(table(wide, "feature means per cluster"))
    if len(names) >= 3 and len(features) >= 2:
        # The warehouse keeps assignments, not the input rows, so a row-level PCA scatter is
        # impossible here; this map places each cluster by a PCA of its standardised means.
        clusters.notes.append(
            "Map: each cluster placed by a 2-D PCA of its standardised feature means (from "
            "ml.cluster_profiles, not of individual rows); bubble area is its row count."
        )
        by_cluster = dict(zip(sizes["cluster"], sizes["n_rows"], strict=True))
        counts = [int(by_cluster.get(c, 0)) for c in wide["cluster"]]
        clusters.plots.append(Plot(plots.cluster_map(z, names, counts), "cluster map"))
    return [clusters, profiles]


def _cluster_sizes(
    data: ReportData, model_id: str | None, means: pl.DataFrame
) -> tuple[str | None, pl.DataFrame]:
    """cluster, n_rows of the profiled model: counted from its assignments, else the sizes its
    profiles carry; with no profiles at all, the assignments of the best model that has any."""
    if model_id is None:
        model_id, assigned = data.model_rows(data.cluster_sizes)
    else:
        assigned = data.cluster_sizes.filter(pl.col("model_id") == model_id)
    if assigned.height:
        return model_id, assigned.select("cluster", "n_rows").sort("cluster")
    return model_id, means.select("cluster", "n_rows").unique().sort("cluster")


def importance(data: ReportData) -> Section:
    model_id, rows = data.model_rows(data.feature_importance)
    rows = rows.sort("rank", "feature").head(IMPORTANCE_TOP)
    section = Section("importance", "Feature importance")
    section.notes.append(
        f"{model_id}: top {rows.height} input features by permutation importance on the test "
        f"split ({REPEATS} shuffles per column; on a seeded sample of {IMPORTANCE_MAX_ROWS:,} "
        "rows when the split is larger), error bars one standard deviation."
    )
    section.plots.append(
        Plot(
            plots.importance(
                list(rows["feature"]),
                rows["importance_mean"].to_numpy(),
                rows["importance_std"].to_numpy(),
                str(model_id),
            ),
            "feature importance",
        )
    )
    section.tables.append(table(rows.drop("model_id"), "importance"))
    return section

"""The report's sections, each a plain object the template lays out: facts, notes, plots, tables.

This module holds the sections every task shares; task_sections.py the task-specific ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from mallard.core.figures import figure
from mallard.report import plots
from mallard.report.data import ReportData


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Plot:
    uri: str  # data:image/png;base64,...
    alt: str


@dataclass
class Section:
    id: str
    title: str
    notes: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    pre: str | None = None  # preformatted text shown as is (an error message)
    details: tuple[str, str] | None = None  # (summary, text) folded away (the spec TOML)


def cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return figure(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def table(frame: pl.DataFrame, caption: str = "") -> Table:
    return Table(caption, list(frame.columns), [[cell(v) for v in row] for row in frame.rows()])


def lineage(data: ReportData) -> Section:
    run = data.run
    started, finished = run.get("started_at"), run.get("finished_at")
    seconds = (
        f"{(finished - started).total_seconds():.1f} s"
        if isinstance(started, datetime) and isinstance(finished, datetime)
        else None
    )
    direction = "higher" if data.greater_is_better else "lower"
    metric = f"{data.primary_metric} ({direction} is better)" if data.primary_metric else None
    facts = [
        ("run id", run.get("run_id")),
        ("pipeline", run.get("pipeline")),
        ("task", run.get("task")),
        ("flow", run.get("flow")),
        ("status", run.get("status")),
        ("started", started),
        ("finished", finished),
        ("duration", seconds),
        ("source", run.get("source")),
        ("spec file", run.get("spec_path")),
        ("data sha256", run.get("data_sha256")),
        ("spec sha256", run.get("spec_sha256")),
        ("code version", run.get("code_version")),
        ("seed", run.get("seed")),
        ("primary metric", metric),
    ]
    if run.get("model_id"):
        facts.append(("scored with model", run["model_id"]))
    section = Section("lineage", "Lineage", facts=[(name, cell(value)) for name, value in facts])
    versions = run.get("versions") or {}
    if versions:
        frame = pl.DataFrame(
            {"library": list(versions), "version": [str(v) for v in versions.values()]}
        )
        section.tables.append(table(frame.sort("library"), "library versions"))
    if data.models.height:
        columns = ["model_id", "candidate", "family", "params", "sha256", "size_bytes"]
        if "decision_threshold" in data.models.columns:
            columns.append("decision_threshold")
        section.tables.append(table(data.models.select(columns), "registered models"))
    if run.get("spec_toml"):
        section.details = ("pipeline spec as run", str(run["spec_toml"]))
    return section


def validation(data: ReportData) -> Section:
    n_rows, n_invalid = data.run.get("n_rows"), data.run.get("n_invalid")
    share = f"{n_invalid / n_rows:.2%}" if n_rows and n_invalid is not None else None
    section = Section(
        "validation",
        "Validation",
        facts=[
            ("rows read", cell(n_rows)),
            ("rows quarantined", cell(n_invalid)),
            ("quarantined share", cell(share)),
        ],
    )
    if data.quarantine.height:
        section.notes.append(
            "Failed checks (a row failing several checks counts under each); the rows themselves "
            "are in ml.quarantine."
        )
        section.tables.append(table(data.quarantine, "quarantine by column and check"))
    else:
        section.notes.append("No quarantine rows are stored for this run.")
    return section


def leaderboard(data: ReportData) -> Section:
    section = Section("leaderboard", "Leaderboard")
    if not data.leaderboard.height:
        section.notes.append(
            "No leaderboard rows: it lists succeeded runs with a primary metric on the test "
            "split (all rows for clustering)."
        )
        return section
    section.notes.append(
        f"Ranked on {data.ranked_on} by the primary metric; the test split (never used to "
        "choose, with its seeded bootstrap 95 % interval) and the tuning CV (mean ± std over "
        "folds) beside it where the task has them."
    )
    board = data.leaderboard.rename(
        {
            "value": data.reported_on.removeprefix("the ").removesuffix(" split"),
            "value_low": "test 95% low",
            "value_high": "test 95% high",
            "selection_value": "selection cv (mean)",
            "selection_std": "selection cv (std)",
            "validation_value": "validation",
            "cv_value": "tuning cv (mean)",
            "cv_std": "tuning cv (std)",
        }
    )
    section.tables.append(table(board, "models"))
    # 'all' is the clustering split (no holdout), 'test' everyone else's.
    ranked = data.metrics.filter(pl.col("split").is_in(["test", "all"]))
    if ranked.height:
        wide = ranked.pivot(
            on="metric", index="model_id", values="value", aggregate_function="first"
        )
        section.tables.append(table(wide.sort("model_id"), f"every metric on {data.reported_on}"))
    return section


def cv(data: ReportData) -> Section:
    section = Section("cv", "Cross-validation spread")
    if not data.cv_results.height:
        section.notes.append("No cross-validation results stored for this run.")
        return section
    metrics = sorted(set(data.cv_results["metric"]))
    metric = data.primary_metric or ""
    if metric not in metrics:  # e.g. a clustering run scores CV on another metric
        metric = metrics[0]
    rows = data.cv_results.filter(pl.col("metric") == metric)
    section.notes.append(
        f"Fold scores of {metric} for every configuration each candidate tried: the box spans "
        "all of a candidate's fold scores, each dot row is one configuration, orange is the "
        "configuration with the best mean."
    )
    section.plots.append(
        Plot(plots.cv_spread(rows, metric, data.greater_is_better), f"CV {metric} per candidate")
    )
    summary = (
        rows.group_by("candidate", "params")
        .agg(
            folds=pl.len(),
            mean=pl.col("value").mean(),
            std=pl.col("value").std(),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
        )
        .sort("mean", "params", descending=[data.greater_is_better, False], nulls_last=True)
        .with_columns(configs=pl.len().over("candidate"))
        .unique("candidate", keep="first", maintain_order=True)
        .select(
            "candidate",
            "configs",
            "folds",
            pl.col("params").alias("best params"),
            "mean",
            "std",
            "min",
            "max",
        )
    )
    section.tables.append(table(summary, f"best configuration per candidate ({metric})"))
    return section


def fairness(data: ReportData) -> Section:
    section = Section("fairness", "Fairness")
    if data.fairness_summary.height:
        section.tables.append(
            table(data.fairness_summary, "disparity per sensitive attribute (status pass / warn)")
        )
    if data.fairness.height:
        wide = data.fairness.pivot(
            on="metric",
            index=["model_id", "attribute", "group"],
            values="value",
            aggregate_function="first",
        ).sort("model_id", "attribute", "group")
        section.tables.append(table(wide, "metrics per group"))
    return section

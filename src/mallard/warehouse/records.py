"""What one run hands to the warehouse: plain dataclasses and Polars frames, no DuckDB."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class RunRecord:
    """One row of ml.runs."""

    run_id: str
    pipeline: str
    task: str
    status: str  # running | succeeded | failed | interrupted (see warehouse/reaper.py)
    started_at: datetime
    spec_toml: str
    spec_sha256: str
    spec_path: str | None = None
    finished_at: datetime | None = None
    source: str | None = None
    data_sha256: str | None = None
    n_rows: int | None = None
    n_invalid: int | None = None
    seed: int | None = None
    primary_metric: str | None = None
    greater_is_better: bool | None = None
    code_version: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    flow: str = "train"  # train | score
    model_id: str | None = None  # score runs: the model that scored
    # The owning process, so a later command can tell a live run from one killed with -9.
    pid: int | None = None
    hostname: str | None = None
    process_started_at: datetime | None = None
    selection_rule: str | None = None  # train runs: how the champion candidate was chosen
    train_rows: int | None = None  # train runs: train rows tuning fitted on ([train] max_rows)
    train_max_rows: int | None = None
    ingest_engine: str | None = None  # polars | duckdb | sql

    def finished(self, status: str, at: datetime, error: str | None = None) -> RunRecord:
        return replace(self, status=status, finished_at=at, error=error)

    def with_data(self, **fields: Any) -> RunRecord:
        return replace(self, **fields)


@dataclass(frozen=True)
class RunBundle:
    """Everything one run writes, in one transaction. Frames omit the run_id column."""

    run: RunRecord
    quarantine: pl.DataFrame | None = None  # row_index, column_name, check_name, failure_value
    cv_results: pl.DataFrame | None = None  # candidate, family, params, fold, metric, value
    metrics: pl.DataFrame | None = None  # model_id, family, split, metric, value
    models: pl.DataFrame | None = None  # ml.models columns but run_id
    feature_profiles: pl.DataFrame | None = None  # model_id, feature, kind, bin, ..., fraction
    promotions: pl.DataFrame | None = None  # ml.promotions columns but run_id
    aliases: pl.DataFrame | None = None  # ml.aliases columns but run_id
    predictions: pl.DataFrame | None = None  # model_id, row_index, prediction, probability
    # More ml.predictions rows, as a Parquet file of those columns (a file scored in batches,
    # never in memory as a whole); inserted with read_parquet in the same transaction.
    predictions_parquet: Path | None = None
    drift: pl.DataFrame | None = None  # model_id, feature, psi, status
    confusion: pl.DataFrame | None = None  # model_id, split, actual, predicted, n
    cluster_assignments: pl.DataFrame | None = None  # model_id, row_index, cluster
    cluster_profiles: pl.DataFrame | None = None  # model_id, cluster, n_rows, feature, mean
    feature_importance: pl.DataFrame | None = None  # model_id, feature, mean, std, rank
    fairness: pl.DataFrame | None = None  # model_id, attribute, group, metric, value
    fairness_summary: pl.DataFrame | None = None  # model_id, attribute, metric, value, ...
    reports: pl.DataFrame | None = None  # created_at, html

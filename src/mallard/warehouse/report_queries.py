"""The reads behind one run's HTML report: every table the report draws from, in one connection.

All reads share one short read-only connection, so the report sees one consistent state and the
file is locked for as short a time as possible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from mallard.core.errors import InputError, WarehouseError
from mallard.warehouse.connection import connect
from mallard.warehouse.migrations import MIGRATIONS, schema_version

# Each entry is one frame of the report, read with the run_id as its only parameter.
_READS: dict[str, str] = {
    # Counts, not rows: a run may quarantine thousands of rows and the report shows checks.
    "quarantine": """
        SELECT column_name, check_name, count(*) AS n_rows,
               min(failure_value) AS example_value
        FROM ml.quarantine WHERE run_id = ?
        GROUP BY ALL ORDER BY n_rows DESC, column_name NULLS FIRST, check_name
    """,
    "leaderboard": """
        SELECT l.rank, l.model_id,
               coalesce(m.candidate, split_part(l.model_id, ':', -1)) AS candidate,
               l.family, l.metric, l.value, l.value_low, l.value_high, l.selection_value,
               l.selection_std, l.validation_value, l.cv_value, l.cv_std
        FROM ml.leaderboard AS l LEFT JOIN ml.models AS m USING (model_id)
        WHERE l.run_id = ? ORDER BY l.rank, l.model_id
    """,
    "cv_results": """
        SELECT candidate, family, params, fold, metric, value
        FROM ml.cv_results WHERE run_id = ? ORDER BY candidate, params, metric, fold
    """,
    "metrics": """
        SELECT model_id, family, split, metric, value, std, ci_low, ci_high
        FROM ml.metrics WHERE run_id = ? ORDER BY model_id, split, metric
    """,
    "predictions": """
        SELECT model_id, row_index, prediction, label, probability, actual, actual_label
        FROM ml.predictions WHERE run_id = ? AND split = 'test' ORDER BY model_id, row_index
    """,
    "confusion": """
        SELECT model_id, split, actual, predicted, n
        FROM ml.confusion WHERE run_id = ? ORDER BY model_id, split, actual, predicted
    """,
    # Sizes, not assignments: the report needs how many rows each cluster holds, and the
    # assignments table has one row per input row.
    "cluster_sizes": """
        SELECT model_id, cluster, count(*) AS n_rows
        FROM ml.cluster_assignments WHERE run_id = ? GROUP BY ALL ORDER BY model_id, cluster
    """,
    "cluster_profiles": """
        SELECT model_id, cluster, n_rows, feature, mean
        FROM ml.cluster_profiles WHERE run_id = ? ORDER BY model_id, cluster, feature
    """,
    "feature_importance": """
        SELECT model_id, feature, importance_mean, importance_std, rank
        FROM ml.feature_importance WHERE run_id = ? ORDER BY model_id, rank, feature
    """,
    "fairness": """
        SELECT model_id, attribute, "group", metric, value
        FROM ml.fairness WHERE run_id = ? ORDER BY model_id, attribute, "group", metric
    """,
    "fairness_summary": """
        SELECT model_id, attribute, metric, value, max_disparity, status
        FROM ml.fairness_summary WHERE run_id = ? ORDER BY model_id, attribute, metric
    """,
    # Lineage of each model; the skops blob is left out (it can be many megabytes).
    "models": """
        SELECT * EXCLUDE (skops_blob, run_id)
        FROM ml.models WHERE run_id = ? ORDER BY model_id
    """,
}


def report_data(db: Path, run_id: str) -> dict[str, pl.DataFrame | dict[str, Any]]:
    """Everything the report of `run_id` shows: "run" is the ml.runs row (versions parsed),
    every other key a frame of that run (any may be empty). A missing run is an InputError."""
    with connect(db, read_only=True) as con:
        _require_current_schema(con, db)
        run = con.sql("SELECT * FROM ml.runs WHERE run_id = ?", params=[run_id]).pl()
        if not run.height:
            raise InputError(f"no run '{run_id}' in {db}; `mallard runs` lists the runs")
        data: dict[str, pl.DataFrame | dict[str, Any]] = {"run": _run_row(run)}
        for name, sql in _READS.items():
            data[name] = con.sql(sql, params=[run_id]).pl()
    return data


def _run_row(frame: pl.DataFrame) -> dict[str, Any]:
    row = frame.row(0, named=True)
    try:
        row["versions"] = json.loads(row["versions"]) if row.get("versions") else {}
    except (TypeError, json.JSONDecodeError):
        row["versions"] = {"unreadable": str(row["versions"])}
    return row


def _require_current_schema(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    # A read-only connection never migrates, so a file last written by an older mallard lacks
    # the report tables; say so instead of failing on a missing table.
    current = MIGRATIONS[-1][0]
    found = schema_version(con)
    if found < current:
        raise WarehouseError(
            f"warehouse {db} is at schema version {found}, the report needs {current}; "
            "any write by this mallard (e.g. `mallard run`) migrates it"
        )

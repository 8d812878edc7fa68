"""Writes: each run's data goes in as one transaction, delete-then-insert by run_id."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, fields
from pathlib import Path

import duckdb
import polars as pl

from mallard.warehouse.connection import connect
from mallard.warehouse.records import RunBundle, RunRecord

# Tables filled from the RunBundle attribute of the same name; ml.runs comes from bundle.run.
RUN_TABLES = (
    "quarantine",
    "cv_results",
    "metrics",
    "models",
    "feature_profiles",
    "promotions",
    "aliases",
    "predictions",
    "drift",
    "confusion",
    "cluster_assignments",
    "cluster_profiles",
    "feature_importance",
    "fairness",
    "fairness_summary",
    "reports",
)


def record_run_started(db: Path, run: RunRecord) -> None:
    """Make a starting run visible (status 'running') so analysts can watch it."""
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            _replace_run_row(con, run)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def write_run(db: Path, bundle: RunBundle) -> None:
    """Replace everything stored under the bundle's run_id with the bundle, atomically."""
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for table in RUN_TABLES:
                con.execute(f"DELETE FROM ml.{table} WHERE run_id = ?", [bundle.run.run_id])
            _replace_run_row(con, bundle.run)
            for table in RUN_TABLES:
                frame = getattr(bundle, table)
                if frame is not None and frame.height:
                    _insert_frame(con, table, bundle.run.run_id, frame)
            if bundle.predictions_parquet is not None:
                _insert_parquet(con, "predictions", bundle.run.run_id, bundle.predictions_parquet)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def write_report(db: Path, run_id: str, report: pl.DataFrame) -> None:
    """Replace a run's stored report (created_at, html) in one transaction."""
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM ml.reports WHERE run_id = ?", [run_id])
            _insert_frame(con, "reports", run_id, report)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def write_promotion(db: Path, promotions: pl.DataFrame, aliases: pl.DataFrame) -> None:
    """A manual promotion or rollback: the decision and the alias change, atomically."""
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            _insert_frame(con, "promotions", None, promotions)
            _insert_frame(con, "aliases", None, aliases)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _replace_run_row(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    row = asdict(run)
    row["versions"] = json.dumps(run.versions, sort_keys=True)
    columns = [f.name for f in fields(RunRecord)]
    con.execute("DELETE FROM ml.runs WHERE run_id = ?", [run.run_id])
    con.execute(
        f"INSERT INTO ml.runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [row[c] for c in columns],
    )


def _insert_parquet(con: duckdb.DuckDBPyConnection, table: str, run_id: str, path: Path) -> None:
    """Rows of a Parquet file (the table's columns but run_id), read by DuckDB as it inserts, so
    a file larger than memory goes in without being loaded; part of the caller's transaction."""
    source = "read_parquet(?)"
    names = con.execute(f"DESCRIBE SELECT * FROM {source}", [str(path)]).fetchall()
    columns = ", ".join('"' + str(row[0]).replace('"', '""') + '"' for row in names)
    # Rows are keyed (row_index), never read in insertion order; keeping it buffers: inserting
    # 6M prediction rows peaked at +640 MB RSS with it, +210 MB without (this connection only).
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(
            f"INSERT INTO ml.{table} (run_id, {columns}) SELECT ?, {columns} FROM {source}",
            [run_id, str(path)],
        )
    finally:
        with contextlib.suppress(duckdb.Error):  # an aborted transaction refuses it; closes
            con.execute("SET preserve_insertion_order = true")


def _insert_frame(
    con: duckdb.DuckDBPyConnection, table: str, run_id: str | None, frame: pl.DataFrame
) -> None:
    # A distinctive name, so no table or Python variable shadows the registered frame.
    view = f"_mallard_insert_{table}"
    con.register(view, frame)
    try:
        columns = ", ".join(f'"{name}"' for name in frame.columns)  # e.g. "group" is a keyword
        con.execute(
            f"INSERT INTO ml.{table} (run_id, {columns}) SELECT ?, {columns} FROM {view}",
            [run_id],
        )
    finally:
        # After a failed INSERT the transaction is aborted and unregister would raise too,
        # hiding the error that says what went wrong.
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)

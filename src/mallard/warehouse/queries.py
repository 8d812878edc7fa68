"""Reads for the CLI and for SQL sources; every read opens the file read-only and briefly.

SQL from outside mallard (`query`: `mallard sql`; `query_source`: a spec's source.sql) runs on a
locked-down connection (warehouse.sandbox) that can only read; so does mallard's own parameterised
SQL (`query_params`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mallard.core.errors import WarehouseError
from mallard.spec_sql import ANALYST, SOURCE, read_only_sql
from mallard.warehouse.connection import connect
from mallard.warehouse.sandbox import untrusted_connection, with_table_names
from mallard.warehouse.writes import RUN_TABLES


def query(db: Path, sql: str) -> pl.DataFrame:
    """Run an analyst's SQL against the warehouse: reads only (one-line WarehouseError, exit 2,
    for anything else: writes, ATTACH, COPY/EXPORT, host files, extensions, settings)."""
    with untrusted_connection(db) as con:
        try:
            return read_only_sql(con, sql, ANALYST)
        except WarehouseError as exc:
            raise with_table_names(con, exc) from None


def runs(
    db: Path,
    limit: int = 20,
    *,
    pipeline: str | None = None,
    flow: str | None = None,
    status: str | None = None,
) -> pl.DataFrame:
    """The newest `limit` runs, of `pipeline` / `flow` / `status` where given."""
    return query_params(
        db,
        """
        SELECT s.run_id, s.pipeline, s.flow, s.status,
               strftime(s.started_at, '%Y-%m-%d %H:%M:%S') AS started, s.seconds,
               s.n_rows, s.n_invalid, s.primary_metric AS metric, s.best_value,
               (l.value_high - l.value_low) / 2 AS best_half_width, s.promoted, s.error
        FROM ml.run_summary AS s
        LEFT JOIN ml.leaderboard AS l ON l.run_id = s.run_id AND l.model_id = s.best_model_id
        WHERE ($pipeline IS NULL OR s.pipeline = $pipeline)
          AND ($flow IS NULL OR s.flow = $flow)
          AND ($status IS NULL OR s.status = $status)
        ORDER BY s.started_at DESC LIMIT $limit
        """,
        {"pipeline": pipeline, "flow": flow, "status": status, "limit": int(limit)},
    )


def pipelines(db: Path) -> list[str]:
    """Every pipeline name with a run in the warehouse, sorted."""
    names = query_params(db, "SELECT DISTINCT pipeline FROM ml.runs ORDER BY pipeline", [])
    return names["pipeline"].to_list()


def run_record(db: Path, run_id: str) -> dict[str, Any] | None:
    frame = query_params(db, "SELECT * FROM ml.runs WHERE run_id = ?", [run_id])
    return frame.row(0, named=True) if frame.height else None


def leaderboard(db: Path, pipeline: str | None = None, run_id: str | None = None) -> pl.DataFrame:
    """The ranked models of one run: the given run, else the pipeline's latest succeeded run."""
    if run_id is None:
        latest = query_params(
            db,
            "SELECT run_id FROM ml.runs WHERE status = 'succeeded' "
            "AND (? IS NULL OR pipeline = ?) ORDER BY finished_at DESC LIMIT 1",
            [pipeline, pipeline],
        )
        if not latest.height:
            return pl.DataFrame()
        run_id = latest.item(0, 0)
    return query_params(
        db,
        "SELECT pipeline, run_id, model_id, family, metric, value, value_low, value_high, "
        "validation_value, cv_value, cv_std, selection_value, selection_std, rank "
        "FROM ml.leaderboard WHERE run_id = ? ORDER BY rank, model_id",
        [run_id],
    )


def run_metric(db: Path, run_id: str, metric: str) -> pl.DataFrame:
    """One metric of every model of `run_id`: on the test split with its bootstrap interval,
    and over the tuning CV as mean and std (empty when the run has no such test figure)."""
    return query_params(
        db,
        """
        SELECT t.model_id, t.value, t.ci_low AS value_low, t.ci_high AS value_high,
               c.value AS cv_value, c.std AS cv_std
        FROM ml.metrics AS t
        LEFT JOIN ml.metrics AS c
          ON c.run_id = t.run_id AND c.model_id = t.model_id AND c.split = 'cv'
         AND c.metric = t.metric
        WHERE t.run_id = $run AND t.split = 'test' AND t.metric = $metric
        """,
        {"run": run_id, "metric": metric},
    )


def run_metrics(db: Path, run_id: str) -> list[str]:
    """The metrics `run_id` has test figures of, sorted."""
    names = query_params(
        db,
        "SELECT DISTINCT metric FROM ml.metrics WHERE run_id = ? AND split = 'test' ORDER BY 1",
        [run_id],
    )
    return names["metric"].to_list()


def table_counts(db: Path, run_id: str) -> dict[str, int]:
    """Rows stored under `run_id` in each run table (for checks and summaries)."""
    counts = {}
    with connect(db, read_only=True) as con:
        for table in ("runs", *RUN_TABLES):
            row = con.execute(f"SELECT count(*) FROM ml.{table} WHERE run_id = ?", [run_id])
            counts[table] = int(row.fetchone()[0])  # type: ignore[index]
    return counts


def query_params(db: Path, sql: str, params: list[object] | dict[str, object]) -> pl.DataFrame:
    """mallard's own parameterised reads, on the same locked-down connection as analysts'."""
    with untrusted_connection(db) as con:
        return con.sql(sql, params=params).pl()


def query_source(
    db: Path,
    sql: str,
    allowed_directories: Sequence[Path] = (),
    allowed_paths: Sequence[Path] = (),
) -> pl.DataFrame:
    """A pipeline's `source.sql`: run against the warehouse (read-only) when it exists, else in
    memory. It may read files only under `allowed_directories` (pass the spec's folder) or in
    `allowed_paths`; the default is no file at all. Anything but a read is one-line InputError."""
    with untrusted_connection(
        db if db.exists() else None,
        allowed_directories=allowed_directories,
        allowed_paths=allowed_paths,
    ) as con:
        return read_only_sql(con, sql, SOURCE)


def champion(db: Path, pipeline: str, ignore_run_id: str | None = None) -> dict[str, Any] | None:
    """The current champion's ml.models row (with its blob), or None.

    `ignore_run_id` leaves out aliases set by that run: a rerun of a run must be judged against
    the champion from before it, not against its own earlier attempt.
    """
    if not db.exists():
        return None
    frame = query_params(
        db,
        """
        SELECT m.* FROM (
            SELECT model_id FROM ml.aliases
            WHERE pipeline = ? AND alias = 'champion'
              -- manual aliases have no run_id: never ignored (IS DISTINCT FROM NULL would)
              AND (run_id IS NULL OR ? IS NULL OR run_id <> ?)
            ORDER BY set_at DESC LIMIT 1
        ) AS a JOIN ml.models AS m USING (model_id)
        """,
        [pipeline, ignore_run_id, ignore_run_id],
    )
    return frame.row(0, named=True) if frame.height else None


def model(db: Path, model_id: str) -> dict[str, Any] | None:
    frame = query_params(db, "SELECT * FROM ml.models WHERE model_id = ?", [model_id])
    return frame.row(0, named=True) if frame.height else None


def feature_profile(db: Path, model_id: str) -> pl.DataFrame:
    return query_params(
        db,
        "SELECT feature, kind, bin, lower, upper, category, fraction "
        "FROM ml.feature_profiles WHERE model_id = ? ORDER BY feature, bin",
        [model_id],
    )


def run_models(db: Path, run_id: str) -> pl.DataFrame:
    """The models a run registered, without their blobs."""
    return query_params(
        db,
        "SELECT model_id, family, params, size_bytes, sha256 FROM ml.models "
        "WHERE run_id = ? ORDER BY model_id",
        [run_id],
    )


def compare_runs(db: Path, original: str, rerun: str) -> pl.DataFrame:
    """Data fingerprint, each model's sha256 and all metrics of two runs, side by side."""
    return query_params(
        db,
        """
        WITH
        a AS (SELECT split_part(model_id, ':', -1) AS candidate, sha256
              FROM ml.models WHERE run_id = $original),
        b AS (SELECT split_part(model_id, ':', -1) AS candidate, sha256
              FROM ml.models WHERE run_id = $rerun),
        ma AS (SELECT split_part(model_id, ':', -1) AS candidate, split, metric, value
               FROM ml.metrics WHERE run_id = $original),
        mb AS (SELECT split_part(model_id, ':', -1) AS candidate, split, metric, value
               FROM ml.metrics WHERE run_id = $rerun)
        SELECT 'data sha256' AS item, a.data_sha256[:16] AS original,
               b.data_sha256[:16] AS rerun,
               a.data_sha256 IS NOT DISTINCT FROM b.data_sha256 AS identical
        FROM ml.runs AS a, ml.runs AS b WHERE a.run_id = $original AND b.run_id = $rerun
        UNION ALL
        SELECT 'model ' || coalesce(a.candidate, b.candidate), a.sha256[:16], b.sha256[:16],
               a.sha256 IS NOT DISTINCT FROM b.sha256
        FROM a FULL JOIN b USING (candidate)
        UNION ALL
        SELECT 'metrics',
               count(ma.value)::VARCHAR || ' values',
               count(mb.value)::VARCHAR || ' values',
               count(*) FILTER (WHERE ma.value IS DISTINCT FROM mb.value) = 0
        FROM ma FULL JOIN mb USING (candidate, split, metric)
        """,
        {"original": original, "rerun": rerun},
    )

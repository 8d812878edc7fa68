"""Numbered schema migrations for the `ml` schema; each runs once, in order, in a transaction."""

from __future__ import annotations

import duckdb

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "runs, quarantine, cv_results, metrics, leaderboard",
        """
        CREATE TABLE ml.runs (
            run_id VARCHAR PRIMARY KEY,
            pipeline VARCHAR NOT NULL,
            task VARCHAR NOT NULL,
            status VARCHAR NOT NULL,        -- running | succeeded | failed
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            spec_path VARCHAR,
            spec_toml VARCHAR NOT NULL,
            spec_sha256 VARCHAR NOT NULL,
            source VARCHAR,
            data_sha256 VARCHAR,
            n_rows BIGINT,
            n_invalid BIGINT,
            seed BIGINT,
            primary_metric VARCHAR,
            greater_is_better BOOLEAN,
            code_version VARCHAR,
            versions JSON,
            error VARCHAR
        );
        CREATE TABLE ml.quarantine (
            run_id VARCHAR NOT NULL,
            row_index BIGINT NOT NULL,
            column_name VARCHAR,
            check_name VARCHAR NOT NULL,
            failure_value VARCHAR
        );
        CREATE TABLE ml.cv_results (
            run_id VARCHAR NOT NULL,
            candidate VARCHAR NOT NULL,
            family VARCHAR NOT NULL,
            params JSON NOT NULL,
            fold INTEGER NOT NULL,
            metric VARCHAR NOT NULL,
            value DOUBLE
        );
        CREATE TABLE ml.metrics (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            family VARCHAR NOT NULL,
            split VARCHAR NOT NULL,         -- cv | validation | test
            metric VARCHAR NOT NULL,
            value DOUBLE
        );
        -- One row per model of each succeeded run, on the run's primary metric:
        -- value is the test split (the rank), validation and cv (mean over folds) beside it.
        CREATE VIEW ml.leaderboard AS
        WITH per_split AS (
            SELECT
                r.pipeline, m.run_id, m.model_id, m.family, m.metric, r.greater_is_better,
                r.finished_at,
                max(m.value) FILTER (WHERE m.split = 'test') AS value,
                max(m.value) FILTER (WHERE m.split = 'validation') AS validation_value,
                max(m.value) FILTER (WHERE m.split = 'cv') AS cv_value
            FROM ml.metrics AS m
            JOIN ml.runs AS r USING (run_id)
            WHERE m.metric = r.primary_metric AND r.status = 'succeeded'
            GROUP BY ALL
        )
        SELECT
            pipeline, run_id, model_id, family, metric, value, validation_value, cv_value,
            RANK() OVER (
                PARTITION BY run_id
                ORDER BY CASE WHEN greater_is_better THEN -value ELSE value END
            ) AS rank,
            finished_at
        FROM per_split;
        """,
    ),
]


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply the migrations this file has not seen yet."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    con.execute(
        "CREATE TABLE IF NOT EXISTS ml.schema_migrations ("
        "version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())"
    )
    applied = {row[0] for row in con.execute("SELECT version FROM ml.schema_migrations").fetchall()}
    for version, name, sql in MIGRATIONS:
        if version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO ml.schema_migrations (version, name) VALUES (?, ?)", [version, name]
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(version) FROM ml.schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0

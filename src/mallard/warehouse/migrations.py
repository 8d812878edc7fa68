"""Numbered schema migrations for the `ml` schema; each runs once, in order, in a transaction."""

from __future__ import annotations

import duckdb

from mallard.warehouse.schema_text import (
    LEADERBOARD_6,
    ML_COMMENTS_4,
    ML_COMMENTS_5,
    ML_COMMENTS_6,
    ML_COMMENTS_7,
    ML_COMMENTS_8,
    _text,
)

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
        -- value is the test split, validation (the rank) and cv (mean over folds) beside it;
        -- clustering has no holdout and is ranked on all rows (split 'all').
        CREATE VIEW ml.leaderboard AS
        WITH per_split AS (
            SELECT
                r.pipeline, m.run_id, m.model_id, m.family, m.metric, r.greater_is_better,
                r.finished_at,
                max(m.value) FILTER (WHERE m.split IN ('test', 'all')) AS value,
                max(m.value) FILTER (WHERE m.split = 'validation') AS validation_value,
                max(m.value) FILTER (WHERE m.split = 'cv') AS cv_value
            FROM ml.metrics AS m
            JOIN ml.runs AS r USING (run_id)
            WHERE m.metric = r.primary_metric AND r.status = 'succeeded'
            GROUP BY ALL
        )
        SELECT
            pipeline, run_id, model_id, family, metric, value, validation_value, cv_value,
            -- Ranked the way the champion candidate is chosen: on validation, so the test
            -- split stays an untouched estimate (clustering has neither: all rows).
            RANK() OVER (
                PARTITION BY run_id
                ORDER BY CASE
                    WHEN greater_is_better THEN -coalesce(validation_value, value)
                    ELSE coalesce(validation_value, value)
                END
            ) AS rank,
            finished_at
        FROM per_split;
        """,
    ),
    (
        2,
        "model registry, champion aliases and promotions, predictions, drift",
        """
        ALTER TABLE ml.runs ADD COLUMN flow VARCHAR DEFAULT 'train';  -- train | score
        ALTER TABLE ml.runs ADD COLUMN model_id VARCHAR;  -- score runs: the model that scored
        CREATE TABLE ml.models (
            model_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            pipeline VARCHAR NOT NULL,
            candidate VARCHAR NOT NULL,
            family VARCHAR NOT NULL,
            params JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            skops_blob BLOB NOT NULL,       -- skops zip, never pickle
            size_bytes BIGINT NOT NULL,
            sha256 VARCHAR NOT NULL,        -- of skops_blob; checked before every load
            trusted_types JSON NOT NULL,    -- the only non-default types a load may accept
            data_sha256 VARCHAR,
            spec_sha256 VARCHAR,
            code_version VARCHAR,
            seed BIGINT,
            versions JSON,
            feature_names JSON NOT NULL,
            target VARCHAR
        );
        -- Reference distribution of each feature (and of the predictions) at training time.
        CREATE TABLE ml.feature_profiles (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            feature VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            bin INTEGER NOT NULL,
            lower DOUBLE,
            upper DOUBLE,
            category VARCHAR,
            fraction DOUBLE NOT NULL
        );
        -- Full history: a new row per change; the latest row per (pipeline, alias) is current.
        CREATE TABLE ml.aliases (
            run_id VARCHAR,                 -- the train run whose rule set it; null if manual
            pipeline VARCHAR NOT NULL,
            alias VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            set_at TIMESTAMPTZ NOT NULL,
            set_by VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            previous_model_id VARCHAR
        );
        -- One row per promotion decision, promoted or not, with the numbers behind it.
        CREATE TABLE ml.promotions (
            run_id VARCHAR,
            pipeline VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            champion_model_id VARCHAR,
            policy VARCHAR NOT NULL,        -- auto | manual | never (repro runs)
            metric VARCHAR,
            model_value DOUBLE,
            champion_value DOUBLE,
            improvement DOUBLE,
            min_improvement DOUBLE,
            promoted BOOLEAN NOT NULL,
            reason VARCHAR NOT NULL,
            decided_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE ml.predictions (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            row_index BIGINT NOT NULL,      -- 0-based position in the scored input
            prediction DOUBLE,
            probability DOUBLE
        );
        CREATE TABLE ml.drift (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            feature VARCHAR NOT NULL,       -- '__prediction__' for the prediction distribution
            psi DOUBLE NOT NULL,
            status VARCHAR NOT NULL         -- stable < 0.1 <= watch < 0.25 <= shifted
        );
        CREATE VIEW ml.champions AS
        SELECT a.pipeline, a.model_id, m.family, m.run_id AS trained_in_run, a.set_at,
               a.set_by, a.reason, a.previous_model_id, m.sha256, m.size_bytes
        FROM (
            SELECT *, row_number() OVER (PARTITION BY pipeline ORDER BY set_at DESC) AS newest
            FROM ml.aliases WHERE alias = 'champion'
        ) AS a
        JOIN ml.models AS m USING (model_id)
        WHERE a.newest = 1;
        """,
    ),
    (
        3,
        "classification and clustering results, explanations, fairness, reports",
        """
        -- Train runs also store their test-split predictions (split = 'test'), for plots.
        ALTER TABLE ml.predictions ADD COLUMN split VARCHAR;      -- null for score runs
        ALTER TABLE ml.predictions ADD COLUMN label VARCHAR;      -- class label or cluster
        ALTER TABLE ml.predictions ADD COLUMN actual DOUBLE;      -- regression truth, if known
        ALTER TABLE ml.predictions ADD COLUMN actual_label VARCHAR;  -- class truth, if known
        ALTER TABLE ml.cv_results ADD COLUMN iteration INTEGER;  -- successive halving round
        ALTER TABLE ml.cv_results ADD COLUMN n_resources BIGINT;  -- rows used in that round
        ALTER TABLE ml.models ADD COLUMN task VARCHAR;
        ALTER TABLE ml.models ADD COLUMN decision_threshold DOUBLE;  -- tuned, binary only
        ALTER TABLE ml.models ADD COLUMN positive_class VARCHAR;  -- binary classification
        CREATE TABLE ml.confusion (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            actual VARCHAR NOT NULL,
            predicted VARCHAR NOT NULL,
            n BIGINT NOT NULL
        );
        CREATE TABLE ml.cluster_assignments (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            row_index BIGINT NOT NULL,
            cluster INTEGER NOT NULL
        );
        -- Per-cluster size and mean of each numeric input feature: describes each segment.
        CREATE TABLE ml.cluster_profiles (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            cluster INTEGER NOT NULL,
            n_rows BIGINT NOT NULL,
            feature VARCHAR NOT NULL,
            mean DOUBLE
        );
        CREATE TABLE ml.feature_importance (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            feature VARCHAR NOT NULL,       -- an input column, not a one-hot column
            importance_mean DOUBLE NOT NULL,
            importance_std DOUBLE NOT NULL,
            rank INTEGER NOT NULL
        );
        CREATE TABLE ml.fairness (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            attribute VARCHAR NOT NULL,
            "group" VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            value DOUBLE
        );
        CREATE TABLE ml.fairness_summary (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            attribute VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,        -- e.g. demographic_parity_difference
            value DOUBLE,
            max_disparity DOUBLE,
            status VARCHAR NOT NULL         -- pass | warn
        );
        -- One line per run: what an analyst or `mallard runs` wants first.
        CREATE VIEW ml.run_summary AS
        SELECT
            r.run_id, r.pipeline, r.flow, r.status, r.started_at, r.finished_at,
            round(epoch(r.finished_at) - epoch(r.started_at), 1) AS seconds,
            r.n_rows, r.n_invalid, r.primary_metric,
            best.model_id AS best_model_id, best.value AS best_value,
            decision.promoted, r.error
        FROM ml.runs AS r
        LEFT JOIN (
            SELECT run_id, model_id, value FROM ml.leaderboard WHERE rank = 1
            QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY model_id) = 1
        ) AS best USING (run_id)
        LEFT JOIN (
            SELECT run_id, bool_or(promoted) AS promoted FROM ml.promotions GROUP BY run_id
        ) AS decision USING (run_id);
        CREATE TABLE ml.reports (
            run_id VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            html VARCHAR NOT NULL           -- self-contained: plots inline, no network
        );
        """,
    ),
    (
        4,
        "a COMMENT on every table, view and column of ml",
        "\n".join(
            f"COMMENT ON {kind} ml.{name} IS {_text(about)};\n"
            + "".join(
                f'COMMENT ON COLUMN ml.{name}."{column}" IS {_text(text)};\n'
                for column, text in columns.items()
            )
            for name, (kind, about, columns) in ML_COMMENTS_4.items()
        ),
    ),
    (
        5,
        "the process that owns a run (pid, hostname, process_started_at); status interrupted",
        """
        ALTER TABLE ml.runs ADD COLUMN pid BIGINT;
        ALTER TABLE ml.runs ADD COLUMN hostname VARCHAR;
        ALTER TABLE ml.runs ADD COLUMN process_started_at TIMESTAMPTZ;
        """
        + "".join(
            f'COMMENT ON COLUMN ml.{table}."{column}" IS {_text(text)};\n'
            for (table, column), text in ML_COMMENTS_5.items()
        ),
    ),
    (
        6,
        "uncertainty (std over folds, test intervals), selection rule, finalized models",
        """
        ALTER TABLE ml.metrics ADD COLUMN std DOUBLE;
        ALTER TABLE ml.metrics ADD COLUMN n_folds INTEGER;
        ALTER TABLE ml.metrics ADD COLUMN ci_low DOUBLE;
        ALTER TABLE ml.metrics ADD COLUMN ci_high DOUBLE;
        ALTER TABLE ml.runs ADD COLUMN selection_rule VARCHAR;
        ALTER TABLE ml.models ADD COLUMN evaluated_model_id VARCHAR;
        ALTER TABLE ml.models ADD COLUMN trained_on VARCHAR;
        """
        + LEADERBOARD_6
        + "".join(
            f'COMMENT ON COLUMN ml.{table}."{column}" IS {_text(text)};\n'
            for (table, column), text in ML_COMMENTS_6.items()
        ),
    ),
    (
        7,
        "training sample ([train] max_rows) and ingest engine of a run",
        """
        ALTER TABLE ml.runs ADD COLUMN train_rows BIGINT;
        ALTER TABLE ml.runs ADD COLUMN train_max_rows BIGINT;
        ALTER TABLE ml.runs ADD COLUMN ingest_engine VARCHAR;
        """
        + "".join(
            f'COMMENT ON COLUMN ml.{table}."{column}" IS {_text(text)};\n'
            for (table, column), text in ML_COMMENTS_7.items()
        ),
    ),
    (
        8,
        "catalog comments for the training rows: max_rows also caps the deployable refit",
        "".join(
            f'COMMENT ON COLUMN ml.{table}."{column}" IS {_text(text)};\n'
            for (table, column), text in ML_COMMENTS_8.items()
        ),
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
    rows = con.execute("SELECT max(version) FROM ml.schema_migrations").fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0

"""What the COMMENTs of the `ml` schema say, and the long SQL of some migrations: the text that
numbered migrations in migrations.py apply. Landed entries are part of their migration: change
what a comment says through a new migration's dict, never by editing an old one."""

from __future__ import annotations

_RUN = "the run that wrote this row (ml.runs.run_id)"
_MODEL = "the model (ml.models.model_id, '<run_id>:<candidate>')"


def _text(comment: str) -> str:
    return "'" + comment.replace("'", "''") + "'"


# Migration 4's catalog comments: what each table, view and column holds, and for metric values
# which split they are on. `duckdb_tables()`, `duckdb_views()` and `duckdb_columns()` show them.
# Part of a landed migration: never edit; a later migration adds comments for its own columns.
ML_COMMENTS_4: dict[str, tuple[str, str, dict[str, str]]] = {
    "schema_migrations": (
        "TABLE",
        "Migrations applied to this warehouse: one row per schema version.",
        {
            "version": "migration number; the highest is the schema version",
            "name": "what the migration added",
            "applied_at": "when it was applied to this file",
        },
    ),
    "runs": (
        "TABLE",
        "One row per flow run (train or score): status, inputs, spec and versions.",
        {
            "run_id": "run id, unique; every run table joins on it",
            "pipeline": "pipeline name from the spec",
            "task": "regression | classification | clustering",
            "status": "running | succeeded | failed (running while the run is in progress)",
            "started_at": "when the run started",
            "finished_at": "when the run ended; null while running",
            "spec_path": "path of the spec file the run was started with",
            "spec_toml": "the full spec text the run used",
            "spec_sha256": "SHA-256 of spec_toml",
            "source": "the input the run read (file path or SQL)",
            "data_sha256": "SHA-256 of the input data",
            "n_rows": "input rows read",
            "n_invalid": "input rows that failed validation (their failures are in ml.quarantine)",
            "seed": "random seed of splits and searches",
            "primary_metric": "metric the run ranks models on (see ml.leaderboard)",
            "greater_is_better": "true if a higher primary_metric is better",
            "code_version": "mallard version (and git commit when known) that ran",
            "versions": "JSON: versions of the libraries that ran",
            "error": "the failure message of a failed run; null otherwise",
            "flow": "train | score",
            "model_id": "score runs: the model that scored; null for train runs",
        },
    ),
    "quarantine": (
        "TABLE",
        "Input rows that failed validation: one row per failed check, with the raw value.",
        {
            "run_id": _RUN,
            "row_index": "0-based position of the row in the run's input",
            "column_name": "column that failed; null for a row- or schema-level check",
            "check_name": "the schema check that failed",
            "failure_value": "the raw input value, as text (before any PII policy ran)",
        },
    ),
    "cv_results": (
        "TABLE",
        "Cross-validation of the hyperparameter search: one row per candidate setting, fold "
        "and metric, on the training split's folds.",
        {
            "run_id": _RUN,
            "candidate": "candidate name from the spec",
            "family": "model family, e.g. ridge or hist_gradient_boosting",
            "params": "JSON: the hyperparameters tried",
            "fold": "cross-validation fold number",
            "metric": "metric name",
            "value": "the metric on that fold's held-out part of the training split",
            "iteration": "successive-halving round; null for grid and random search",
            "n_resources": "rows used in that halving round; null outside halving",
        },
    ),
    "metrics": (
        "TABLE",
        "Every metric of every model of a train run, per split (long form).",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "family": "model family",
            "split": "cv (mean over folds of the best params) | validation (used to rank) | "
            "test (untouched estimate) | all (clustering: every row, no holdout)",
            "metric": "metric name",
            "value": "the metric on the split named in split",
        },
    ),
    "leaderboard": (
        "VIEW",
        "One row per model of each succeeded run on the run's primary metric, ranked on the "
        "validation split; value is the test split.",
        {
            "pipeline": "pipeline name",
            "run_id": _RUN,
            "model_id": _MODEL,
            "family": "model family",
            "metric": "the run's primary metric",
            "value": "primary metric on the TEST split (clustering: all rows)",
            "validation_value": "primary metric on the VALIDATION split; rank is on this",
            "cv_value": "primary metric, mean over the CV folds of the training split",
            "rank": "1 = best on validation within the run (clustering: on all rows)",
            "finished_at": "when the run finished",
        },
    ),
    "models": (
        "TABLE",
        "Model registry: every trained model with its skops file (a BLOB: select columns by "
        "name rather than SELECT *).",
        {
            "model_id": "model id, '<run_id>:<candidate>'",
            "run_id": "the train run that fitted it",
            "pipeline": "pipeline name",
            "candidate": "candidate name from the spec",
            "family": "model family",
            "params": "JSON: the chosen hyperparameters",
            "created_at": "when it was stored",
            "skops_blob": "the fitted pipeline as a skops zip (never pickle); megabytes",
            "size_bytes": "size of skops_blob in bytes",
            "sha256": "SHA-256 of skops_blob, checked before every load",
            "trusted_types": "JSON: the only non-default types a load accepts",
            "data_sha256": "SHA-256 of the training data",
            "spec_sha256": "SHA-256 of the spec it was trained with",
            "code_version": "mallard version that trained it",
            "seed": "random seed",
            "versions": "JSON: library versions at training time",
            "feature_names": "JSON: the input columns the model expects",
            "target": "target column; null for clustering",
            "task": "regression | classification | clustering",
            "decision_threshold": "binary classification: the tuned probability threshold",
            "positive_class": "binary classification: the label treated as positive",
        },
    ),
    "feature_profiles": (
        "TABLE",
        "Training-time distribution of each feature (and of the predictions), the reference "
        "for drift.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "feature": "input column; '__prediction__' for the model's predictions",
            "kind": "numeric (bins with lower/upper) | categorical (one bin per category)",
            "bin": "bin number",
            "lower": "numeric bins: lower edge",
            "upper": "numeric bins: upper edge",
            "category": "categorical bins: the category",
            "fraction": "share of training rows in the bin (0-1)",
        },
    ),
    "aliases": (
        "TABLE",
        "Alias history (e.g. champion): a new row per change; the latest row per pipeline and "
        "alias is current (see ml.champions).",
        {
            "run_id": "the train run whose promotion rule set it; null if set by hand",
            "pipeline": "pipeline name",
            "alias": "alias name, e.g. champion",
            "model_id": "the model the alias points to from set_at on",
            "set_at": "when it was set",
            "set_by": "'train run <run_id>' or the user who ran `mallard promote`",
            "reason": "why it was set",
            "previous_model_id": "the model it pointed to before; null the first time",
        },
    ),
    "promotions": (
        "TABLE",
        "One row per promotion decision, promoted or not, with the numbers behind it "
        "(values on the test split).",
        {
            "run_id": "the train run that decided; null for a manual promotion",
            "pipeline": "pipeline name",
            "model_id": "the candidate model",
            "champion_model_id": "the champion at decision time; null if none",
            "policy": "auto | manual | never (repro runs)",
            "metric": "the metric compared",
            "model_value": "candidate's metric on the test split",
            "champion_value": "champion's metric on the same test split",
            "improvement": "model_value vs champion_value, in the metric's better direction",
            "min_improvement": "improvement the spec requires to promote",
            "promoted": "true if the candidate became champion",
            "reason": "the decision in words",
            "decided_at": "when it was decided",
        },
    ),
    "predictions": (
        "TABLE",
        "Predictions: a score run's scored rows (split null), and each train run's test-split "
        "predictions (split 'test'), for plots.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "row_index": "0-based position in the input file (no id column is carried)",
            "prediction": "regression: predicted value; else null or a numeric label",
            "probability": "binary: P(positive class, see ml.models.positive_class); "
            "multiclass: P(predicted class); null without probabilities",
            "split": "test for a train run's test-split rows; null for score runs",
            "label": "predicted class label or cluster",
            "actual": "regression: the true value, if known",
            "actual_label": "classification: the true class, if known",
        },
    ),
    "drift": (
        "TABLE",
        "Drift of a score run's input against the model's training profile: population "
        "stability index per feature.",
        {
            "run_id": "the score run",
            "model_id": _MODEL,
            "feature": "input column; '__prediction__' for the distribution of predictions",
            "psi": "population stability index against ml.feature_profiles",
            "status": "stable (psi < 0.1) | watch (< 0.25) | shifted (>= 0.25)",
        },
    ),
    "champions": (
        "VIEW",
        "The current champion model of each pipeline (latest 'champion' row of ml.aliases).",
        {
            "pipeline": "pipeline name",
            "model_id": "the champion model",
            "family": "model family",
            "trained_in_run": "the train run that fitted it",
            "set_at": "when it became champion",
            "set_by": "'train run <run_id>' or the user who promoted it",
            "reason": "why it became champion",
            "previous_model_id": "the champion before it; null if none",
            "sha256": "SHA-256 of its skops file",
            "size_bytes": "size of its skops file in bytes",
        },
    ),
    "confusion": (
        "TABLE",
        "Classification: confusion counts per model and split (validation and test).",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "split": "validation | test",
            "actual": "true class",
            "predicted": "predicted class",
            "n": "rows with that actual and predicted class on that split",
        },
    ),
    "cluster_assignments": (
        "TABLE",
        "Clustering: the cluster of each input row.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "row_index": "0-based position in the input file (no id column is carried)",
            "cluster": "cluster number",
        },
    ),
    "cluster_profiles": (
        "TABLE",
        "Clustering: size of each cluster and mean of each numeric input feature in it (all rows).",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "cluster": "cluster number",
            "n_rows": "rows in the cluster",
            "feature": "numeric input column",
            "mean": "mean of the feature over the cluster's rows",
        },
    ),
    "feature_importance": (
        "TABLE",
        "Permutation importance on the test split, per model and input column.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "feature": "input column (not a one-hot column)",
            "importance_mean": "mean drop of the primary metric on the test split when the "
            "column is shuffled",
            "importance_std": "standard deviation of that drop over the repeats",
            "rank": "1 = most important within the model",
        },
    ),
    "fairness": (
        "TABLE",
        "Binary classification: metrics per group of each sensitive attribute, on the test "
        "split, for the run's best model.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "attribute": "sensitive column",
            "group": "a value of it ('__null__' for missing); a reserved word: quote it, \"group\"",
            "metric": "metric name",
            "value": "the metric on the test-split rows of that group",
        },
    ),
    "fairness_summary": (
        "TABLE",
        "Binary classification: disparity per sensitive attribute on the test split, with the "
        "pass/warn verdict.",
        {
            "run_id": _RUN,
            "model_id": _MODEL,
            "attribute": "sensitive column",
            "metric": "*_difference (0 = equal) or *_ratio (1 = equal)",
            "value": "the disparity on the test split; null if not computable (warns)",
            "max_disparity": "the spec's limit: a difference warns above it, a ratio below "
            "1 - max_disparity",
            "status": "pass | warn",
        },
    ),
    "run_summary": (
        "VIEW",
        "One line per run: what an analyst or `mallard runs` wants first.",
        {
            "run_id": _RUN,
            "pipeline": "pipeline name",
            "flow": "train | score",
            "status": "running | succeeded | failed",
            "started_at": "when the run started",
            "finished_at": "when it ended",
            "seconds": "duration in seconds",
            "n_rows": "input rows read",
            "n_invalid": "input rows quarantined",
            "primary_metric": "the metric models are ranked on",
            "best_model_id": "the model ranked 1 on the validation split",
            "best_value": "that model's primary metric on the TEST split",
            "promoted": "true if the run promoted a new champion",
            "error": "the failure message of a failed run",
        },
    ),
    "reports": (
        "TABLE",
        "HTML report of each run, self-contained (plots inline, no network).",
        {
            "run_id": _RUN,
            "created_at": "when it was rendered",
            "html": "the report; save it to a .html file to view",
        },
    ),
}


# Migration 5's comments: its new ml.runs columns, and the status values it adds.
ML_COMMENTS_5: dict[tuple[str, str], str] = {
    ("runs", "pid"): "process id of the command that ran the run",
    ("runs", "hostname"): "host that ran the run (its hostname)",
    ("runs", "process_started_at"): "when the run's process started; with pid it tells a "
    "live owner from a reused pid",
    ("runs", "status"): "running | succeeded | failed | interrupted (running while the run "
    "is in progress; interrupted: its process died, e.g. kill -9, see error)",
    ("run_summary", "status"): "running | succeeded | failed | interrupted (its process "
    "died, see error)",
}


# Migration 6: uncertainty (std over folds, test intervals), the selection rule and finalized
# models. CREATE OR REPLACE VIEW drops a view's comments, so the leaderboard's are set again.
ML_COMMENTS_6: dict[tuple[str, str], str] = {
    ("metrics", "split"): "cv (mean over the tuning folds of the best params) | selection (mean "
    "over the CV on train + validation rows the champion is chosen on) | validation (a reported "
    "check) | test (untouched estimate) | all (clustering: every row, no holdout)",
    ("metrics", "std"): "cv and selection rows: standard deviation of the metric over folds",
    ("metrics", "n_folds"): "cv and selection rows: how many folds the mean is over",
    ("metrics", "ci_low"): "test rows: lower end of the seeded bootstrap 95 % interval",
    ("metrics", "ci_high"): "test rows: upper end of the seeded bootstrap 95 % interval",
    ("runs", "selection_rule"): "train runs: how the champion candidate was chosen, in words",
    ("models", "evaluated_model_id"): "a finalized model (refitted on every labelled row): "
    "the model of the same configuration whose test figures describe it; else null",
    ("models", "trained_on"): "rows the model was fitted on: train (the train split) | "
    "labelled (train + validation + test: the deployable refit) | all (clustering)",
    ("leaderboard", "pipeline"): "pipeline name",
    ("leaderboard", "run_id"): _RUN,
    ("leaderboard", "model_id"): _MODEL,
    ("leaderboard", "family"): "model family",
    ("leaderboard", "metric"): "the run's primary metric",
    ("leaderboard", "value"): "primary metric on the TEST split (clustering: all rows)",
    ("leaderboard", "value_low"): "TEST split: lower end of the bootstrap 95 % interval",
    ("leaderboard", "value_high"): "TEST split: upper end of the bootstrap 95 % interval",
    ("leaderboard", "validation_value"): "primary metric on the VALIDATION split",
    ("leaderboard", "cv_value"): "primary metric, mean over the tuning CV folds (train split)",
    ("leaderboard", "cv_std"): "standard deviation of cv_value over the folds",
    ("leaderboard", "selection_value"): "primary metric, mean over the selection CV on train + "
    "validation rows; rank is on this (on validation for runs before migration 6)",
    ("leaderboard", "selection_std"): "standard deviation of selection_value over the folds",
    ("leaderboard", "rank"): "1 = the way the champion candidate is chosen: best selection_value "
    "(older runs: validation; clustering: all rows)",
    ("leaderboard", "finished_at"): "when the run finished",
}
LEADERBOARD_6 = """
CREATE OR REPLACE VIEW ml.leaderboard AS
WITH per_split AS (
    SELECT
        r.pipeline, m.run_id, m.model_id, m.family, m.metric, r.greater_is_better,
        r.finished_at,
        max(m.value) FILTER (WHERE m.split IN ('test', 'all')) AS value,
        max(m.ci_low) FILTER (WHERE m.split = 'test') AS value_low,
        max(m.ci_high) FILTER (WHERE m.split = 'test') AS value_high,
        max(m.value) FILTER (WHERE m.split = 'validation') AS validation_value,
        max(m.value) FILTER (WHERE m.split = 'cv') AS cv_value,
        max(m.std) FILTER (WHERE m.split = 'cv') AS cv_std,
        max(m.value) FILTER (WHERE m.split = 'selection') AS selection_value,
        max(m.std) FILTER (WHERE m.split = 'selection') AS selection_std
    FROM ml.metrics AS m
    JOIN ml.runs AS r USING (run_id)
    WHERE m.metric = r.primary_metric AND r.status = 'succeeded'
    GROUP BY ALL
)
SELECT
    pipeline, run_id, model_id, family, metric, value, validation_value, cv_value,
    RANK() OVER (
        PARTITION BY run_id
        ORDER BY CASE
            WHEN greater_is_better THEN -coalesce(selection_value, validation_value, value)
            ELSE coalesce(selection_value, validation_value, value)
        END
    ) AS rank,
    finished_at, value_low, value_high, cv_std, selection_value, selection_std
FROM per_split;
""" + (
    "COMMENT ON VIEW ml.leaderboard IS "
    + _text(
        "One row per evaluated model of each succeeded run on the run's primary metric, ranked "
        "the way the champion is chosen (selection CV on train + validation rows); value is "
        "the test split, with its bootstrap 95 % interval."
    )
    + ";\n"
)


# Migration 7: the training sample and the ingest engine (issue 13, data larger than memory).
ML_COMMENTS_7: dict[tuple[str, str], str] = {
    ("runs", "train_rows"): "train runs: train-split rows tuning fitted on (all of them, or the "
    "seeded sample [train] max_rows allows); evaluation and importance use every row",
    ("runs", "train_max_rows"): "train runs: the spec's [train] max_rows; null: no limit",
    ("runs", "ingest_engine"): "how the input was read and validated: polars (in memory) | "
    "duckdb (out of core, under a memory limit) | sql (source.sql in the warehouse)",
}


# Migration 8: migration 6 and 7's words for the training rows predate [train] max_rows capping
# the deployable refit (a seeded sample of the labelled rows) and importance's row sample.
ML_COMMENTS_8: dict[tuple[str, str], str] = {
    ("models", "trained_on"): "rows the model was fitted on: train (the train split, or its "
    "seeded [train] max_rows sample: ml.runs.train_rows) | labelled (the deployable refit: every "
    "train + validation + test row, or a seeded sample of [train] max_rows of them) | all "
    "(clustering)",
    ("runs", "train_rows"): "train runs: train-split rows tuning fitted on (all of them, or the "
    "seeded sample [train] max_rows allows); evaluation uses every validation and test row, "
    "permutation importance a seeded sample of at most 5,000 test rows",
}

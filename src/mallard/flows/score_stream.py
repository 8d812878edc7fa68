"""Scoring a file larger than memory ([ingest] engine = "duckdb", or "auto" above
duckdb_above_mb): DuckDB validates the input into Parquet under a temporary folder, and the
valid rows are read back SCORE_BATCH_ROWS (100,000) at a time, in input order. Each batch gets
its PII protected, its features built and its predictions made; its predictions are appended to
a staged Parquet file, its scored rows to the staged scored file (the hidden `.NAME.partial` the
flow renames into place after the commit), and its drift bin counts are added up. The run then
commits once: the warehouse inserts the staged predictions with DuckDB's read_parquet inside the
run's single transaction. Memory is bounded by the batch, not the file.

The figures equal the in-memory path's on the same rows: predictions are row by row, drift is
computed from summed bin counts (tasks.drift.bin_counts), PII policies work value by value.
`[features] sql` runs on each batch, so a window or aggregate over rows sees one batch at a time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl
from prefect import get_run_logger

from mallard.core.errors import InputError
from mallard.core.spec import FeaturesSection, Spec
from mallard.flows.out_of_core import OnDisk, validated_on_disk
from mallard.flows.run_record import RecordedRun
from mallard.flows.steps import step
from mallard.tasks.drift import add_counts, bin_counts, psi_from_counts
from mallard.tasks.features import scoring_features
from mallard.tasks.metrics import Target
from mallard.tasks.predict import (
    PREDICTION_SCHEMA,
    join_keys,
    prediction_rows,
    score_rows,
    scored_file,
)
from mallard.warehouse import RunBundle
from mallard.warehouse.out_of_core import TEMP_DIR_ENV

# Measured on 6M generated housing rows (222 MB CSV, memory_limit 64MB): the `mallard score`
# process peaked at ~750 MB RSS with batches of 100k rows and ~800 MB with 200k (~300 MB of it
# imports, ~450 MB by the end of validation), against 7.1 GB for the in-memory engine on the
# same file; 100k-row batches took no longer (per-batch costs: features SQL, predict calls).
SCORE_BATCH_ROWS = 100_000
BATCH_ROWS_ENV = "MALLARD_SCORE_BATCH_ROWS"  # another batch size, e.g. in tests


def batch_rows() -> int:
    """SCORE_BATCH_ROWS, or MALLARD_SCORE_BATCH_ROWS when set (a whole number from 1)."""
    text = os.environ.get(BATCH_ROWS_ENV, "").strip()
    if not text:
        return SCORE_BATCH_ROWS
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{BATCH_ROWS_ENV}={text!r}: give a whole number of rows from 1")
    return int(text)


@dataclass(frozen=True)
class Scorer:
    """What scores rows: the verified champion, the [features] it was trained with, and the
    training profile drift is measured against."""

    model_id: str
    model: Any
    target: Target
    features: FeaturesSection
    feature_names: list[str]
    profile: pl.DataFrame
    id_column: str | None  # the spec's [source] id, carried into the scored file

    def features_of(
        self, rows: pl.DataFrame, positions: pl.Series
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
        """The model's features of `rows`, and the rows and input positions they came from
        (fewer than given when features.sql drops rows)."""
        X, kept = scoring_features(rows, self.features, self.feature_names)
        if kept is None:
            return X, rows, positions
        return X, rows[kept], positions.gather(kept)

    def drift_rows(self, drift: pl.DataFrame) -> pl.DataFrame:
        """ml.drift rows of a psi table (feature, psi, status)."""
        return drift.with_columns(pl.lit(self.model_id).alias("model_id"))


@dataclass(frozen=True)
class Outcome:
    """What a scoring pass tells the flow's result."""

    n_rows: int
    n_invalid: int
    n_scored: int
    drift: pl.DataFrame  # feature, psi, status


@dataclass(frozen=True)
class Streamed:
    """The staged files of a file scored in batches, and the drift of all its rows."""

    predictions: Path  # Parquet of ml.predictions rows (PREDICTION_SCHEMA)
    n_scored: int
    drift: pl.DataFrame


def score_out_of_core(
    spec: Spec, run: RecordedRun, files: list[Path], scorer: Scorer, staged: Path | None
) -> Outcome:
    """Validate `files` out of core, score the valid rows in batches (the scored file, if any,
    to `staged`) and commit the run once, while the staged predictions still exist."""
    with tempfile.TemporaryDirectory(
        prefix="mallard-score-", dir=os.environ.get(TEMP_DIR_ENV)
    ) as work:
        folder = Path(work)
        rows = validated_on_disk(spec, run, files, folder, target_optional=True)
        streamed = score_batches(rows, scorer, folder / "predictions.parquet", staged, batch_rows())
        log_drift(streamed.drift)
        run.commit(
            RunBundle(
                run=run.finished(),
                quarantine=rows.quarantine,
                predictions_parquet=streamed.predictions,
                drift=scorer.drift_rows(streamed.drift),
            )
        )
    return Outcome(rows.validated.n_rows, rows.n_invalid, streamed.n_scored, streamed.drift)


def stream_scores(
    rows: OnDisk,
    scorer: Scorer,
    predictions_path: Path,
    scored_path: Path | None,
    rows_per_batch: int = SCORE_BATCH_ROWS,
) -> Streamed:
    """Score the valid rows on disk `rows_per_batch` at a time, appending ml.predictions rows
    to `predictions_path` and the scored file's rows to `scored_path` (.csv or .parquet by the
    name before '.partial'). On any error the scored file is removed: nothing half-written
    stays behind (the predictions file is the caller's temporary folder's)."""
    if rows.validated.n_valid == 0:
        raise InputError("no valid rows to score: every input row is in ml.quarantine")
    log = get_run_logger()
    predictions = _Appender(predictions_path)
    scored = None if scored_path is None else _Appender(scored_path)
    counts: dict[str, np.ndarray] | None = None
    n_scored, n_read, last_row = 0, 0, -1
    try:
        for batch, positions in rows.validated.valid_batches(rows_per_batch):
            if positions[0] <= last_row or not positions.is_sorted():
                raise RuntimeError("the valid rows on disk are not in input order")
            last_row = int(positions[-1])
            n_read += batch.height
            X, protected, positions = scorer.features_of(rows.protect_batch(batch), positions)
            result = score_rows(scorer.model, X, scorer.target)
            predictions.append(
                prediction_rows(scorer.model_id, result, positions).select(
                    pl.col(name).cast(dtype) for name, dtype in PREDICTION_SCHEMA.items()
                )
            )
            if scored is not None:
                keys = join_keys(protected, positions, scorer.id_column)
                scored.append(scored_file(result, keys))
            counts = add_counts(counts, bin_counts(scorer.profile, X, result.drift_values))
            n_scored += X.height
            log.info("score: %d of %d valid rows read and scored", n_read, rows.validated.n_valid)
        if counts is None or n_read != rows.validated.n_valid:
            raise RuntimeError(f"{n_read} rows read of {rows.validated.n_valid} valid rows")
        predictions.close()
        if scored is not None:
            scored.close()
    except BaseException:
        predictions.abort()
        if scored is not None:
            scored.abort()
        raise
    return Streamed(predictions_path, n_scored, psi_from_counts(scorer.profile, counts))


score_batches = step(name="score_batches")(stream_scores)


class _Appender:
    """Frames appended to one Parquet or CSV file (by the name, ignoring a '.partial' suffix),
    one batch at a time; every batch must have the first batch's columns and types."""

    def __init__(self, path: Path) -> None:
        self.path = path
        name = path.name.removesuffix(".partial").lower()
        self.csv = name.endswith(".csv")
        self._parquet: Any = None  # pyarrow.parquet.ParquetWriter, from the first batch
        self._handle: BinaryIO | None = None
        self._schema: pl.Schema | None = None

    def append(self, frame: pl.DataFrame) -> None:
        if self._schema is None:
            self._schema = frame.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif frame.schema != self._schema:
            raise RuntimeError(
                f"a batch for {self.path.name} has columns {dict(frame.schema)}, not "
                f"{dict(self._schema)}"
            )
        if self.csv:
            first = self._handle is None
            if self._handle is None:
                self._handle = self.path.open("wb")
            frame.write_csv(self._handle, include_header=first)
            return
        table = frame.to_arrow()
        if self._parquet is None:
            import pyarrow.parquet as pq  # here: start-up time of every command

            # zstd, as Polars' write_parquet of the in-memory path
            self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()

    def abort(self) -> None:
        try:
            self.close()
        finally:
            self.path.unlink(missing_ok=True)


def log_drift(drift: pl.DataFrame) -> None:
    shifted = drift.filter(pl.col("status") != "stable")
    get_run_logger().info(
        "drift: %d of %d features not stable%s",
        shifted.height,
        drift.height,
        "" if shifted.is_empty() else f" ({', '.join(shifted['feature'])})",
    )

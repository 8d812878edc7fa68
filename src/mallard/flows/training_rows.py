"""The rows a train run works on: read, validated and turned into features, the holdout split,
the [train] max_rows sample tuning and selection fit on, and the deployable refit's rows.

In memory (the polars engine, a `[source] sql`, and clustering): every valid row becomes a feature
row. On disk ([ingest] engine = "duckdb", or "auto" above duckdb_above_mb): DuckDB validates the
files into Parquet and runs `[features] sql` there under its memory limit, so a window sees every
row; the target and split columns of every row are read to draw the split, and only the rows the
run uses are gathered into memory: the training sample, every validation and test row
(evaluation, importance, fairness) and the refit's sample. The split and samples are drawn by the
same functions from the same values, so every fitted model and every metric equal the in-memory
path's on the same rows; only the drift reference profile covers the training sample rather than
every train row (registration profiles the train rows it is given), and a text column under
`pii = "generalise"` without `[features] sql` is judged as dates or numbers over the gathered rows.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from prefect import get_run_logger

from mallard.core.spec import FeaturesSection, Spec
from mallard.flows import steps
from mallard.flows.inputs import checked_input
from mallard.flows.out_of_core import OnDisk, ingest_engine, validated_on_disk
from mallard.flows.run_record import RecordedRun
from mallard.tasks.features import (
    Features,
    no_split_column,
    no_target_column,
    target_values,
    untraceable_rows,
)
from mallard.tasks.plan import not_features, split_column
from mallard.tasks.sample import labelled_sample, training_sample
from mallard.tasks.split import Split
from mallard.tasks.validate import Validated
from mallard.warehouse import features_sql, out_of_core

PROTECT_BATCH_ROWS = 200_000  # PII protected this many rows at a time before features.sql


@dataclass(frozen=True)
class TrainingRows:
    checked: Validated  # quarantine and counts (on disk its valid frame is empty)
    features: Features
    row_index: pl.Series  # the input position of each feature row
    split: Split | None  # positions into `features`; None for clustering (every row is used)
    fitting: Split | None  # `split` with train and validation cut to the [train] max_rows sample
    final_rows: np.ndarray | None  # what the deployable refit fits (None: no finalize)
    labelled_rows: int = 0  # train + validation + test rows of the whole input, before samples


def training_rows(spec: Spec, run: RecordedRun) -> TrainingRows:
    """The spec's source, validated, as features with its split and samples (see the module)."""
    if ingest_engine(spec, None) == "duckdb" and spec.pipeline.task != "clustering":
        with tempfile.TemporaryDirectory(
            prefix="mallard-train-", dir=os.environ.get(out_of_core.TEMP_DIR_ENV)
        ) as folder:
            return _on_disk(spec, run, Path(folder))
    rows = checked_input(spec, run)
    features = _features(spec, rows.valid, spec.features)
    if features.source_rows is not None:  # features.sql dropped rows and kept the row key
        row_index = rows.valid_rows.gather(features.source_rows)
    elif features.X.height == rows.valid.height:
        row_index = rows.valid_rows
    else:  # features.sql changed the rows and dropped the key: nothing pairs them with input rows
        raise untraceable_rows(features.X.height, rows.valid.height)
    if spec.pipeline.task == "clustering":
        return TrainingRows(rows, features, row_index, None, None, None)
    split = _split(spec, features.X.height, features.y, features.split_key)
    fitting, final_rows = _samples(spec, run, split)
    return TrainingRows(
        rows, features, row_index, split, fitting, final_rows, _labelled_rows(split)
    )


def _on_disk(spec: Spec, run: RecordedRun, folder: Path) -> TrainingRows:
    rows = validated_on_disk(spec, run, spec.source_files(), folder, target_optional=False)
    path, protected = featured_rows(spec, rows, folder)
    present = pl.scan_parquet(path).collect_schema().names()
    y, key, n_rows = _split_values(spec, path, present)
    keyed = "row_index" in present
    if not keyed and n_rows != rows.validated.n_valid:
        raise untraceable_rows(n_rows, rows.validated.n_valid)
    split = _split(spec, n_rows, y, key)
    fitting, final_rows = _samples(spec, run, split)
    parts = [fitting.train, split.validation, split.test]
    needed = np.unique(np.concatenate(parts if final_rows is None else [*parts, final_rows]))
    frame = gathered_rows(path, needed)
    if not protected:
        frame = rows.protect_batch(frame)
    if keyed:
        row_index, frame = frame["row_index"].cast(pl.Int64), frame.drop("row_index")
    else:  # features.sql kept every row, in order, and dropped the key
        valid = pl.read_parquet(rows.validated.valid_path, columns=["row_index"])["row_index"]
        row_index = valid.cast(pl.Int64).gather(needed)
    features = _features(spec, frame, spec.features.model_copy(update={"sql": ""}))
    get_run_logger().info(
        "gather: %d of %d feature rows in memory (train sample, validation, test, refit)",
        len(needed),
        n_rows,
    )
    compact = Positions(needed)
    checked = Validated(pl.DataFrame(), rows.quarantine, rows.validated.n_rows, row_index[:0])
    return TrainingRows(
        checked,
        features,
        row_index,
        compact.split(Split(fitting.train, split.validation, split.test)),
        compact.split(fitting),
        None if final_rows is None else compact.of(final_rows),
        _labelled_rows(split),
    )


def _labelled_rows(split: Split) -> int:
    return len(split.train) + len(split.validation) + len(split.test)


@dataclass(frozen=True)
class Positions:
    """Maps positions among all feature rows to positions among the gathered ones."""

    gathered: np.ndarray  # sorted, unique

    def of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.gathered, rows)

    def split(self, split: Split) -> Split:
        return Split(self.of(split.train), self.of(split.validation), self.of(split.test))


@steps.step(name="featured_rows")
def featured_rows(spec: Spec, rows: OnDisk, folder: Path) -> tuple[str, bool]:
    """The Parquet rows features are made of, and whether their PII is already protected:
    the valid rows as they are, or `[features] sql`'s result over them (PII protected first,
    as in memory) written by DuckDB under the memory limit."""
    sql = spec.features.sql
    if not sql.strip():
        return str(rows.validated.valid_path), False
    source: Path | str = rows.validated.valid_path
    if any(policy != "drop" for policy in rows.policies.values()):
        source = rows.protected_files(folder / "protected", PROTECT_BATCH_ROWS)
    out = folder / "features.parquet"
    limit = rows.validated.memory_limit
    n = features_sql.features_to_parquet(source, sql, out, limit=limit)
    get_run_logger().info("features.sql (duckdb, memory_limit %s): %d rows", limit, n)
    return str(out), True


@steps.step(name="gathered_rows")
def gathered_rows(path: str, positions: np.ndarray) -> pl.DataFrame:
    """The rows at `positions` (sorted) of the Parquet rows at `path`, read in a stream so only
    they are held."""
    wanted = pl.Series(positions, dtype=pl.UInt32)
    return (
        pl.scan_parquet(path)
        .with_row_index("__position")
        .filter(pl.col("__position").is_in(wanted.implode()))
        .drop("__position")
        .collect(engine="streaming")
    )


def _split_values(
    spec: Spec, path: str, present: list[str]
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The target of every row (a stratified split needs it) and the split column, read alone
    from the Parquet rows at `path`, whose columns are `present`."""
    target, key = spec.target, split_column(spec)
    assert target is not None  # supervised
    if target not in present:
        raise no_target_column(target)
    if key is not None and key not in present:
        raise no_split_column(key)
    frame = pl.read_parquet(path, columns=[target] if key is None else [target, key])
    y = target_values(frame[target], spec.pipeline.task)
    return y, None if key is None else frame[key].to_numpy(), frame.height


def _features(spec: Spec, frame: pl.DataFrame, section: FeaturesSection) -> Features:
    return steps.prepare_features(
        frame,
        section,
        spec.target,
        spec.pipeline.task,
        split_column(spec),
        exclude=not_features(spec),
        audit_columns=tuple(spec.fairness.sensitive),
    )


def _split(spec: Spec, n_rows: int, y: np.ndarray | None, key: np.ndarray | None) -> Split:
    split = steps.make_split(n_rows, spec.split, spec.pipeline.seed, spec.cv.folds, y, key)
    get_run_logger().info(
        "split (%s): %d train / %d validation / %d test rows (seed %d)",
        spec.split.strategy,
        len(split.train),
        len(split.validation),
        len(split.test),
        spec.pipeline.seed,
    )
    return split


def _samples(spec: Spec, run: RecordedRun, split: Split) -> tuple[Split, np.ndarray | None]:
    """The [train] max_rows sample of train and validation rows tuning and selection fit on, and
    the labelled rows (a seeded sample beyond max_rows) the deployable refit fits on."""
    max_rows, seed = spec.train.max_rows, spec.pipeline.seed
    sample = training_sample(split, max_rows, seed)
    run.learned(train_rows=sample.train_rows, train_max_rows=max_rows)
    get_run_logger().info("train sample: %s", sample.describe(max_rows))
    if not spec.evaluate.finalize:
        return sample.split, None
    labelled = np.concatenate([split.train, split.validation, split.test])
    return sample.split, labelled_sample(labelled, max_rows, seed)

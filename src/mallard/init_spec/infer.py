"""Draft a pipeline spec from a data file (`mallard init`): infer a schema and a task from a
sample, then render a commented TOML spec that runs as is.

Inference rules, on the sample (the first `SAMPLE_ROWS` rows):

- per column (dtype, nullable, ge, isin, role): see columns.py.
- task (unless given): no target -> clustering; a text or bool target, or whole numbers with at
  most `MAX_CLASS_INTEGERS` distinct values -> classification; other numbers -> regression.
- classification: stratified split; binary with a minority class under `IMBALANCED_SHARE` ->
  primary metric pr_auc, decision threshold tuned for F1, that class as positive_class; else
  f1_macro. Regression: random split, rmse. Clustering: no split or CV, silhouette.
- cv.folds and the candidates' spaces and search strategies: sized to the row count
  (plan.py: 5 folds below 10,000 rows, 3 above; successive halving from 10,000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mallard.core.errors import InputError
from mallard.core.spec import Task
from mallard.init_spec.columns import (
    MAX_CATEGORIES,
    Column,
    Typed,
    column_entry,
    non_negative,
    quarantine_note,
    shown,
    type_of,
)
from mallard.init_spec.plan import search_draft

SAMPLE_ROWS = 50_000
SCHEMA_INFER_ROWS = 10_000
MAX_CLASS_INTEGERS = 10  # a whole-number target with at most this many values is a class label
IMBALANCED_SHARE = 0.2  # binary target whose rarer class is below this share: imbalanced
AGGLOMERATIVE_MAX_ROWS = 10_000  # agglomerative clustering needs memory quadratic in the rows
DEFAULT_MAX_INVALID = 0.05
RARE_CLASS_ROWS = 10
TASKS: tuple[Task, ...] = ("regression", "classification", "clustering")
TEXT_SUFFIXES = {".csv": ",", ".txt": ",", ".tsv": "\t"}


@dataclass(frozen=True)
class Draft:
    """Everything inferred from the data: what `render` writes and the CLI prints."""

    data: Path
    rows: int  # rows in the whole file
    sampled: int  # rows the inference looked at
    columns: tuple[Column, ...]
    task: Task
    target: str | None
    task_reason: str
    primary_metric: str
    folds: int
    positive_class: str | None = None  # set for an imbalanced binary target
    max_invalid_fraction: float = DEFAULT_MAX_INVALID
    notes: tuple[str, ...] = field(default_factory=tuple)  # warnings worth a look

    @property
    def dropped(self) -> list[Column]:
        return [c for c in self.columns if c.role == "drop"]


# --- reading --------------------------------------------------------------------------------


def read_sample(path: Path, rows: int = SAMPLE_ROWS) -> tuple[pl.DataFrame, int]:
    """The first `rows` rows of a CSV/TSV/Parquet file, and the file's total row count."""
    if not path.is_file():
        raise InputError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path, n_rows=rows, glob=False)
            total = int(pl.scan_parquet(path, glob=False).select(pl.len()).collect().item())
        elif suffix in TEXT_SUFFIXES:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes): expected a header and data rows")
            frame = _read_text(path, TEXT_SUFFIXES[suffix], rows)
            total = int(
                pl.scan_csv(path, separator=TEXT_SUFFIXES[suffix], infer_schema=False, glob=False)
                .select(pl.len())
                .collect()
                .item()
            )
        else:
            raise InputError(
                f"cannot read {path}: only .csv, .tsv and .parquet files are supported"
            )
    except pl.exceptions.NoDataError:
        raise InputError(f"{path} is empty: expected a header and data rows") from None
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path}: {first}") from None
    if frame.height == 0:
        raise InputError(f"{path} has a header but no data rows")
    return frame, max(total, frame.height)


def _read_text(path: Path, separator: str, rows: int) -> pl.DataFrame:
    try:
        return pl.read_csv(
            path,
            separator=separator,
            n_rows=rows,
            infer_schema_length=SCHEMA_INFER_ROWS,
            glob=False,  # the path is one file, whatever characters its name has
        )
    except pl.exceptions.ComputeError:
        # A value past the inference window does not fit the guessed type: read every column
        # as text; the inference below parses numbers, dates and booleans itself.
        return pl.read_csv(path, separator=separator, n_rows=rows, infer_schema=False, glob=False)


# --- inference ------------------------------------------------------------------------------


def infer(
    frame: pl.DataFrame,
    data: Path,
    target: str | None = None,
    task: str | None = None,
    total_rows: int | None = None,
) -> Draft:
    """Infer the schema, the column roles and the task from a sample `frame` of `data`."""
    if task is not None and task not in TASKS:
        raise InputError(f"--task '{task}' is not a task; use one of {', '.join(TASKS)}")
    if target is not None and target not in frame.columns:
        raise InputError(
            f"target column '{target}' is not in {data}; "
            f"its columns are: {', '.join(frame.columns)}"
        )
    if task == "clustering" and target is not None:
        raise InputError("clustering has no target: leave out --target, or choose another --task")
    if task in ("regression", "classification") and target is None:
        raise InputError(f"a {task} pipeline needs --target COLUMN")
    rows = total_rows or frame.height
    notes: list[str] = []
    if frame.height < 50:
        notes.append(
            f"only {frame.height} rows: too few for trustworthy validation and test scores"
        )

    typed = {name: type_of(frame[name]) for name in frame.columns}
    columns = {
        name: column_entry(name, typed[name], frame[name].null_count(), frame.height)
        for name in frame.columns
        if name != target
    }
    reason = "given: --task clustering" if task else "guessed: no --target, so clustering"
    positive: str | None = None
    if target is not None:
        resolved, reason, target_column, positive = _target(
            target, typed[target], frame[target], task, notes
        )
    else:
        resolved = "clustering"
    folds = search_draft(task or "regression", rows).folds
    if target is not None:
        columns[target] = target_column
        if resolved == "classification":
            _check_classes(typed[target].values, folds, notes)
    ordered = tuple(columns[name] for name in frame.columns)
    if not any(c.role == "feature" for c in ordered):
        raise InputError(
            f"{data} has no usable feature column: every column is the target or dropped "
            f"({'; '.join(f'{c.name}: {c.note}' for c in ordered if c.role == 'drop')})"
        )

    rare = tuple(frame[c.name].is_in(list(c.rare)).fill_null(False) for c in ordered if c.rare)
    max_invalid = _invalid_budget(frame, typed, target, notes, rare)
    if rows > frame.height:
        notes.append(
            f"checks inferred from the first {frame.height:,} of {rows:,} rows; "
            "later rows outside them will be quarantined"
        )
    metric = {"regression": "rmse", "classification": "f1_macro", "clustering": "silhouette"}[
        resolved
    ]
    if positive is not None:
        metric = "pr_auc"
    return Draft(
        data=data,
        rows=rows,
        sampled=frame.height,
        columns=ordered,
        task=resolved,
        target=target,
        task_reason=reason,
        primary_metric=metric,
        folds=folds,
        positive_class=positive,
        max_invalid_fraction=max_invalid,
        notes=tuple(notes),
    )


def _target(
    name: str, typed: Typed, series: pl.Series, task: str | None, notes: list[str]
) -> tuple[Task, str, Column, str | None]:
    """The task, why, the target's column entry, and the positive class of an imbalanced
    binary target."""
    if typed.unusable and typed.values.len() == 0:
        raise InputError(f"target column '{name}' has no values in the sample")
    if typed.dtype is None or typed.unusable:
        raise InputError(f"target column '{name}' cannot be a target: {typed.unusable}")
    if typed.dtype in ("date", "datetime"):
        raise InputError(
            f"target column '{name}' holds {typed.dtype}s; mallard predicts numbers "
            "(regression) or classes (classification)"
        )
    values = typed.values
    distinct = values.n_unique()
    if distinct < 2:
        raise InputError(
            f"target column '{name}' has a single value ({shown(values[0])}) in the data: "
            "there is nothing to learn; choose another --target, or leave it out for clustering"
        )
    numeric = typed.dtype in ("int", "float")
    whole = numeric and bool((values.drop_nans() == values.drop_nans().round(0)).all())
    if task == "regression" and not numeric:
        raise InputError(
            f"--task regression needs a numeric target; '{name}' is {typed.dtype} "
            f"({distinct} distinct values): use --task classification"
        )
    resolved: Task
    if task is not None:
        resolved = "classification" if task == "classification" else "regression"
        reason = f"given: --task {task}"
    elif not numeric:
        resolved = "classification"
        reason = f"guessed: target '{name}' is {typed.dtype} with {distinct} classes"
    elif whole and distinct <= MAX_CLASS_INTEGERS:
        resolved = "classification"
        reason = (
            f"guessed: target '{name}' has {distinct} distinct whole numbers "
            f"(<= {MAX_CLASS_INTEGERS})"
        )
    else:
        resolved = "regression"
        reason = f"guessed: target '{name}' is numeric with {distinct} distinct values"

    missing = series.null_count()
    if missing:
        notes.append(f"{missing} rows have no '{name}': they will be quarantined")
    quarantined = quarantine_note(typed)
    if resolved == "regression":
        ge = 0.0 if non_negative(values) else None
        column = Column(name, typed.dtype, False, ge, None, "target", quarantined)
        return resolved, reason, column, None

    dtype = typed.dtype
    if dtype == "float" and whole:
        dtype, values = "int", values.cast(pl.Int64)  # 0.0 / 1.0 labels are classes 0 / 1
    classes = sorted(values.unique().to_list())
    isin = tuple(classes) if dtype in ("int", "str") and distinct <= MAX_CATEGORIES else None
    column = Column(name, dtype, False, None, isin, "target", quarantined)
    positive = None
    if distinct == 2:
        counts = values.value_counts(sort=True)
        minority, share = counts[values.name][-1], counts["count"][-1] / values.len()
        if share < IMBALANCED_SHARE:
            positive = str(minority)
            reason += f"; imbalanced: class {positive} is {share:.1%} of the rows"
    if distinct > MAX_CATEGORIES:
        notes.append(f"target '{name}' has {distinct} classes: is it really a class label?")
    return resolved, reason, column, positive


def _check_classes(values: pl.Series, folds: int, notes: list[str]) -> None:
    counts = values.value_counts(sort=True)
    rarest, n = counts[values.name][-1], counts["count"][-1]
    if n < RARE_CLASS_ROWS:
        notes.append(
            f"class {shown(rarest)} has only {n} rows: the stratified split and {folds}-fold CV "
            "need several of each class (collect more, or merge rare classes)"
        )


def _invalid_budget(
    frame: pl.DataFrame,
    typed: dict[str, Typed],
    target: str | None,
    notes: list[str],
    rare: tuple[pl.Series, ...] = (),
) -> float:
    """max_invalid_fraction: the default, unless the sample already has more rows that will be
    quarantined (no target, values that do not cast, rare values left out of isin), plus a
    margin."""
    failing = pl.Series([False] * frame.height)
    for mask in rare:
        failing = failing | mask
    if target is not None:
        failing = failing | frame[target].is_null()
    for column in typed.values():
        if column.bad is not None and column.dtype is not None:
            failing = failing | column.bad
    share = int(failing.sum()) / frame.height
    if share + 0.02 <= DEFAULT_MAX_INVALID:
        return DEFAULT_MAX_INVALID
    budget = min(1.0, math.ceil(round((share + 0.02) * 100, 6)) / 100)
    notes.append(
        f"{share:.1%} of the sample's rows will be quarantined; "
        f"max_invalid_fraction raised to {budget:g} so the run can go ahead"
    )
    return budget

"""Draft a pipeline spec from a data file (`mallard init`): infer a schema and a task from a
sample, then render a commented TOML spec that runs as is.

Inference rules, per column of the sample (the first `SAMPLE_ROWS` rows):

- dtype: what the values parse as, the way the validator will cast them. Polars' own types
  (bool, int, float, Parquet date/datetime) are kept. A text column becomes
  bool (only "true"/"false"), date (ISO ``YYYY-MM-DD``), datetime (ISO date and time without a UTC
  offset) or int/float when at least `MIN_PARSED_SHARE` of its values parse that way; the rest of
  its values will be quarantine rows (said in a comment). Otherwise it stays "str".
- nullable: false when the sample has no missing value in the column, else true.
- ge = 0 for int/float columns whose sample minimum is >= 0: zero, not the observed minimum, so new
  data a little outside the sample's range is not quarantined. No other bounds are set.
- isin: text columns with at most `MAX_CATEGORIES` distinct values, and a classification target's
  classes. A value seen in fewer than `ISIN_MIN_SHARE` of the sample's rows (and at least
  `ISIN_MIN_ROWS`) is left out, so a typo or a deliberately bad value ("maybe" among yes/no) is
  quarantined rather than made allowed; unless such rare values together hold more than
  `ISIN_MAX_RARE_SHARE` of the rows (a long tail, not errors), then every value is allowed.
- role: the target; else dropped (listed in [features] drop, with the reason in a comment) when
  ID-like (int/text named like an ID with more than `MAX_CATEGORIES` distinct values, text that is
  different in every row, or consecutive unique integers: a row number), empty, a single value,
  a type the pipeline cannot use, or timestamps with a UTC offset; else a feature. Dates and
  datetimes stay features: the pipeline turns them into days since 1970-01-01.
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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from mallard.core.errors import InputError
from mallard.core.spec import ColumnDtype, Task
from mallard.init_spec.plan import search_draft

SAMPLE_ROWS = 50_000
SCHEMA_INFER_ROWS = 10_000
MAX_CATEGORIES = 20  # text columns with at most this many distinct values get an isin check
MAX_CLASS_INTEGERS = 10  # a whole-number target with at most this many values is a class label
MIN_PARSED_SHARE = 0.95  # share of a text column's values that must parse as a number / date
IMBALANCED_SHARE = 0.2  # binary target whose rarer class is below this share: imbalanced
ISIN_MIN_SHARE = 0.005  # a text value in fewer rows than this share is not made allowed
ISIN_MIN_ROWS = 2  # ... nor one seen fewer times than this
ISIN_MAX_RARE_SHARE = 0.02  # rare values holding more of the rows than this: a long tail, kept
AGGLOMERATIVE_MAX_ROWS = 10_000  # agglomerative clustering needs memory quadratic in the rows
DEFAULT_MAX_INVALID = 0.05
RARE_CLASS_ROWS = 10
TASKS: tuple[Task, ...] = ("regression", "classification", "clustering")
TEXT_SUFFIXES = {".csv": ",", ".txt": ",", ".tsv": "\t"}

Role = Literal["target", "feature", "drop"]

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"
_ISO_DATETIME_OFFSET = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?\s*(Z|[+-]\d{2}:?\d{2})$"
)
_ID_NAME = re.compile(r"(^|[_\-\s.])(id|uuid|guid)$")
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")


@dataclass(frozen=True)
class Column:
    """One column as the spec will declare it."""

    name: str
    dtype: ColumnDtype | None  # None: not declared (a type the validator cannot check)
    nullable: bool = True
    ge: float | None = None
    isin: tuple[str | int | float | bool, ...] | None = None
    role: Role = "feature"
    note: str = ""  # why it is dropped, how it is used, what will be quarantined
    rare: tuple[str, ...] = ()  # text values seen too rarely to be allowed: quarantined

    def checks(self) -> str:
        parts = []
        if self.ge is not None:
            parts.append(f"ge {self.ge:g}")
        if self.isin is not None:
            shown = ", ".join(str(v) for v in self.isin[:6])
            parts.append(f"isin {shown}" + (", …" if len(self.isin) > 6 else ""))
        return "; ".join(parts)


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


@dataclass(frozen=True)
class _Typed:
    dtype: ColumnDtype | None
    values: pl.Series  # the non-null values, cast to the dtype (text stays raw)
    bad: pl.Series | None = None  # True where a present value will not cast: quarantined rows
    unusable: str = ""  # a reason to keep the column out of the features
    example: str = ""  # a value that will not cast, for the comment


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

    typed = {name: _type_of(frame[name]) for name in frame.columns}
    columns = {
        name: _column(name, typed[name], frame[name].null_count(), frame.height)
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


def _type_of(series: pl.Series) -> _Typed:
    dtype = series.dtype
    values = series.drop_nulls()
    if dtype == pl.Null or values.len() == 0:
        return _Typed("str", values.cast(pl.String), unusable="empty: no value in the sample")
    if dtype == pl.Boolean:
        return _Typed("bool", values)
    if dtype.is_integer():
        return _Typed("int", values.cast(pl.Int64))
    if dtype.is_float() or dtype.is_decimal():
        return _Typed("float", values.cast(pl.Float64))
    if dtype == pl.Date:
        return _Typed("date", values)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return _Typed(None, values, unusable=f"{dtype}: time zones are not supported")
        return _Typed("datetime", values)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return _type_of_text(series.cast(pl.String))
    return _Typed(None, values, unusable=f"{dtype} values cannot be a feature")


def _type_of_text(series: pl.Series) -> _Typed:
    """The dtype the validator can cast most of the values to (it strips whitespace first)."""
    text = series.str.strip_chars()
    present = text.is_not_null()
    n_present = int(present.sum())
    lowered = text.str.to_lowercase()

    def accept(parsed: pl.Series) -> bool:
        return int((present & parsed.fill_null(False)).sum()) >= MIN_PARSED_SHARE * n_present

    def typed(dtype: ColumnDtype, values: pl.Series, parsed: pl.Series) -> _Typed:
        bad = present & ~parsed.fill_null(False)
        failing = series.filter(bad)
        return _Typed(dtype, values, bad, example=_shown(failing[0]) if failing.len() else "")

    is_bool = lowered.is_in(["true", "false"])
    if accept(is_bool):
        flags = lowered.filter(is_bool.fill_null(False)) == "true"
        return typed("bool", flags, is_bool)
    temporal: tuple[tuple[ColumnDtype, str], ...] = (
        ("date", _ISO_DATE),
        ("datetime", _ISO_DATETIME),
    )
    for dtype, pattern in temporal:
        matches = text.str.contains(pattern)
        if not accept(matches):
            continue
        try:  # the validator's own cast: what does not parse here is quarantined there
            cast = (
                text.str.to_date(strict=False)
                if dtype == "date"
                else text.str.to_datetime(strict=False, time_zone=None)
            )
        except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
            continue
        parsed = matches & cast.is_not_null()
        if accept(parsed):
            return typed(dtype, cast.drop_nulls(), parsed)
    if accept(text.str.contains(_ISO_DATETIME_OFFSET)):
        return _Typed(
            "str",
            series.drop_nulls(),
            unusable="timestamps with a UTC offset, which the validator cannot cast yet",
        )
    numbers = text.cast(pl.Float64, strict=False)
    is_number = numbers.is_not_null()
    if n_present and accept(is_number):
        parsed = text.filter(is_number)
        whole = not parsed.str.contains(r"[.eE]").any() and bool(
            (numbers.drop_nulls().drop_nans() == numbers.drop_nulls().drop_nans().round(0)).all()
        )
        values = numbers.drop_nulls()
        if whole and values.is_finite().all():
            return typed("int", values.cast(pl.Int64), is_number)
        return typed("float", values, is_number)
    return _Typed("str", series.drop_nulls())


def _column(name: str, typed: _Typed, nulls: int, height: int) -> Column:
    nullable = nulls > 0
    quarantined = _quarantine_note(typed)
    if typed.unusable:
        return Column(name, typed.dtype, role="drop", note=typed.unusable)
    id_reason = _id_like(name, typed, nulls, height)
    if id_reason:
        return Column(
            name, typed.dtype, nullable, role="drop", note=_joined(id_reason, quarantined)
        )
    if typed.values.n_unique() == 1:
        value = _shown(typed.values[0])
        return Column(
            name, typed.dtype, role="drop", note=f"a single value ({value}) in the sample"
        )
    ge, isin, note = None, None, ""
    rare: tuple[str, ...] = ()
    if typed.dtype in ("int", "float") and _non_negative(typed.values):
        ge = 0.0
    elif typed.dtype == "str":
        distinct = typed.values.n_unique()
        if distinct <= MAX_CATEGORIES:
            isin, rare = _frequent_values(typed.values)
            if rare:
                shown = ", ".join(_shown(v) for v in rare)
                note = f"rare value(s) {shown} left out of isin: those rows are quarantined"
        else:
            note = f"text, {distinct} distinct values (one-hot; values in < 5 rows grouped)"
    elif typed.dtype in ("date", "datetime"):
        note = f"{typed.dtype}: a feature as days since 1970-01-01"
    return Column(
        name, typed.dtype, nullable, ge, isin, "feature", _joined(note, quarantined), rare
    )


def _frequent_values(values: pl.Series) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The values an isin check allows, and the rare ones it leaves out (see the module doc)."""
    counts = values.value_counts()
    floor = max(ISIN_MIN_ROWS, math.ceil(ISIN_MIN_SHARE * values.len()))
    is_rare = counts["count"] < floor
    rare_rows = int(counts.filter(is_rare)["count"].sum())
    frequent = counts.filter(~is_rare)[values.name]
    if rare_rows > ISIN_MAX_RARE_SHARE * values.len() or frequent.len() < 2:
        return tuple(sorted(values.unique().to_list())), ()
    return tuple(sorted(frequent.to_list())), tuple(sorted(counts.filter(is_rare)[values.name]))


def _id_like(name: str, typed: _Typed, nulls: int, height: int) -> str:
    if typed.dtype not in ("int", "str"):
        return ""
    distinct = typed.values.n_unique()
    if _looks_like_id(name) and distinct > MAX_CATEGORIES:
        return f"ID-like (named like an ID or index, {distinct} distinct values)"
    if nulls or distinct != height or height <= MAX_CATEGORIES:
        return ""
    if typed.dtype == "str":
        return "ID-like (a different text in every row)"
    steps = typed.values.diff().drop_nulls()
    if steps.len() and bool((steps == 1).all()):
        return "ID-like (integers counting up by one: a row number)"
    return ""


def _looks_like_id(name: str) -> bool:
    lowered = name.strip().lower()
    return bool(
        _ID_NAME.search(lowered)
        or _CAMEL_ID.search(name.strip())
        or lowered in {"index", "row", "rownum", "row_number"}
        or lowered.startswith("unnamed:")
    )


def _target(
    name: str, typed: _Typed, series: pl.Series, task: str | None, notes: list[str]
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
            f"target column '{name}' has a single value ({_shown(values[0])}) in the data: "
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
    quarantined = _quarantine_note(typed)
    if resolved == "regression":
        ge = 0.0 if _non_negative(values) else None
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
            f"class {_shown(rarest)} has only {n} rows: the stratified split and {folds}-fold CV "
            "need several of each class (collect more, or merge rare classes)"
        )


def _invalid_budget(
    frame: pl.DataFrame,
    typed: dict[str, _Typed],
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


def _quarantine_note(typed: _Typed) -> str:
    if typed.bad is None or not typed.bad.any():
        return ""
    n = int(typed.bad.sum())
    return f"{n} value(s) such as {typed.example} are not {typed.dtype}: rows quarantined"


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _non_negative(values: pl.Series) -> bool:
    finite = values.drop_nans() if values.dtype.is_float() else values
    low = finite.min()
    return isinstance(low, int | float) and low >= 0


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- rendering ------------------------------------------------------------------------------

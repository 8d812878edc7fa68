"""Schema validation: cast declared columns, run the pandera checks, quarantine failing rows.

Casting happens here rather than with pandera's coerce=True because one bad value would fail the
whole column; a value that does not cast becomes a quarantine row of its own.

NaN and ±inf (also a number too large for a float, e.g. "1e400", which casts to inf) in any
float column, declared or passing through, fail the check `finite`: no estimator accepts them,
and pandera's Polars backend would let NaN through a nullable column as if it were missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from mallard.core.errors import DataValidationError, InputError

QUARANTINE_SCHEMA = {
    "row_index": pl.Int64,
    "column_name": pl.String,
    "check_name": pl.String,
    "failure_value": pl.String,
}
FINITE_CHECK = "finite"  # NaN, inf and -inf fail it
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    quarantine: pl.DataFrame  # one row per failed check: row_index, column_name, check_name, value
    n_rows: int
    valid_rows: pl.Series  # the input position of each valid row, so results can point back

    @property
    def n_invalid(self) -> int:
        return self.quarantine["row_index"].n_unique()

    @property
    def invalid_fraction(self) -> float:
        return self.n_invalid / self.n_rows if self.n_rows else 0.0


def quarantine_invalid(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> Validated:
    """Split `frame` into rows that pass `schema` and quarantine records for those that do not."""
    _require_columns(frame, schema)
    cast, cast_failures = _cast_declared_columns(frame, schema)
    check_failures = _check_failures(cast, schema)
    quarantine = pl.concat([cast_failures, _non_finite(cast, frame), check_failures]).sort(
        "row_index", "column_name"
    )
    bad_rows = quarantine["row_index"].unique()
    indexed = cast.with_row_index("_row").filter(~pl.col("_row").is_in(bad_rows.implode()))
    return Validated(
        valid=indexed.drop("_row"),
        quarantine=quarantine,
        n_rows=frame.height,
        valid_rows=indexed["_row"].cast(pl.Int64),
    )


def enforce_invalid_limit(validated: Validated, max_invalid_fraction: float) -> None:
    if validated.invalid_fraction > max_invalid_fraction:
        raise DataValidationError(
            f"{validated.n_invalid} of {validated.n_rows} rows "
            f"({validated.invalid_fraction:.1%}) failed the schema, more than "
            f"max_invalid_fraction = {max_invalid_fraction:.1%}; "
            "the failing rows are in ml.quarantine"
        )


def _require_columns(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> None:
    missing = [
        name for name, column in schema.columns.items() if column.required and name not in frame
    ]
    if missing:
        raise InputError(
            f"column(s) {', '.join(missing)} named in the schema are missing from the data; "
            f"the data has: {', '.join(frame.columns)}"
        )


def _cast_declared_columns(
    frame: pl.DataFrame, schema: pa.DataFrameSchema
) -> tuple[pl.DataFrame, pl.DataFrame]:
    casts, failures = [], []
    for name, column in schema.columns.items():
        if column.dtype is None or name not in frame:
            continue
        target = column.dtype.type
        if frame.schema[name] == target:
            continue
        cast = _cast(pl.col(name), frame.schema[name], target).alias(name)
        failed = pl.col(name).is_not_null() & cast.is_null()
        failures.append(
            frame.with_row_index("row_index")
            .filter(failed)
            .select(
                pl.col("row_index").cast(pl.Int64),
                pl.lit(name).alias("column_name"),
                pl.lit(f"dtype('{target}')").alias("check_name"),
                pl.col(name).cast(pl.String).alias("failure_value"),
            )
        )
        casts.append(cast)
    cast_frame = frame.with_columns(casts) if casts else frame
    return cast_frame, pl.concat([_empty_quarantine(), *failures])


def _cast(column: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    if source == pl.String:
        text = column.str.strip_chars()
        if target == pl.Boolean:
            lowered = text.str.to_lowercase()
            return (
                pl.when(lowered.is_in(_TRUE))
                .then(True)
                .when(lowered.is_in(_FALSE))
                .then(False)
                .otherwise(None)
            )
        if target == pl.Date:
            return text.str.to_date(strict=False)
        if isinstance(target, pl.Datetime) or target == pl.Datetime:
            return text.str.to_datetime(strict=False)
        if target.is_integer():
            return _whole_numbers(text.cast(pl.Float64, strict=False), target)
        return text.cast(target, strict=False)
    if target.is_integer() and source.is_float():
        return _whole_numbers(column, target)  # e.g. a Parquet float column declared "int"
    return column.cast(target, strict=False)


def _whole_numbers(as_float: pl.Expr, target: pl.DataType) -> pl.Expr:
    # "3.0" is a fine integer; "3.5" is not, and must not be truncated silently.
    return pl.when(as_float == as_float.round(0)).then(as_float.cast(target, strict=False))


def _non_finite(cast: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """One quarantine row per NaN or ±inf cell of a float column of `cast`, showing the value
    as it came in `raw` (e.g. "1e400", not the inf it cast to)."""
    floats = [name for name, kind in cast.schema.items() if kind.is_float()]
    failures = [
        cast.select(name, raw[name].cast(pl.String).alias("_raw"))
        .with_row_index("row_index")
        .filter(pl.col(name).is_nan() | pl.col(name).is_infinite())
        .select(
            pl.col("row_index").cast(pl.Int64),
            pl.lit(name).alias("column_name"),
            pl.lit(FINITE_CHECK).alias("check_name"),
            pl.col("_raw").alias("failure_value"),
        )
        for name in floats
    ]
    return pl.concat([_empty_quarantine(), *failures])


def _check_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _empty_quarantine()
    whole_frame = cases.filter(pl.col("index").is_null())
    if whole_frame.height:
        first = whole_frame.row(0, named=True)
        raise DataValidationError(
            f"the data fails the schema as a whole: check {first['check']} on column "
            f"{first['column'] or first['failure_case']}"
        )
    return cases.select(
        pl.col("index").cast(pl.Int64).alias("row_index"),
        pl.col("column").alias("column_name"),
        pl.col("check").alias("check_name"),
        pl.col("failure_case").alias("failure_value"),
    )


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)

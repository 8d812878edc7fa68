"""The SQL text of the out-of-core engine's casts and schema checks (warehouse/out_of_core.py):
each column cast the way `mallard.tasks.validate` casts it in Polars, each pandera check as the
condition of a failing row, and the literals they quote. Text only: nothing here connects."""

from __future__ import annotations

from typing import Any

import polars as pl

from mallard.core.errors import DataValidationError, InputError

_TRUE_WORDS = ["true", "t", "yes", "y", "1"]
_FALSE_WORDS = ["false", "f", "no", "n", "0"]
_WHITESPACE = " \t\n\r\f\v"
_DUCKDB_TYPES: dict[Any, str] = {
    pl.Float64: "DOUBLE",
    pl.Float32: "FLOAT",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Int16: "SMALLINT",
    pl.Int8: "TINYINT",
    pl.UInt64: "UBIGINT",
    pl.UInt32: "UINTEGER",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
    pl.String: "VARCHAR",
}
FLOATS = ("DOUBLE", "FLOAT")
_INTEGERS = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "HUGEINT")


def cast_expression(column: str, source: str, target: Any) -> str:
    """`column` (SQL, of DuckDB type `source`) cast to the Polars type `target` as the Polars
    path casts it: trimmed text, whole numbers only for integers, the same boolean words. A
    value that does not cast becomes NULL."""
    duck = _duckdb_type(target)
    if source == duck or (duck == "TIMESTAMP" and source.startswith("TIMESTAMP")):
        return column
    if source == "VARCHAR":
        text = f"trim({column}, {quoted(_WHITESPACE)})"
        if duck == "BOOLEAN":
            lowered = f"lower({text})"
            return (
                f"CASE WHEN {lowered} IN ({_words(_TRUE_WORDS)}) THEN TRUE "
                f"WHEN {lowered} IN ({_words(_FALSE_WORDS)}) THEN FALSE END"
            )
        if duck in _INTEGERS:
            return _whole_numbers(f"TRY_CAST({text} AS DOUBLE)", duck)
        return f"TRY_CAST({text} AS {duck})"
    if duck in _INTEGERS and source in FLOATS:
        return _whole_numbers(column, duck)  # "3.0" is a fine integer; 3.5 is not
    return f"TRY_CAST({column} AS {duck})"


def _whole_numbers(as_float: str, duck: str) -> str:
    return f"CASE WHEN {as_float} = round({as_float}, 0) THEN TRY_CAST({as_float} AS {duck}) END"


def check_conditions(name: str, column: Any, kind: str) -> list[tuple[str, str]]:
    """(pandera check name, SQL condition of a failing row) for one column, as pandera's Polars
    backend judges: nulls pass value checks; NaN counts as null for not_nullable and compares
    above every number (as in Polars, so NaN fails lt/le and passes ge/gt)."""
    col = ident(name)
    found: list[tuple[str, str]] = []
    if not column.nullable:
        nan = f" OR isnan({col})" if kind in FLOATS else ""
        found.append(("not_nullable", f"{col} IS NULL{nan}"))
    if column.unique:
        found.append(
            (
                "field_uniqueness",
                f"{col} IN (SELECT {col} FROM __table__ GROUP BY ALL HAVING count(*) > 1)"
                f" OR ({col} IS NULL AND (SELECT count(*) FROM __table__ WHERE {col} IS NULL) > 1)",
            )
        )
    for check in column.checks:
        stats = check.statistics
        if check.name in _COMPARISONS and set(stats) <= {"min_value", "max_value"}:
            value = next(iter(stats.values()))
            found.append((check.error, f"NOT ({col} {_COMPARISONS[check.name]} {_number(value)})"))
        elif check.name == "isin":
            allowed = ", ".join(_literal(v) for v in stats["allowed_values"])
            found.append((check.error, f"{col} NOT IN ({allowed})"))
        elif check.name == "str_matches":
            pattern = str(stats["pattern"])
            pattern = pattern if pattern.startswith("^") else f"^{pattern}"
            found.append((check.error, f"NOT regexp_matches({col}, {quoted(pattern)})"))
        else:
            raise InputError(
                f"[ingest.engine] the duckdb engine cannot run check {check.error} on column "
                f"'{name}' (it runs nullable, unique, ge/gt/le/lt, isin and regex); "
                'use engine = "polars"'
            )
    return found


_COMPARISONS = {
    "greater_than_or_equal_to": ">=",
    "greater_than": ">",
    "less_than_or_equal_to": "<=",
    "less_than": "<",
}


def _duckdb_type(target: Any) -> str:
    if isinstance(target, pl.Datetime) or target == pl.Datetime:
        return "TIMESTAMP"
    for polars_type, duck in _DUCKDB_TYPES.items():
        if target == polars_type:
            return duck
    raise InputError(f"[ingest.engine] the duckdb engine cannot cast to {target}")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quoted(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _words(words: list[str]) -> str:
    return ", ".join(quoted(w) for w in words)


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataValidationError(f"a range check needs a number, not {value!r}")
    return f"CAST('{float(value)!r}' AS DOUBLE)"  # 'inf' too


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return quoted(value)

"""Ingest and validation for files larger than memory: the same casts and schema checks as
`mallard.tasks.validate`, run as DuckDB SQL under `SET memory_limit`, spilling to a temporary
folder, with the valid rows written as Parquet there.

Measured (STACK-NOTES, 10M rows / 1.6 GB CSV): DuckDB at memory_limit '1GB' ingests in 31 s and
validates + quarantines in 30 s at ~1.1 GB peak, where Polars needs the whole frame in memory.

The steps, each a streaming `COPY ... TO` Parquet so no step holds the rows:
1. raw.parquet: the source files as read, declared columns as text (read in file order, so
   `file_row_number` is the input row position the Polars path numbers rows by);
2. typed.parquet: row_index plus every column cast like tasks/validate.py casts (trimmed text,
   whole numbers for int, the same boolean words); a value that does not cast becomes NULL;
3. one query per check gives (row_index, failing value); the few failing values are fetched and
   turned to text by Polars, so the quarantine reads exactly like the in-memory engine's
   (same check names: dtype('Float64'), not_nullable, greater_than_or_equal_to(0.0), isin([...]),
   str_matches('^...'), field_uniqueness, finite);
4. valid.parquet: typed rows whose row_index is not in the quarantine, in input order.

The connection is in-memory and locked down like spec SQL (`mallard.spec_sql.lock_down`): it may
read only the source files and read/write only its temporary folder; every statement is
mallard's own. Known differences from the Polars engine: dates and datetimes are read as DuckDB
casts them (ISO forms), regexes run on RE2 (not Rust's regex; the common syntax agrees), and
columns the schema does not declare get DuckDB's type detection limited to integer / float /
text, then (CSV) Boolean where every value is true/false as Polars' reader decides (DuckDB's
own boolean detection also takes yes/no, which Polars keeps as text).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandera.polars as pa
import polars as pl

from mallard.core.errors import InputError, describe_files, first_line
from mallard.spec_sql import lock_down
from mallard.warehouse.check_sql import FLOATS, cast_expression, check_conditions, ident, quoted

MEMORY_LIMIT_ENV = "MALLARD_DUCKDB_MEMORY_LIMIT"
TEMP_DIR_ENV = "MALLARD_DUCKDB_TEMP"  # where the temporary folders go (default: the system's)
DEFAULT_MEMORY_LIMIT = "1GB"
QUARANTINE_SCHEMA = {
    "row_index": pl.Int64,
    "column_name": pl.String,
    "check_name": pl.String,
    "failure_value": pl.String,
}
FINITE_CHECK = "finite"
_CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
# DuckDB's CSV reader buffers 32 MB per thread by default and Parquet row groups of 122,880 rows:
# both too much under a small memory_limit (64MB failed to allocate a 30.5 MiB block).
CSV_BUFFER_BYTES = 4_000_000
_PARQUET = "(FORMAT parquet, ROW_GROUP_SIZE 32768)"


@dataclass(frozen=True)
class OutOfCore:
    """What the DuckDB engine learned; the valid rows stay on disk in `valid_path`."""

    valid_path: Path  # Parquet: row_index (input position) then the typed columns
    quarantine: pl.DataFrame  # row_index, column_name, check_name, failure_value
    n_rows: int
    n_valid: int
    folder: Path  # holds the Parquet files (removed on exit, or by validate_into's caller)
    memory_limit: str

    def valid_frame(self) -> tuple[pl.DataFrame, pl.Series]:
        """The valid rows in memory (for steps that need them) and their input positions."""
        frame = pl.read_parquet(self.valid_path)
        return frame.drop("row_index"), frame["row_index"].cast(pl.Int64)

    def scan_valid(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.valid_path).drop("row_index")

    def valid_batches(self, rows: int) -> Iterator[tuple[pl.DataFrame, pl.Series]]:
        """The valid rows `rows` at a time, in input order, with their input positions: what
        `valid_frame` holds at once. Each batch is its own scan, reading only the Parquet row
        groups it needs (measured on 6M rows, batches of 200k: +106 MB RSS over the whole read,
        where pyarrow's iter_batches took +165 MB)."""
        if rows < 1:
            raise ValueError(f"a batch needs at least one row, not {rows}")
        scan = pl.scan_parquet(self.valid_path)
        for start in range(0, self.n_valid, rows):
            frame = scan.slice(start, rows).collect()
            yield frame.drop("row_index"), frame["row_index"].cast(pl.Int64)


def memory_limit(spec_value: str | None) -> str:
    """The spec's [ingest] memory_limit, else MALLARD_DUCKDB_MEMORY_LIMIT, else 1GB."""
    return (spec_value or os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT).strip()


@contextmanager
def validated_files(
    files: Sequence[Path],
    schema: pa.DataFrameSchema,
    *,
    limit: str = DEFAULT_MEMORY_LIMIT,
    drop: Sequence[str] = (),
    threads: int | None = None,
) -> Iterator[OutOfCore]:
    """Read `files` (CSV/TSV/Parquet, same columns), cast and check them against `schema` out of
    core; `drop` columns (pii = "drop") are left out from the start. The temporary folder and
    its Parquet files are removed when the block ends."""
    if not files:
        raise InputError("no input files to read")
    folder = Path(tempfile.mkdtemp(prefix="mallard-duckdb-", dir=os.environ.get(TEMP_DIR_ENV)))
    try:
        yield validate_into(folder, files, schema, limit=limit, drop=drop, threads=threads)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def validate_into(
    folder: Path,
    files: Sequence[Path],
    schema: pa.DataFrameSchema,
    *,
    limit: str = DEFAULT_MEMORY_LIMIT,
    drop: Sequence[str] = (),
    threads: int | None = None,
) -> OutOfCore:
    """`validated_files` writing into `folder`, an existing folder the caller owns (and
    removes): for valid rows that must outlive one block, e.g. scored in batches by a step."""
    if not files:
        raise InputError("no input files to read")
    con = scratch_connection(folder, limit, allowed_paths=files, threads=threads)
    try:
        return _validate(con, list(files), schema, folder, limit, set(drop))
    finally:
        con.close()


def scratch_connection(
    folder: Path, limit: str, *, allowed_paths: Sequence[Path], threads: int | None
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    spill = folder / "spill"
    spill.mkdir(exist_ok=True)
    try:
        con.execute("SET memory_limit = $v", {"v": limit})
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"[ingest.memory_limit] DuckDB refuses '{limit}': {exc}") from None
    con.execute("SET temp_directory = $v", {"v": str(spill)})
    con.execute("SET preserve_insertion_order = true")  # row_index is the input order
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    return lock_down(con, allowed_directories=[folder], allowed_paths=allowed_paths)


def _validate(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    schema: pa.DataFrameSchema,
    folder: Path,
    limit: str,
    drop: set[str],
) -> OutOfCore:
    raw_path, typed_path, valid_path = (folder / f"{n}.parquet" for n in ("raw", "typed", "valid"))
    declared = {name: c for name, c in schema.columns.items() if name not in drop}
    text = [name for name, c in declared.items() if c.dtype is not None]
    _write_raw(con, files, text, raw_path, drop)
    raw = f"read_parquet({quoted(raw_path)}, file_row_number = true)"
    source_types = _types(con, f"SELECT * EXCLUDE (file_row_number) FROM {raw}")
    _require_columns(declared, source_types)
    n_rows = int(scalar(con, f"SELECT count(*) FROM read_parquet({quoted(raw_path)})"))
    if n_rows == 0:
        raise InputError(f"{describe_files(files)} has a header but no data rows")

    casts: dict[str, str] = {}
    if all(p.suffix.lower() in _CSV_SUFFIXES for p in files):
        undeclared = [n for n, kind in source_types.items() if n not in text and kind == "VARCHAR"]
        for name in _csv_booleans(con, raw, undeclared):
            column = ident(name)
            casts[name] = f"CASE lower({column}) WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"
    checks: list[tuple[str, str, str, str]] = []  # (column, check name, table, failing-row SQL)
    for name, column in declared.items():
        if column.dtype is None or name not in source_types:
            continue
        target = column.dtype.type
        expr = cast_expression(ident(name), source_types[name], target)
        if expr != ident(name):
            casts[name] = expr
            checks.append(
                (
                    name,
                    f"dtype('{target}')",
                    raw,
                    f"{ident(name)} IS NOT NULL AND ({expr}) IS NULL",
                )
            )
    typed_select = ", ".join(
        f"{casts[n]} AS {ident(n)}" if n in casts else ident(n) for n in source_types
    )
    con.execute(
        f"COPY (SELECT file_row_number AS row_index, {typed_select} FROM {raw}) "
        f"TO {quoted(typed_path)} {_PARQUET}"
    )
    typed = f"read_parquet({quoted(typed_path)})"
    typed_types = _types(con, f"SELECT * EXCLUDE (row_index) FROM {typed}")
    for name, kind in typed_types.items():
        if kind in FLOATS:  # NaN and ±inf, shown as they came in (e.g. "1e400")
            value = casts.get(name, ident(name))
            checks.append((name, FINITE_CHECK, raw, f"isnan({value}) OR isinf({value})"))
    for name, column in declared.items():
        if name in typed_types:
            checks += [
                (name, check, typed, where)
                for check, where in check_conditions(name, column, typed_types[name])
            ]

    quarantine = _quarantine(con, checks)
    con.register("bad_rows", quarantine.select(pl.col("row_index").unique()))
    # ORDER BY: the anti-join does not keep input order (83 rows out of place in 4M measured),
    # and the valid rows must come in it (the seeded split, a scored file read in batches).
    # The sort under memory_limit spills; it took validation of 4M rows from ~11 s to ~15 s.
    con.execute(
        f"COPY (SELECT * FROM {typed} WHERE row_index NOT IN (SELECT row_index FROM bad_rows) "
        "ORDER BY row_index) "
        f"TO {quoted(valid_path)} {_PARQUET}"
    )
    con.unregister("bad_rows")
    n_valid = int(scalar(con, f"SELECT count(*) FROM read_parquet({quoted(valid_path)})"))
    raw_path.unlink()  # the typed copy is all the valid rows need
    return OutOfCore(valid_path, quarantine, n_rows, n_valid, folder, limit)


def _write_raw(
    con: duckdb.DuckDBPyConnection, files: list[Path], text: list[str], out: Path, drop: set[str]
) -> None:
    suffixes = {p.suffix.lower() for p in files}
    listed = "[" + ", ".join(quoted(p) for p in files) + "]"
    if suffixes == {".parquet"}:
        reader = f"read_parquet({listed})"
    elif suffixes <= _CSV_SUFFIXES:
        for path in files:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes): expected a header and data rows")
        header = _types(
            con, f"SELECT * FROM read_csv({quoted(files[0])}, header = true, sample_size = 1)"
        )
        types = "{" + ", ".join(f"{quoted(n)}: 'VARCHAR'" for n in text if n in header) + "}"
        separator = "\t" if suffixes == {".tsv"} else ","
        reader = (
            f"read_csv({listed}, header = true, delim = {quoted(separator)}, "
            f"types = {types}, allow_quoted_nulls = false, "
            f"buffer_size = {CSV_BUFFER_BYTES}, "
            # no BOOLEAN: DuckDB's takes yes/no and t/f too (see _csv_booleans)
            "auto_type_candidates = ['BIGINT', 'DOUBLE', 'VARCHAR'])"
        )
    else:
        raise InputError(
            "cannot read "
            f"{files[0]}: the duckdb engine reads .csv, .tsv and .parquet files (not mixed)"
        )
    dropped = f" EXCLUDE ({', '.join(ident(n) for n in drop)})" if drop else ""
    try:
        if drop:
            present = _types(con, f"SELECT * FROM {reader} LIMIT 0")
            dropped = (
                f" EXCLUDE ({', '.join(ident(n) for n in drop if n in present)})"
                if any(n in present for n in drop)
                else ""
            )
        con.execute(f"COPY (SELECT *{dropped} FROM {reader}) TO {quoted(out)} {_PARQUET}")
    except duckdb.Error as exc:
        raise InputError(f"cannot read {describe_files(files)}: {first_line(exc)}") from None


def _csv_booleans(con: duckdb.DuckDBPyConnection, raw: str, names: list[str]) -> list[str]:
    """The text columns `names` that Polars' CSV reader (the in-memory engine) types Boolean:
    at least one value, and every value 'true' or 'false' in any case. DuckDB's own detection
    also takes yes/no and t/f: a model trained on such a column as text would then be scored
    on categories it never met."""
    if not names:
        return []
    tests = ", ".join(
        f"coalesce(bool_and(lower({ident(n)}) IN ('true', 'false')), false)" for n in names
    )
    row = con.execute(f"SELECT {tests} FROM {raw}").fetchone()
    return [name for name, boolean in zip(names, row or (), strict=True) if boolean]


def _quarantine(
    con: duckdb.DuckDBPyConnection, checks: list[tuple[str, str, str, str]]
) -> pl.DataFrame:
    parts = [pl.DataFrame(schema=QUARANTINE_SCHEMA)]
    for name, check, table, where in checks:
        index = "file_row_number" if "file_row_number" in table else "row_index"
        condition = where.replace("__table__", table)
        frame = con.sql(
            f"SELECT {index} AS row_index, {ident(name)} AS value FROM {table} WHERE {condition}"
        ).pl()
        if frame.height:
            parts.append(
                frame.select(
                    pl.col("row_index").cast(pl.Int64),
                    pl.lit(name).alias("column_name"),
                    pl.lit(check).alias("check_name"),
                    pl.col("value").cast(pl.String).alias("failure_value"),
                )
            )
    return pl.concat(parts).sort("row_index", "column_name", "check_name")


def _require_columns(declared: dict[str, Any], source_types: dict[str, str]) -> None:
    missing = [n for n, c in declared.items() if c.required and n not in source_types]
    if missing:
        raise InputError(
            f"column(s) {', '.join(missing)} named in the schema are missing from the data; "
            f"the data has: {', '.join(source_types)}"
        )


def _types(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, str]:
    relation = con.sql(sql)
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return None if row is None else row[0]

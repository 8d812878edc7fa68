"""`mallard sql`: an analyst's query drawn by DuckDB's own box renderer, or exported.

Display never fetches a BLOB into Python: before anything is fetched, each BLOB column is
replaced in SQL by a label such as `<blob 2.1 MB>` (28 MB of model files once took 10 minutes
and 4.7 GB to print as Python bytes). The renderer fits the table to the terminal width
(hiding columns it cannot fit, and saying so), and at most `max_rows` rows are drawn, followed
by an "N more rows" line.

Exports work for every column type: CSV writes every value as DuckDB's own text for it (BLOBs
as hex), JSON writes one object per row built by DuckDB (BLOBs as hex, JSON columns as nested
JSON), Parquet keeps DuckDB's types (BLOBs as binary). Rows are streamed in Arrow batches, so
an export never holds the whole result at once.

The connection is warehouse.sandbox's locked-down one (reads only; a write, ATTACH, COPY or
host file is refused in one line, see mallard.spec_sql), and its default schema is `ml` (when
the file has one), so `SHOW TABLES` lists mallard's tables and `FROM leaderboard` finds
`ml.leaderboard`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

import duckdb
import polars as pl

from mallard.core.errors import InputError, WarehouseError
from mallard.spec_sql import ANALYST, failure_message, read_only_relation
from mallard.warehouse.sandbox import untrusted_connection, with_table_names

ExportFormat = Literal["csv", "json", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "json", "parquet")
BATCH_ROWS = 65_536


def render_query(db: Path, sql: str, *, max_width: int, max_rows: int = 40) -> str:
    """The query's result as DuckDB draws it, at most `max_width` characters wide and
    `max_rows` rows long, then an "N more rows" line if rows were left out."""
    with _analyst_connection(db) as con:
        relation = _relation(con, sql)
        shown = _displayable(relation)
        box = _box(shown.limit(max_rows), max_width=max_width, max_rows=max_rows)
        more = _rows_beyond(relation, max_rows)
    if more:
        noun = "row" if more == 1 else "rows"
        box += f"{more} more {noun} (add LIMIT/OFFSET, or --format csv for every row)\n"
    return box


def export_query(db: Path, sql: str, fmt: str, out: IO[bytes] | Path) -> list[str]:
    """Write the query's whole result as `fmt` (csv | json | parquet) to `out` (a binary
    stream, or a file path; parquet needs a path). Returns notes for the user, e.g. which
    BLOB columns were hex-encoded."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown format '{fmt}'; choose table, {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet" and not isinstance(out, Path):
        raise InputError("--format parquet writes a file: pass --output FILE")
    with _analyst_connection(db) as con:
        relation = _relation(con, sql)
        blobs = [name for name, kind in _columns(relation) if kind == "BLOB"]
        notes: list[str] = []
        if blobs and fmt != "parquet":
            notes.append(f"BLOB columns written as hex: {', '.join(blobs)}")
        try:
            if fmt == "parquet":
                assert isinstance(out, Path)
                as_text = _parquet_ready(relation, notes)
                _write_parquet(as_text, out)
            else:
                rows = _as_text(relation) if fmt == "csv" else _as_json_rows(relation)
                with _binary(out) as stream:
                    (_write_csv if fmt == "csv" else _write_json)(rows, stream)
        except duckdb.Error as exc:
            raise _failed(exc) from None
    return notes


# --- the connection and the statement ----------------------------------------------------------


@contextlib.contextmanager
def _analyst_connection(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with untrusted_connection(db) as con:
        has_ml = con.execute(
            "SELECT count(*) FROM duckdb_schemas() "
            "WHERE database_name = current_database() AND schema_name = 'ml'"
        ).fetchall()[0][0]
        if has_ml:
            con.execute("USE ml")  # mallard's own statement; the analyst's SQL cannot USE
        yield con


def _relation(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """The analyst's SQL as a relation, not yet fetched; anything but a read is refused."""
    try:
        return read_only_relation(con, sql, ANALYST)
    except WarehouseError as exc:
        raise with_table_names(con, exc) from None


def _failed(exc: duckdb.Error) -> WarehouseError:
    return WarehouseError(failure_message(exc, ANALYST))


def _columns(relation: duckdb.DuckDBPyRelation) -> list[tuple[str, str]]:
    return [(name, str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _project(relation: duckdb.DuckDBPyRelation, exprs: list[str]) -> duckdb.DuckDBPyRelation:
    try:
        return relation.project(", ".join(exprs))
    except duckdb.Error as exc:
        raise _failed(exc) from None


# --- display -----------------------------------------------------------------------------------


def _displayable(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """The relation with each BLOB replaced by its size label, computed by DuckDB; a nested
    value holding BLOBs (rare) becomes its first 200 characters of text."""
    columns = _columns(relation)
    if all("BLOB" not in kind for _, kind in columns):
        return relation
    exprs = []
    for name, kind in columns:
        column = _quote(name)
        if kind == "BLOB":
            label = f"'<blob ' || formatReadableDecimalSize(octet_length({column})) || '>'"
            exprs.append(f"CASE WHEN {column} IS NULL THEN NULL ELSE {label} END AS {column}")
        elif "BLOB" in kind:
            exprs.append(f"left(CAST({column} AS VARCHAR), 200) AS {column}")
        else:
            exprs.append(column)
    return _project(relation, exprs)


def _box(relation: duckdb.DuckDBPyRelation, *, max_width: int, max_rows: int) -> str:
    """DuckDB's renderer (`show`) writes to stdout; keep its text instead."""
    drawn = io.StringIO()
    try:
        with contextlib.redirect_stdout(drawn):
            relation.show(
                max_width=max(max_width, 20), max_rows=max(max_rows, 1), null_value="NULL"
            )
    except duckdb.Error as exc:
        raise _failed(exc) from None
    return drawn.getvalue()


def _rows_beyond(relation: duckdb.DuckDBPyRelation, shown: int) -> int:
    """Rows past the first `shown`, counted by DuckDB only when there are any (it reads no
    column the count does not need)."""
    try:
        (beyond,) = relation.limit(1, offset=shown).aggregate("count(*)").fetchall()[0]
        if not beyond:
            return 0
        (total,) = relation.aggregate("count(*)").fetchall()[0]
    except duckdb.Error as exc:
        raise _failed(exc) from None
    return max(int(total) - shown, 0)


# --- export ------------------------------------------------------------------------------------


def _as_text(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """Every column as DuckDB's text for it (exact decimals, ISO timestamps, nested values);
    BLOBs as hex."""
    exprs = [
        (f"hex({_quote(n)})" if kind == "BLOB" else f"CAST({_quote(n)} AS VARCHAR)")
        + f" AS {_quote(n)}"
        for n, kind in _columns(relation)
    ]
    return _project(relation, exprs)


def _as_json_rows(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """One JSON object per row, built by DuckDB; BLOBs as hex strings."""
    pairs = [
        "'"
        + name.replace("'", "''")
        + "', "
        + (f"hex({_quote(name)})" if kind == "BLOB" else _quote(name))
        for name, kind in _columns(relation)
    ]
    return _project(relation, [f"CAST(json_object({', '.join(pairs)}) AS VARCHAR) AS row"])


def _parquet_ready(relation: duckdb.DuckDBPyRelation, notes: list[str]) -> duckdb.DuckDBPyRelation:
    """Arrow has no Parquet form for intervals and unions: those columns become DuckDB's text
    for them (and `notes` says so); every other type, BLOBs included, is kept."""
    columns = _columns(relation)
    texts = [n for n, kind in columns if "INTERVAL" in kind or kind.startswith("UNION")]
    if not texts:
        return relation
    notes.append(f"written as text (Parquet has no such type): {', '.join(texts)}")
    return _project(
        relation,
        [
            f"CAST({_quote(n)} AS VARCHAR) AS {_quote(n)}" if n in texts else _quote(n)
            for n, _ in columns
        ],
    )


def _batches(relation: duckdb.DuckDBPyRelation) -> Iterator[pl.DataFrame]:
    reader = relation.to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        yield pl.DataFrame(pl.from_arrow(batch))


def _write_csv(relation: duckdb.DuckDBPyRelation, stream: IO[bytes]) -> None:
    header = True
    for frame in _batches(relation):
        frame.write_csv(stream, include_header=header)
        header = False
    if header:  # no rows: still the header line
        pl.DataFrame(schema=dict.fromkeys(relation.columns, pl.String)).write_csv(stream)


def _write_json(relation: duckdb.DuckDBPyRelation, stream: IO[bytes]) -> None:
    """A JSON array, one row object per line."""
    stream.write(b"[")
    first = True
    for frame in _batches(relation):
        for row in frame["row"]:
            stream.write(("\n" if first else ",\n").encode() + row.encode())
            first = False
    stream.write(b"\n]\n" if not first else b"]\n")


def _write_parquet(relation: duckdb.DuckDBPyRelation, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    reader = relation.to_arrow_reader(BATCH_ROWS)
    try:
        with pq.ParquetWriter(partial, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _binary(out: IO[bytes] | Path) -> Iterator[IO[bytes]]:
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as stream:
            yield stream
    else:
        yield out
        out.flush()

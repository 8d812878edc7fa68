"""Out-of-core work on rows already on disk: `[features] sql` over the valid rows DuckDB's
engine wrote (mallard.warehouse.out_of_core), under the same memory limit and locks, and how much
data an input file holds (the auto engine's size rule)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from mallard.spec_sql import (
    FEATURES,
    ROW_KEY,
    keeps_row_key,
    lock_down,
    read_only_relation,
    reorders_rows,
)
from mallard.warehouse.check_sql import quoted
from mallard.warehouse.out_of_core import DEFAULT_MEMORY_LIMIT, scalar, scratch_connection


def input_bytes(paths: Sequence[Path]) -> int:
    """How much data `paths` hold as rows: a Parquet file's uncompressed column chunks (from
    its footer; a file that is not Parquet counts its size), any other file's size. Parquet
    compresses tables several times over (10M generated housing rows: 136 MB on disk, 501 MB
    uncompressed, 1.6 GB as CSV), so its file size says little about the memory it needs.
    One connection reads every footer: a spec's glob may match hundreds of files."""
    sizes = {path: path.stat().st_size for path in paths}
    parquet = [path for path in paths if path.suffix.lower() == ".parquet"]
    if not parquet:
        return sum(sizes.values())
    con = lock_down(duckdb.connect(":memory:"), allowed_paths=parquet)
    try:
        for path in parquet:
            try:
                found = con.execute(
                    "SELECT sum(total_uncompressed_size) FROM parquet_metadata($p)",
                    {"p": str(path)},
                ).fetchall()
            except duckdb.Error:
                continue  # not readable as Parquet: the reader will say so, with the file's name
            sizes[path] = int(found[0][0] or sizes[path])
    finally:
        con.close()
    return sum(sizes.values())


def features_to_parquet(
    valid_path: Path | str,
    sql: str,
    out_path: Path,
    *,
    limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
) -> int:
    """Run `[features] sql` over the valid rows (table `source`) under the memory limit,
    streaming the result to `out_path`; returns its row count. `valid_path` is a Parquet file or
    a glob of them inside `out_path`'s folder, with `row_index` beside the columns.

    As in memory (spec_sql.sql_over_frame), `source` carries the row key instead of row_index:
    when the query keeps it (`SELECT *`), the result is written in input order with it as
    `row_index`; a query that reorders rows without it is refused. The SQL may only read
    (spec_sql's rule); the connection reaches no file outside the folder but `valid_path`."""
    folder = out_path.parent
    allowed = [out_path] if "*" in str(valid_path) else [Path(valid_path), out_path]
    con = scratch_connection(folder, limit, allowed_paths=allowed, threads=threads)
    try:
        valid = f"read_parquet({quoted(str(valid_path))})"
        con.execute(
            f"CREATE VIEW source AS SELECT row_index AS {ROW_KEY}, * EXCLUDE (row_index) "
            f"FROM {valid}"
        )
        relation = read_only_relation(con, sql, FEATURES)
        keyed = keeps_row_key(relation.columns, sql)
        if keyed and reorders_rows(sql):
            # Sorted in a statement of its own: a window and the sort after it in one plan ran
            # out of memory at 96MB on 4M rows, where each alone spills and completes.
            unordered = folder / f"{out_path.stem}-unordered.parquet"
            _write_features(relation, unordered)
            relation = con.sql(
                f"SELECT * FROM read_parquet({quoted(unordered)}) ORDER BY {ROW_KEY}"
            )
        if keyed:
            relation = relation.project(f"* EXCLUDE ({ROW_KEY}), {ROW_KEY} AS row_index")
        _write_features(relation, out_path)
        return int(scalar(con, f"SELECT count(*) FROM read_parquet({quoted(out_path)})"))
    finally:
        con.close()


def _write_features(relation: duckdb.DuckDBPyRelation, path: Path) -> None:
    try:
        relation.write_parquet(str(path))
    except duckdb.Error as exc:
        raise FEATURES.error(f"{FEATURES.prefix}query failed: {exc}") from None

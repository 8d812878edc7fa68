"""A copy of the warehouse for BI tools and long reads: they hold the copy's lock, never the
live file's, so pipelines keep writing."""

from __future__ import annotations

from pathlib import Path

import duckdb

from mallard.core.errors import InputError, WarehouseError
from mallard.warehouse.connection import retry_on_lock


def snapshot(db: Path, target: Path, *, overwrite: bool = False) -> int:
    """Copy every table and view of `db` into a new DuckDB file; returns the table count."""
    if not db.exists():
        raise WarehouseError(f"no warehouse at {db}")
    if target.resolve() == db.resolve():
        raise InputError("the snapshot must be a different file from the warehouse")
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --force to replace it")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        retry_on_lock(db, lambda: con.execute(f"ATTACH '{_quoted(db)}' AS live (READ_ONLY)"))
        con.execute(f"ATTACH '{_quoted(partial)}' AS snapshot")
        con.execute("COPY FROM DATABASE live TO snapshot")
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'snapshot'"
        ).fetchall()[0][0]
    except duckdb.Error as exc:
        raise WarehouseError(f"snapshot failed: {exc}") from None
    finally:
        con.close()
    partial.replace(target)  # readers never see a half-written snapshot
    return int(tables)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")

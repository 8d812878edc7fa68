"""`mallard snapshot`: a copy of the warehouse for BI tools and long reads. They hold the copy's
lock, never the live file's, so pipelines keep writing.

Two forms: a DuckDB file in the 1.x-readable format of the read copy (see read_copy.py), or a
folder of Parquet files (`EXPORT DATABASE ... (FORMAT parquet)`: one file per table plus
schema.sql and load.sql, which `IMPORT DATABASE 'dir'` replays, views included) for tools that
read Parquet and not DuckDB. The live file is locked only while it is being copied.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from mallard.core.errors import InputError, WarehouseError
from mallard.warehouse.connection import retry_on_lock
from mallard.warehouse.read_copy import copy_database, path_literal


def snapshot(db: Path, target: Path, *, overwrite: bool = False) -> int:
    """Copy every table and view of `db` into a new DuckDB file; returns the table count."""
    _check_source(db, target)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --force to replace it")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        tables = copy_database(db, partial)
        partial.replace(target)  # readers never see a half-written snapshot
    except WarehouseError as exc:
        raise WarehouseError(f"snapshot failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".wal").unlink(missing_ok=True)
    return tables


def export_parquet(db: Path, directory: Path, *, overwrite: bool = False) -> int:
    """Export every table of `db` as Parquet into `directory`; returns the table count.

    Written into a temporary sibling folder, then renamed: a failed export leaves nothing
    behind. (IMPORT DATABASE finds the files relative to the folder it is given.)"""
    _check_source(db, directory)
    occupied = directory.exists() and (directory.is_file() or any(directory.iterdir()))
    if occupied and not overwrite:
        raise InputError(f"{directory} exists and is not empty; pass --force to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    con = duckdb.connect(":memory:")
    try:
        retry_on_lock(db, lambda: con.execute(f"ATTACH {path_literal(db)} AS live (READ_ONLY)"))
        con.execute(f"EXPORT DATABASE live TO {path_literal(partial)} (FORMAT parquet)")
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'live'"
        ).fetchall()[0][0]
        con.close()  # the live file's lock goes before the folder is moved into place
        if directory.is_dir():
            shutil.rmtree(directory)
        else:
            directory.unlink(missing_ok=True)
        partial.rename(directory)
    except duckdb.Error as exc:
        raise WarehouseError(f"parquet export failed: {exc}") from None
    finally:
        con.close()
        shutil.rmtree(partial, ignore_errors=True)
    return int(tables)


def _check_source(db: Path, target: Path) -> None:
    if not db.exists():
        raise WarehouseError(f"no warehouse at {db}")
    if target.resolve() == db.resolve():
        raise InputError("the snapshot must be a different file from the warehouse")

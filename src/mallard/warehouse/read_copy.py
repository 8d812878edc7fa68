"""The read copy: a consistent copy of the warehouse that analysts and BI tools hold open.

An open DuckDB connection, even a read-only one, locks the file for every other process, so a
reader on the live `warehouse.duckdb` blocks the pipelines. After each commit the flows publish
`warehouse.read.duckdb` beside it (`read_copy_path`): written to a temporary file in the same
folder, then moved into place with `os.replace`, which is atomic. A reader that has the old copy
open keeps reading the old file (its inode) until it reopens; nobody ever sees half a copy.
The live file's lock is held only while DuckDB copies it (well under a second for a demo
warehouse).

The copy is written in DuckDB's 1.4 storage format (`STORAGE_VERSION`): DuckDB 2 writes files
that 1.x clients (the duckdb CLI and the Python and Node packages from PyPI/npm, 1.4 and 1.5)
cannot open, while a 1.4-format file opens in 1.4+, 1.5 and 2.x alike, views included.

Publishing is never part of a run's commit: `ReadCopyError` (a WarehouseError) says the copy was
not refreshed and that the run is committed, for the caller to show as a warning.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb

from mallard.core.errors import ReadCopyError, WarehouseError
from mallard.warehouse.connection import retry_on_lock

# The oldest format the clients analysts use can read; 2.x reads it too.
READABLE_STORAGE_VERSION = "v1.4.0"


def read_copy_path(db: Path) -> Path:
    """Where the read copy of `db` lives: `warehouse.duckdb` -> `warehouse.read.duckdb`."""
    return db.with_name(f"{db.stem}.read{db.suffix or '.duckdb'}")


def publish_read_copy(db: Path, *, timeout_s: float | None = None) -> Path:
    """Replace the read copy of `db` with a fresh consistent copy; returns its path.

    Waits at most `timeout_s` (default MALLARD_LOCK_TIMEOUT) for the live file's lock.
    Raises ReadCopyError (and leaves the previous copy in place) if that fails."""
    target = read_copy_path(db)
    if not db.exists():
        raise ReadCopyError(f"read copy not published: no warehouse at {db}")
    partial = _partial_path(target)
    try:
        copy_database(db, partial, timeout_s=timeout_s)
        os.replace(partial, target)
    except (WarehouseError, OSError) as exc:
        raise ReadCopyError(
            f"read copy {target} not refreshed (the warehouse itself is committed and "
            f"unchanged; the previous copy, if any, is still there): {exc}"
        ) from None
    finally:
        _remove(partial)
    return target


def copy_database(db: Path, partial: Path, *, timeout_s: float | None = None) -> int:
    """Copy every table, view and comment of `db` into the new file `partial`, in the 1.x
    readable format; returns the number of tables. The live file is attached read-only, and
    detached, releasing its lock, as soon as the copy is written."""
    con = duckdb.connect(":memory:")
    try:
        retry_on_lock(
            db,
            lambda: con.execute(f"ATTACH {path_literal(db)} AS live (READ_ONLY)"),
            timeout_s=timeout_s,
        )
        try:
            con.execute(
                f"ATTACH {path_literal(partial)} AS copy "
                f"(STORAGE_VERSION '{READABLE_STORAGE_VERSION}')"
            )
            con.execute("COPY FROM DATABASE live TO copy")
        finally:
            con.execute("DETACH live")  # let writers in before the copy is flushed
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'copy'"
        ).fetchall()[0][0]
        con.execute("DETACH copy")  # checkpoints: the file is complete, without a WAL
    except duckdb.Error as exc:
        raise WarehouseError(f"copying {db} failed: {exc}") from None
    finally:
        con.close()
    return int(tables)


def _partial_path(target: Path) -> Path:
    """A fresh name in the target's folder (so os.replace stays on one file system) that no
    concurrent publisher uses; DuckDB must create the file itself, so it does not exist yet."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


def _remove(partial: Path) -> None:
    for leftover in (partial, partial.with_name(partial.name + ".wal")):
        leftover.unlink(missing_ok=True)


def path_literal(path: Path) -> str:
    """`path` as a quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"

"""Connections for SQL mallard did not write: analysts' `mallard sql` and a spec's `source.sql`.

The warehouse file is opened read-only (waiting on its lock like every reader), then locked down
(`mallard.spec_sql.lock_down`): no file, extension or setting beyond it is reachable, and only
reading statements run. A read-only open alone is not enough: such a connection could still
ATTACH the same file read-write, COPY or EXPORT anywhere, read any host file and INSTALL
extensions (measured on duckdb 2.0.1; tests/hostile/test_readonly_sql.py tries each).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mallard.core.errors import WarehouseError
from mallard.spec_sql import lock_down
from mallard.warehouse.connection import connect


@contextmanager
def untrusted_connection(
    db: Path | None,
    *,
    allowed_directories: Sequence[Path] = (),
    allowed_paths: Sequence[Path] = (),
    timeout_s: float | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A locked-down connection: to the warehouse `db` read-only, or to an empty in-memory
    database when `db` is None. Files under `allowed_directories` / in `allowed_paths` can be
    read, nothing can be written."""
    if db is not None:
        # The same open as every reader's (path, lock wait, schema check, damaged-file errors).
        with connect(db, read_only=True, timeout_s=timeout_s) as con:
            lock_down(con, allowed_directories, allowed_paths)
            yield con
        return
    con = duckdb.connect(":memory:")
    try:
        lock_down(con, allowed_directories, allowed_paths)
        yield con
    finally:
        con.close()


_NO_SUCH_TABLE = re.compile(r"Catalog Error: Table with name \S+ does not exist")


def with_table_names(con: duckdb.DuckDBPyConnection, error: WarehouseError) -> WarehouseError:
    """`error` with the warehouse's tables and views named when the query named one it has not
    (DuckDB suggests a single name, and `SHOW TABLES` is not where an analyst looks first)."""
    if not _NO_SUCH_TABLE.search(str(error)):
        return error
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ml' UNION "
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'ml' ORDER BY 1"
    ).fetchall()
    listed = ", ".join(name for (name,) in names)
    return WarehouseError(f"{error}; the warehouse's tables and views: {listed}")

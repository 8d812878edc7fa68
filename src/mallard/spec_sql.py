"""Spec SQL (`[features] sql`) over in-memory frames, on a DuckDB connection that cannot write.

Besides `mallard.warehouse`, this is the only module that runs DuckDB; the step that uses it
(`tasks.features`) stays a plain function of frames.
"""

from __future__ import annotations

import duckdb
import polars as pl

from mallard.core.errors import InputError


def sql_over_frame(frame: pl.DataFrame, sql: str, name: str = "source") -> pl.DataFrame:
    """Run `sql` in an in-memory DuckDB where `frame` is the table `name` (features.sql)."""
    con = duckdb.connect(":memory:")
    try:
        con.register(name, frame)
        return con.sql(sql).pl()
    except duckdb.Error as exc:
        raise InputError(f"[features.sql] query failed: {exc}") from None
    finally:
        con.close()

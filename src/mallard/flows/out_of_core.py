"""The out-of-core input path ([ingest] engine = "duckdb", or "auto" above duckdb_above_mb):
read + cast + check in DuckDB under a memory limit (mallard.warehouse.out_of_core), then hand the
flow the same Validated the in-memory path gives."""

from __future__ import annotations

from pathlib import Path

import pandera.polars as pa
from prefect import get_run_logger

from mallard.core.errors import describe_files
from mallard.core.spec import Spec
from mallard.flows import steps
from mallard.tasks.ingest import files_sha256
from mallard.tasks.validate import Validated
from mallard.warehouse import out_of_core

MB = 1_000_000


def ingest_engine(spec: Spec, files: list[Path] | None) -> str:
    """polars | duckdb | sql: how this run's input is read and validated."""
    if files is None and spec.source.sql:
        return "sql"
    engine = spec.ingest.engine
    if engine != "auto":
        return engine
    paths = spec.source_files() if files is None else files
    size = sum(p.stat().st_size for p in paths if p.exists())
    return "duckdb" if size > spec.ingest.duckdb_above_mb * MB else "polars"


@steps.step(name="validate_out_of_core")
def validate_out_of_core(
    spec: Spec, files: list[Path], schema: pa.DataFrameSchema, drop: list[str]
) -> tuple[Validated, str, str]:
    """The validated rows, the files' sha256 and their description. The valid rows come back
    in memory because the steps after validation (features, training, scoring) need them."""
    limit = out_of_core.memory_limit(spec.ingest.memory_limit)
    with out_of_core.validated_files(files, schema, limit=limit, drop=drop) as result:
        valid, positions = result.valid_frame()
    get_run_logger().info(
        "ingest (duckdb, memory_limit %s): %d rows, %d valid", limit, result.n_rows, result.n_valid
    )
    checked = Validated(
        valid=valid, quarantine=result.quarantine, n_rows=result.n_rows, valid_rows=positions
    )
    return checked, files_sha256(files), describe_files(files)

"""The out-of-core input path ([ingest] engine = "duckdb", or "auto" above duckdb_above_mb):
read + cast + check in DuckDB under a memory limit (mallard.warehouse.out_of_core), then hand the
flow the same Validated the in-memory path gives (validate; clustering's train), or leave the
valid rows on disk (`validated_on_disk`) for a flow that reads them in batches (score) or gathers
only the rows it uses (supervised train: flows.training_rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandera.polars as pa
import polars as pl
from prefect import get_run_logger

from mallard.core.errors import describe_files
from mallard.core.spec import Spec
from mallard.flows import steps
from mallard.flows.run_record import RecordedRun
from mallard.schemas.inline import build_schema, pii_policies
from mallard.tasks.ingest import files_sha256
from mallard.tasks.privacy import apply_pii, drop_at_ingest, mask_values, require_salt
from mallard.tasks.validate import Validated, enforce_invalid_limit
from mallard.warehouse import features_sql, out_of_core

MB = 1_000_000


def ingest_engine(spec: Spec, files: list[Path] | None) -> str:
    """polars | duckdb | sql: how this run's input is read and validated."""
    if files is None and spec.source.sql:
        return "sql"
    engine = spec.ingest.engine
    if engine != "auto":
        return engine
    paths = spec.source_files() if files is None else files
    size = features_sql.input_bytes([p for p in paths if p.exists()])
    return "duckdb" if size > spec.ingest.duckdb_above_mb * MB else "polars"


@steps.step(name="validate_out_of_core")
def validate_out_of_core(
    spec: Spec, files: list[Path], schema: pa.DataFrameSchema, drop: list[str]
) -> tuple[Validated, str, str]:
    """The validated rows, the files' sha256 and their description, the valid rows in memory
    (for a flow that uses every one of them at once)."""
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


@dataclass(frozen=True)
class OnDisk:
    """Validated input whose valid rows stay on disk, to be read in batches (`rows.valid_batches`).
    Their PII is not yet protected: apply `protect_batch` to every batch before it is used."""

    validated: out_of_core.OutOfCore  # valid rows: validated.valid_batches(n)
    quarantine: pl.DataFrame  # PII values redacted (mask_values), as protect_pii leaves it
    policies: dict[str, str]
    salt: str | None

    @property
    def n_invalid(self) -> int:
        return self.quarantine["row_index"].n_unique()

    def protect_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        """One batch of valid rows with PII hashed or generalised, as protect_pii does to the
        in-memory engine's valid rows ("drop" columns were never read)."""
        return apply_pii(batch, self.policies, self.salt) if self.policies else batch

    def protected_files(self, folder: Path, rows: int) -> str:
        """The valid rows with row_index and their PII protected, written `rows` at a time as
        Parquet files under `folder` (made here), in input order: the glob that reads them."""
        folder.mkdir()
        for number, (batch, positions) in enumerate(self.validated.valid_batches(rows)):
            protected = self.protect_batch(batch).insert_column(0, positions.alias("row_index"))
            protected.write_parquet(folder / f"part-{number:06d}.parquet")
        return str(folder / "part-*.parquet")


def input_schema(
    spec: Spec, *, target_optional: bool
) -> tuple[pa.DataFrameSchema, dict[str, str], str | None]:
    """The spec's schema, its PII policies and the salt they need (checked present): what every
    input path starts from."""
    schema = build_schema(
        spec.schema_,
        spec.target,
        target_optional=target_optional,
        spec_folder=spec.spec_path.parent,
    )
    policies = pii_policies(schema)
    return schema, policies, require_salt(policies)


def validated_on_disk(
    spec: Spec, run: RecordedRun, files: list[Path], folder: Path, *, target_optional: bool
) -> OnDisk:
    """flows.inputs.checked_input for the duckdb engine, without collecting the valid rows: they
    are written under `folder` (the caller's, alive as long as it reads them). What is learned
    (fingerprint, row counts, quarantine) is kept on `run`, so a failure still records it."""
    schema, policies, salt = input_schema(spec, target_optional=target_optional)
    run.learned(ingest_engine="duckdb")
    _, schema = drop_at_ingest(pl.DataFrame(), schema, policies)
    dropped = [name for name, policy in policies.items() if policy == "drop"]
    rows, sha256, description = validate_on_disk(spec, files, schema, dropped, folder)
    run.learned(source=description, data_sha256=sha256, n_rows=rows.n_rows)
    checked = OnDisk(rows, mask_values(rows.quarantine, policies), policies, salt)
    run.learned(n_invalid=checked.n_invalid)
    run.quarantine = checked.quarantine
    get_run_logger().info(
        "validate: %d rows valid, %d quarantined (%.1f%%), kept on disk",
        rows.n_valid,
        checked.n_invalid,
        100 * checked.n_invalid / rows.n_rows,
    )
    counts = Validated(
        pl.DataFrame(), checked.quarantine, rows.n_rows, pl.Series([], dtype=pl.Int64)
    )
    enforce_invalid_limit(counts, spec.schema_.max_invalid_fraction)
    return checked


@steps.step(name="validate_on_disk")
def validate_on_disk(
    spec: Spec, files: list[Path], schema: pa.DataFrameSchema, drop: list[str], folder: Path
) -> tuple[out_of_core.OutOfCore, str, str]:
    """validate_out_of_core, with the valid rows left as Parquet under `folder`."""
    limit = out_of_core.memory_limit(spec.ingest.memory_limit)
    result = out_of_core.validate_into(folder, files, schema, limit=limit, drop=drop)
    get_run_logger().info(
        "ingest (duckdb, memory_limit %s): %d rows, %d valid", limit, result.n_rows, result.n_valid
    )
    return result, files_sha256(files), describe_files(files)

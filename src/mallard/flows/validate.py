"""The `validate` flow: ingest and schema validation only; the quarantine and a run record go
to the warehouse, nothing is trained. For checking a new extract before it is trusted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect import flow

from mallard.core.config import warehouse_path
from mallard.flows import user_error_logs
from mallard.flows.inputs import checked_input, input_files, load_checked_spec
from mallard.flows.publish import publish
from mallard.flows.run_record import recorded_run
from mallard.warehouse import RunBundle

user_error_logs.install()


@dataclass(frozen=True)
class ValidationResult:
    run_id: str
    n_rows: int
    n_invalid: int
    invalid_fraction: float
    failures: dict[str, int]  # "column: check" -> failing rows


@flow(name="validate")
def validate_data(
    spec_path: Path,
    input_path: str | None = None,
    warehouse_file: Path | None = None,
    run_id: str | None = None,
) -> ValidationResult:
    """Validate the spec's source (or `input_path`, a file or glob; the target may be absent)."""
    spec = load_checked_spec(Path(spec_path))
    db = warehouse_path(warehouse_file)
    files = None if input_path is None else input_files(input_path)
    with recorded_run(db, spec, "validate", run_id) as run:
        rows = checked_input(spec, run, files, target_optional=input_path is not None)
        run.commit(RunBundle(run=run.finished(), quarantine=rows.quarantine))
    publish(db, run.run_id, spec.pipeline.name, report=False)
    counts = rows.quarantine.group_by("column_name", "check_name").agg(
        rows=pl.col("row_index").n_unique()
    )
    return ValidationResult(
        run_id=run.run_id,
        n_rows=rows.n_rows,
        n_invalid=rows.n_invalid,
        invalid_fraction=rows.invalid_fraction,
        failures={
            f"{c}: {k}": int(n) for c, k, n in counts.sort("rows", descending=True).iter_rows()
        },
    )

"""The `validate` flow: ingest and schema validation only; the quarantine and a run record go
to the warehouse, nothing is trained. For checking a new extract before it is trusted."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger
from prefect.states import State

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.core.spec import Spec, load_spec
from mallard.flows import _quiet_user_errors
from mallard.flows._run import Progress, run_spec
from mallard.schemas.inline import build_schema, pii_policies
from mallard.tasks.ingest import ingest
from mallard.tasks.privacy import drop_at_ingest, protect_pii, require_salt
from mallard.tasks.validate import enforce_invalid_limit, validate
from mallard.warehouse import RunBundle

_quiet_user_errors.install()


@dataclass(frozen=True)
class ValidationResult:
    run_id: str
    n_rows: int
    n_invalid: int
    invalid_fraction: float
    failures: dict[str, int]  # "column: check" -> failing rows


@flow(name="validate", validate_parameters=False)
def validate_data(
    spec_path: Path,
    input_path: str | None = None,
    warehouse_file: Path | None = None,
    run_id: str | None = None,
) -> ValidationResult | State:
    """Validate the spec's source (or `input_path`, a file or glob; the target may be absent)."""
    return run_spec(
        "validate",
        lambda: load_spec(Path(spec_path)),
        warehouse_file,
        run_id,
        lambda spec, db, progress: _validate(spec, input_path, db, progress),
    )


def _validate(spec: Spec, input_path: str | None, db: Path, progress: Progress) -> ValidationResult:
    log = get_run_logger().info
    schema = build_schema(spec.schema_, spec.target, target_optional=input_path is not None)
    policies = pii_policies(schema)
    salt = require_salt(policies)
    if input_path is None:
        files, sql = spec.source_files(), spec.source.sql
    else:
        files, sql = sorted(Path(p) for p in glob.glob(input_path)), None
        if not files:
            raise InputError(f"no input file matches '{input_path}'")
    typed_columns = [name for name, column in schema.columns.items() if column.dtype is not None]
    raw = ingest(files, sql, db, typed_columns)
    progress.run = progress.run.with_data(
        source=raw.description, data_sha256=raw.sha256, n_rows=raw.frame.height
    )
    frame, schema = drop_at_ingest(raw.frame, schema, policies)
    checked = protect_pii(validate(frame, schema), policies, salt)
    progress.run = progress.run.with_data(n_invalid=checked.n_invalid)
    progress.quarantine = checked.quarantine
    log("validate: %d rows valid, %d quarantined", checked.valid.height, checked.n_invalid)
    enforce_invalid_limit(checked, spec.schema_.max_invalid_fraction)
    run = progress.run.finished("succeeded", datetime.now(UTC))
    warehouse.write_run(db, RunBundle(run=run, quarantine=checked.quarantine))
    counts = checked.quarantine.group_by("column_name", "check_name").agg(
        rows=pl.col("row_index").n_unique()
    )
    return ValidationResult(
        run_id=run.run_id,
        n_rows=checked.n_rows,
        n_invalid=checked.n_invalid,
        invalid_fraction=checked.invalid_fraction,
        failures={
            f"{c}: {k}": int(n) for c, k, n in counts.sort("rows", descending=True).iter_rows()
        },
    )

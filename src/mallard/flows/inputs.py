"""The preamble every flow shares: read the source, drop PII that is never read, validate
(quarantining failing rows), protect the remaining PII, and stop when too many rows failed."""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl
from prefect import get_run_logger

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.core.spec import Spec, load_spec, parse_spec
from mallard.flows import steps
from mallard.flows.out_of_core import ingest_engine, input_schema, validate_out_of_core
from mallard.flows.run_record import RecordedRun
from mallard.tasks import ingest
from mallard.tasks.privacy import drop_at_ingest
from mallard.tasks.validate import Validated, enforce_invalid_limit


def input_files(pattern: str) -> list[Path]:
    """The files a path or glob names, in name order; none is a user error."""
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise InputError(f"no input file matches '{pattern}'")
    return files


def checked_input(
    spec: Spec, run: RecordedRun, files: list[Path] | None = None, *, target_optional: bool = False
) -> Validated:
    """The spec's source (or `files`), validated against its schema; what was learned on the way
    (fingerprint, row counts, quarantine) is kept on `run` so a failure still records it."""
    log = get_run_logger().info
    schema, policies, salt = input_schema(spec, target_optional=target_optional)
    typed_columns = [name for name, column in schema.columns.items() if column.dtype is not None]
    engine = ingest_engine(spec, files)
    run.learned(ingest_engine=engine)
    if engine == "duckdb":  # out of core: [ingest] engine, or files above duckdb_above_mb
        _, schema = drop_at_ingest(pl.DataFrame(), schema, policies)
        dropped = [name for name, policy in policies.items() if policy == "drop"]
        paths = spec.source_files() if files is None else files
        validated, sha256, description = validate_out_of_core(spec, paths, schema, dropped)
        run.learned(source=description, data_sha256=sha256, n_rows=validated.n_rows)
    else:
        raw = read_source(spec, run.db, files, typed_columns)
        run.learned(source=raw.description, data_sha256=raw.sha256, n_rows=raw.frame.height)
        log("ingest: %d rows x %d columns from %s", *raw.frame.shape, raw.description)
        frame, schema = drop_at_ingest(raw.frame, schema, policies)
        validated = steps.quarantine_invalid(frame, schema)
    checked = steps.protect_pii(validated, policies, salt)
    run.learned(n_invalid=checked.n_invalid)
    run.quarantine = checked.quarantine
    log(
        "validate: %d rows valid, %d quarantined (%.1f%%)",
        checked.valid.height,
        checked.n_invalid,
        100 * checked.invalid_fraction,
    )
    enforce_invalid_limit(checked, spec.schema_.max_invalid_fraction)
    return checked


@steps.step(name="read_source")
def read_source(
    spec: Spec, db: Path, files: list[Path] | None, text_columns: list[str]
) -> ingest.Ingested:
    """Files (given, or the spec's source.path) or the spec's source.sql over the warehouse."""
    if files is None and spec.source.sql:
        frame: pl.DataFrame = warehouse.query_source(
            db, spec.source.sql, allowed_directories=[spec.spec_path.parent]
        )
        return ingest.from_query(frame, spec.source.sql)
    return ingest.read_files(spec.source_files() if files is None else files, text_columns)


def load_checked_spec(
    spec_path: Path, spec_toml: str | None = None, *, trains: bool = False
) -> Spec:
    """The spec file (or `spec_toml`, a stored run's text, read as if it were that file); for a
    flow that `trains`, with every candidate's family and parameters checked against the
    estimators (which imports scikit-learn: validate and score skip it)."""
    spec = load_spec(spec_path) if spec_toml is None else parse_spec(spec_toml, spec_path)
    if trains:
        from mallard.tasks.families import check_candidates

        check_candidates(spec)
    return spec

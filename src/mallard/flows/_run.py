"""Run bookkeeping shared by the flows: run ids, the run record, and how failures are kept."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import polars as pl
from prefect import get_run_logger
from prefect.states import Failed, State

from mallard import warehouse
from mallard.core.catalogue import greater_is_better
from mallard.core.config import warehouse_path
from mallard.core.errors import MallardError
from mallard.core.lineage import code_version, library_versions
from mallard.core.spec import Spec
from mallard.warehouse import RunBundle, RunRecord

T = TypeVar("T")
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def new_run_id(pipeline: str, flow: str = "train") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    prefix = pipeline if flow == "train" else f"{pipeline}-{flow}"
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:6]}"


class Progress:
    """What a run has learned so far, so a failure still records fingerprints and quarantine."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self.quarantine: pl.DataFrame | None = None

    def failed(self, error: str) -> RunBundle:
        run = self.run.finished("failed", datetime.now(UTC), error)
        return RunBundle(run=run, quarantine=self.quarantine)


def start_record(spec: Spec, run_id: str, flow: str) -> RunRecord:
    primary = spec.primary_metric
    return RunRecord(
        run_id=run_id,
        pipeline=spec.pipeline.name,
        task=spec.pipeline.task,
        status="running",
        started_at=datetime.now(UTC),
        spec_toml=spec.spec_toml,
        spec_sha256=spec.spec_sha256,
        spec_path=str(spec.spec_path),
        seed=spec.pipeline.seed,
        primary_metric=primary,
        greater_is_better=greater_is_better(primary),
        code_version=code_version(),
        versions=library_versions(),
        flow=flow,
    )


def run_spec(
    flow: str,
    load: Callable[[], Spec],
    warehouse_file: Path | None,
    run_id: str | None,
    body: Callable[[Spec, Path, Progress], T],
) -> T | State:
    """What every flow does around its body: load the spec (a bad spec ends the flow run Failed
    with its message, writing nothing), open the run record, then `guarded_run`."""
    try:
        spec = load()
    except MallardError as exc:
        get_run_logger().error(str(exc))
        return Failed(message=str(exc), data=exc)
    db = warehouse_path(warehouse_file)
    progress = Progress(start_record(spec, run_id or new_run_id(spec.pipeline.name, flow), flow))
    return guarded_run(db, progress, lambda: body(spec, db, progress), flow)


def guarded_run(db: Path, progress: Progress, body: Callable[[], T], what: str) -> T | State:
    """Run `body`; on a user error record the failed run (and its quarantine) and end the flow
    run Failed with the one-line message; on a bug record it too and re-raise."""
    logger = get_run_logger()
    try:
        warehouse.record_run_started(db, progress.run)
        logger.info("%s run %s started; warehouse %s", what, progress.run.run_id, db)
        return body()
    except MallardError as exc:
        logger.error(str(exc))
        _write_failure(db, progress, str(exc))
        return Failed(message=str(exc), data=exc)
    except Exception as exc:
        _write_failure(db, progress, f"internal error: {exc!r}")
        raise


def _write_failure(db: Path, progress: Progress, error: str) -> None:
    try:
        warehouse.write_run(db, progress.failed(error))
    except MallardError as exc:
        # The warehouse itself is the problem (e.g. locked): report the original error first.
        get_run_logger().warning("could not record the failed run: %s", exc)

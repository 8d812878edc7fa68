"""A run's record in ml.runs, from 'running' to one commit of everything it wrote.

`recorded_run` is the one transaction boundary of every flow: the body computes, then calls
`run.commit(bundle)` once. An error before the commit records the run as failed (with what it
learned so far: fingerprints, quarantine); nothing after the commit can undo it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext

from mallard import warehouse
from mallard.core.catalogue import greater_is_better
from mallard.core.errors import InputError, MallardError
from mallard.core.lineage import code_version, library_versions
from mallard.core.spec import Spec
from mallard.warehouse import RunBundle, RunRecord
from mallard.warehouse.reaper import this_process

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_run_id(pipeline: str, flow: str = "train") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    prefix = pipeline if flow == "train" else f"{pipeline}-{flow}"
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass
class RecordedRun:
    """What a run has learned so far, so a failure still records fingerprints and quarantine."""

    db: Path
    record: RunRecord
    quarantine: pl.DataFrame | None = None
    committed: bool = False
    replaces_succeeded: bool = False  # a rerun of a succeeded run: replace it only on success
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def learned(self, **fields: Any) -> None:
        self.record = self.record.with_data(**fields)

    def commit(self, bundle: RunBundle) -> None:
        """Write the whole run (status succeeded) in one transaction."""
        if self.committed:
            raise RuntimeError(f"run {self.run_id} was already committed")
        warehouse.write_run(self.db, bundle)
        self.committed = True

    def finished(self) -> RunRecord:
        return self.record.finished("succeeded", datetime.now(UTC))


def start_record(spec: Spec, run_id: str, flow: str) -> RunRecord:
    primary = spec.primary_metric
    owner = this_process()  # so a later command can tell this run died (warehouse/reaper.py)
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
        pid=owner.pid,
        hostname=owner.hostname,
        process_started_at=owner.started_at,
    )


@contextmanager
def recorded_run(
    db: Path, spec: Spec, flow: str, run_id: str | None = None
) -> Iterator[RecordedRun]:
    """Open the run record ('running'), yield it to the body, and on an error before the commit
    record the failure. A reused run id must belong to the same pipeline and flow."""
    logger = get_run_logger()
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise InputError(
            f"--run-id {run_id[:80]!r} is not a run id: use letters, digits and . _ : - "
            "(at most 128 characters)"
        )
    run = RecordedRun(db, start_record(spec, run_id or new_run_id(spec.pipeline.name, flow), flow))
    earlier = warehouse.run_record(db, run.run_id) if run_id and db.exists() else None
    if earlier is not None:
        _check_reuse(earlier, run.record)
        run.replaces_succeeded = earlier["status"] == "succeeded"
    if not run.replaces_succeeded:
        warehouse.record_run_started(db, run.record)
    logger.info("%s run %s started; warehouse %s", flow, run.run_id, db)
    labels = run_tags(run.record)
    _label_prefect_run(run.record, labels)
    try:
        # The flow run carries the tags, its task runs none: Prefect asks the API for tag
        # concurrency slots (acquire + release) around every tagged task run, ~0.2-0.4 s each.
        yield run
    except MallardError as exc:
        logger.error(str(exc))
        _record_failure(run, str(exc))
        raise
    except BaseException as exc:
        _record_failure(run, f"internal error: {exc!r}")
        raise
    if not run.committed:
        raise RuntimeError(f"the {flow} flow ended without committing run {run.run_id}")


def run_tags(record: RunRecord) -> list[str]:
    """Prefect tags of a run: mallard, the pipeline, the flow and the task kind."""
    return ["mallard", record.pipeline, record.flow, record.task]


def flow_run_name(record: RunRecord) -> str:
    """The Prefect flow-run name: the run id, which starts with the pipeline name (a reused
    --run-id that does not gets the pipeline in front)."""
    if record.run_id.startswith(f"{record.pipeline}-"):
        return record.run_id
    return f"{record.pipeline}-{record.run_id}"


def _label_prefect_run(record: RunRecord, labels: list[str]) -> None:
    """Rename the current Prefect flow run after the mallard run and tag it, so the Runs list
    of the UI tells pipelines and runs apart (the run id is known only once the flow started)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    flow_run = context.flow_run
    if not isinstance(context.client, SyncPrefectClient):  # mallard's flows are sync
        return
    try:
        context.client.update_flow_run(
            flow_run.id,
            name=flow_run_name(record),
            tags=sorted({*flow_run.tags, *labels}),
        )
    except Exception as exc:  # naming is a convenience: never fail the run for it
        get_run_logger().warning("could not rename the Prefect flow run: %r", exc)


def _check_reuse(earlier: dict[str, Any], record: RunRecord) -> None:
    if (earlier["pipeline"], earlier["flow"]) != (record.pipeline, record.flow):
        raise InputError(
            f"--run-id {record.run_id} is a {earlier['flow']} run of pipeline "
            f"'{earlier['pipeline']}'; a run id can only be reused by the same pipeline and "
            f"flow ({record.flow} of '{record.pipeline}'): leave --run-id out for a new run"
        )


def _record_failure(run: RecordedRun, error: str) -> None:
    if run.committed:
        return
    logger = get_run_logger()
    if run.replaces_succeeded:
        logger.warning(
            "the rerun failed; the earlier succeeded run %s is kept as it was", run.run_id
        )
        return
    failed = run.record.finished("failed", datetime.now(UTC), error)
    try:
        warehouse.write_run(run.db, RunBundle(run=failed, quarantine=run.quarantine))
    except MallardError as exc:
        # The warehouse itself is the problem (e.g. locked): the original error is reported.
        logger.warning("could not record the failed run: %s", exc)

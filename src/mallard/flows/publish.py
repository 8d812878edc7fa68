"""After a run is committed: render its HTML report into ml.reports, publish the Prefect
artifact, and refresh the analysts' read copy (a file they can hold open without blocking a
pipeline). Publishing can only warn: it never rolls back, rewrites
or deletes a committed run, and `mallard report RUN_ID` can always render the report again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from mallard import warehouse
from mallard.flows.steps import step


def publish(db: Path, run_id: str, pipeline: str, *, report: bool = True) -> list[str]:
    """Publish what derives from a committed run; returns the warnings (also logged)."""
    warnings = []
    if report:
        try:
            publish_report(db, run_id, pipeline)
        except Exception as exc:  # any failure here must leave the committed run alone
            warnings.append(f"the report of run {run_id} was not published: {exc}")
    try:
        copy = warehouse.publish_read_copy(db)
        get_run_logger().info("read copy for analysts: %s", copy)
    except warehouse.ReadCopyError as exc:
        warnings.append(str(exc))
    for warning in warnings:
        get_run_logger().warning(warning)
    return warnings


@step(name="publish_report")
def publish_report(db: Path, run_id: str, pipeline: str) -> None:
    from mallard.report import markdown_summary, render_report

    html = render_report(db, run_id)
    warehouse.write_report(
        db, run_id, pl.DataFrame({"created_at": [datetime.now(UTC)], "html": [html]})
    )
    key = artifact_key(pipeline)
    create_markdown_artifact(
        key=key,
        markdown=markdown_summary(db, run_id)
        + f"\n\nFull report: `mallard report {run_id} -o report.html`",
        description=f"mallard run {run_id}",
    )
    get_run_logger().info(
        "report: %d KB of HTML in ml.reports; artifact '%s'", len(html) // 1024, key
    )


def artifact_key(pipeline: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    cleaned = "".join(c if c.isalnum() else "-" for c in pipeline.lower())
    return f"mallard-{cleaned}-report"

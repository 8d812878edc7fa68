"""After a run is written: render its HTML report into ml.reports and publish a Prefect
artifact. A second, small transaction: the report is derived from the run's committed rows, and
`mallard report RUN_ID` can always render it again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prefect.artifacts import create_markdown_artifact

from mallard import warehouse


def publish_report(db: Path, run_id: str, pipeline: str, log: Callable[..., None]) -> None:
    from mallard.report import markdown_summary, render_report

    html = render_report(db, run_id)
    warehouse.write_report(
        db, run_id, pl.DataFrame({"created_at": [datetime.now(UTC)], "html": [html]})
    )
    create_markdown_artifact(
        key=_artifact_key(pipeline),
        markdown=markdown_summary(db, run_id)
        + f"\n\nFull report: `mallard report {run_id} -o report.html`",
        description=f"mallard run {run_id}",
    )
    log(
        "report: %d KB of HTML in ml.reports; summary artifact '%s'",
        len(html) // 1024,
        _artifact_key(pipeline),
    )


def _artifact_key(pipeline: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    cleaned = "".join(c if c.isalnum() else "-" for c in pipeline.lower())
    return f"mallard-{cleaned}-report"

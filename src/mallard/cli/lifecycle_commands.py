"""Model lifecycle commands: validate, score, promote, show, repro, report, serve."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mallard.cli.app import app
from mallard.cli.output import (
    WarehouseOption,
    checked_spec,
    console,
    errors,
    print_frame,
    run_flow,
    user_errors,
)
from mallard.core.errors import InputError

if TYPE_CHECKING:
    from mallard.flows.score import ScoreResult

EXIT_NOT_REPRODUCED = 4
STATUS_STYLE = {"stable": "green", "watch": "yellow", "shifted": "bold red"}


@app.command()
@user_errors
def score(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (TOML)")],
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="CSV/Parquet file or glob")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also write the scored rows here (.csv or .parquet): row_index (and the spec's "
            "source.id column), then prediction, label and probability_<class>, or cluster",
        ),
    ] = None,
    warehouse: WarehouseOption = None,
    run_id: Annotated[str | None, typer.Option(help="Reuse a run id")] = None,
) -> None:
    """Score new rows with the pipeline's champion; store predictions and drift."""
    checked_spec(spec, flow_run_follows=True, trains=False)
    from mallard.flows.inputs import input_files
    from mallard.flows.score import check_output
    from mallard.flows.score import score as score_flow

    if output is not None:  # cheap checks first: before a flow run is recorded
        check_output(output)
    input_files(input_path)
    result = run_flow(
        score_flow,
        spec_path=spec,
        input_path=input_path,
        warehouse_file=warehouse,
        output=output,
        run_id=run_id,
    )
    _print_score(result)


@app.command()
@user_errors
def validate(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (TOML)")],
    input_path: Annotated[
        str | None,
        typer.Argument(metavar="[INPUT]", help="File or glob [default: the spec's source]"),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Validate data against the spec's schema; store the quarantine, train nothing (exit 3 if
    too many rows fail)."""
    checked_spec(spec, flow_run_follows=True, trains=False)
    from mallard.flows.validate import validate_data

    result = run_flow(
        validate_data, spec_path=spec, input_path=input_path, warehouse_file=warehouse
    )
    console.print(
        f"validate run [bold]{result.run_id}[/]: {result.n_rows} rows, {result.n_invalid} "
        f"quarantined ({result.invalid_fraction:.1%})"
    )
    for failure, rows in result.failures.items():
        console.print(f"  {escape(failure)}: {rows} rows")


@app.command()
@user_errors
def promote(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name")],
    model_id: Annotated[str, typer.Argument(help="Model to make champion (see ml.models)")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail")] = "manual promotion",
    warehouse: WarehouseOption = None,
) -> None:
    """Make a model the pipeline's champion (also how to roll back), in one transaction."""
    from datetime import UTC, datetime

    from mallard import warehouse as wh
    from mallard.core.config import warehouse_path
    from mallard.tasks.promote import manual_decision, promotion_rows

    db = warehouse_path(warehouse)
    chosen = wh.model(db, model_id)
    if chosen is None or chosen["pipeline"] != pipeline:
        raise InputError(f"no model '{model_id}' of pipeline '{pipeline}' in {db} (see ml.models)")
    current = wh.champion(db, pipeline)
    current_id = None if current is None else str(current["model_id"])
    if current_id == model_id:
        console.print(f"{model_id} is already the champion of {pipeline}; nothing changed")
        return
    decision = manual_decision(pipeline, model_id, current_id, reason)
    promotions, aliases = promotion_rows(decision, datetime.now(UTC), set_by=getpass.getuser())
    wh.write_promotion(db, promotions, aliases)
    console.print(f"champion of [bold]{pipeline}[/] is now {model_id} (was {current_id or 'none'})")
    try:
        wh.publish_read_copy(db)
    except wh.ReadCopyError as exc:
        errors.print(f"[yellow]warning:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (see `mallard runs`)")],
    warehouse: WarehouseOption = None,
) -> None:
    """A run's lineage: data fingerprint, spec hash, code version, seed, versions, models."""
    from mallard import warehouse as wh
    from mallard.core.config import warehouse_path

    db = warehouse_path(warehouse)
    run = wh.run_record(db, run_id)
    if run is None:
        raise InputError(f"no run '{run_id}' in {db} (see `mallard runs`)")
    for key in (
        "run_id",
        "pipeline",
        "flow",
        "status",
        "started_at",
        "finished_at",
        "spec_path",
        "spec_sha256",
        "source",
        "data_sha256",
        "n_rows",
        "n_invalid",
        "seed",
        "primary_metric",
        "code_version",
        "model_id",
        "error",
    ):
        if run.get(key) is not None:
            console.print(f"[bold]{key}[/]: {escape(str(run[key]))}")
    versions = json.loads(str(run["versions"] or "{}"))
    console.print("[bold]versions[/]: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    models = wh.run_models(db, run_id)
    if not models.is_empty():
        print_frame(models, title="models")
    decisions = wh.query_params(
        db, "SELECT model_id, promoted, reason FROM ml.promotions WHERE run_id = ?", [run_id]
    )
    if not decisions.is_empty():
        print_frame(decisions, title="promotion")


@app.command()
@user_errors
def repro(
    run_id: Annotated[str, typer.Argument(help="Run id to re-run")],
    warehouse: WarehouseOption = None,
) -> None:
    """Re-run a train run from its stored spec and data; report whether metrics and model bytes
    are identical (exit 4 if they are not)."""
    from mallard import warehouse as wh
    from mallard.core.config import warehouse_path
    from mallard.flows.train import train

    db = warehouse_path(warehouse)
    original = wh.run_record(db, run_id)
    if original is None or original["flow"] != "train":
        raise InputError(f"no train run '{run_id}' in {db} (see `mallard runs`)")
    rerun = run_flow(
        train,
        spec_path=Path(original["spec_path"]),
        warehouse_file=db,
        spec_toml=original["spec_toml"],
        may_promote=False,
    )
    comparison = wh.compare_runs(db, run_id, rerun.run_id)
    print_frame(comparison, title=f"{run_id} vs {rerun.run_id}")
    if comparison["identical"].all():
        console.print("[green]reproduced[/]: same data, metrics and model bytes")
        return
    console.print("[bold red]not reproduced[/]: see the rows marked false above")
    raise typer.Exit(EXIT_NOT_REPRODUCED)


@app.command()
@user_errors
def report(
    run_id: Annotated[str, typer.Argument(help="Run id (see `mallard runs`)")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file [default: RUN_ID.html]")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write a run's self-contained HTML report (plots inline; opens with no network)."""
    from mallard.cli.paths import output_file, write_text
    from mallard.core.config import warehouse_path
    from mallard.report import render_report

    target = output_file(output or Path(f"{run_id.replace(':', '_')}.html"), "--output")
    html = render_report(warehouse_path(warehouse), run_id)
    write_text(target, html, "the report")
    console.print(f"report of {run_id}: {target} ({len(html) // 1024} KB)")


@app.command()
@user_errors
def serve(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec with a [schedule] section")],
    warehouse: WarehouseOption = None,
) -> None:
    """Register the spec's cron schedules as Prefect deployments and run them until stopped."""
    from mallard.cli.prefect_api import prefect_api
    from mallard.core.config import warehouse_path
    from mallard.flows.serve import deployments, serve_deployments

    loaded = checked_spec(spec)
    planned = deployments(loaded, warehouse_path(warehouse).resolve())
    if not planned:
        raise InputError(f"{spec}: [schedule] has no train or score cron to serve")
    with prefect_api() as api:
        where = api or "Prefect's temporary server (PREFECT_SERVER_EPHEMERAL_ENABLED=true)"
        console.print(f"serving {len(planned)} deployment(s) on {where}:")
        for deployment in planned:
            crons = ", ".join(str(s.schedule.cron) for s in deployment.schedules or [])  # type: ignore[union-attr]
            console.print(f"  {deployment.flow_name}/{deployment.name}: {crons}")
        serve_deployments(planned)


def _print_score(result: ScoreResult) -> None:
    console.print(
        f"score run [bold]{result.run_id}[/]: {result.n_scored} of {result.n_rows} rows scored "
        f"by {escape(result.model_id)}, {result.n_invalid} quarantined"
        + (f"; scored rows in {escape(str(result.output))}" if result.output else "")
    )
    if result.positive_class is not None:
        threshold = result.decision_threshold
        at = "> 0.5" if threshold is None else f">= {threshold:.3g} (the tuned threshold)"
        console.print(f"labels: {escape(repr(result.positive_class))} where its probability {at}")
    import polars as pl

    styled = result.drift.sort("psi", descending=True).with_columns(
        pl.col("status").map_elements(
            lambda s: f"[{STATUS_STYLE.get(s, '')}]{s}[/]", return_dtype=pl.String
        )
    )
    print_frame(styled, title="drift (population stability index)", markup=True)

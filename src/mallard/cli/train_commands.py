"""Commands that train and read results: run, demo, runs, leaderboard, sql."""

from __future__ import annotations

from enum import StrEnum
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
    import polars as pl

    from mallard.flows.train import RunResult


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (TOML)")],
    warehouse: WarehouseOption = None,
    run_id: Annotated[
        str | None, typer.Option(help="Reuse a run id: its stored rows are replaced")
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            envvar="MALLARD_DASK_ADDRESS",
            metavar="tcp://HOST:PORT",
            help="Run the candidate searches on this Dask scheduler (needs mallard[dask]); "
            "without it, the spec's [train] dask if set",
        ),
    ] = None,
) -> None:
    """Run the train flow of a pipeline spec and print its leaderboard."""

    checked_spec(spec, flow_run_follows=True)
    _print_result(_train(spec, warehouse, run_id, dask))


@app.command()
@user_errors
def demo(
    example: Annotated[
        str, typer.Option(help="housing (regression) | fraud (classification) | segments")
    ] = "housing",
    rows: Annotated[
        int | None, typer.Option(min=100, help="Rows to generate [default: per example]")
    ] = None,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's data and spec are written")
    ] = Path("mallard-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the data generator")] = 42,
    warehouse: WarehouseOption = None,
) -> None:
    """Generate seeded example data (with a few bad rows) and new rows to score, write its
    shipped spec, and run the pipeline."""
    from mallard.examples import EXAMPLES, write_example

    if example not in EXAMPLES:
        raise InputError(f"unknown example '{example}'; choose one of {', '.join(EXAMPLES)}")
    chosen = EXAMPLES[example]
    spec = write_example(example, directory, rows, seed)
    new = directory / chosen.new_data
    console.print(
        f"demo: {rows or chosen.rows} generated {example} rows, spec [bold]{escape(str(spec))}[/]"
    )
    console.print(f"demo: {chosen.new_rows} new rows to score in {escape(str(new))}")
    if chosen.scheduled:
        console.print(f"demo: scheduled spec in {escape(str(directory / chosen.scheduled))}")
    _print_result(_train(spec, warehouse, None))
    console.print(f"next: mallard score {escape(str(spec))} {escape(str(new))} -o scored.parquet")


class Flow(StrEnum):
    train = "train"
    score = "score"


class RunStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"  # its process died; the next writer marked it (warehouse/reaper)


@app.command()
@user_errors
def runs(
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs")] = 20,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline's runs")
    ] = None,
    flow: Annotated[Flow | None, typer.Option(help="Only train or score runs")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this state")] = None,
) -> None:
    """List recent runs, newest first (of one pipeline, flow or state with the options)."""
    import polars as pl

    from mallard import warehouse as wh
    from mallard.core.config import warehouse_path

    db = warehouse_path(warehouse)
    recent = wh.runs(
        db,
        limit,
        pipeline=pipeline,
        flow=None if flow is None else flow.value,
        status=None if status is None else status.value,
    )
    if recent.is_empty():
        known = wh.pipelines(db)
        if pipeline is not None and pipeline not in known:
            raise InputError(
                f"no pipeline '{pipeline}' in {db}; its runs are of: {', '.join(known) or 'none'}"
            )
        console.print("no runs match" if known else f"no runs yet in {db}")
        return
    # Compact enough for an 80-column terminal: run ids whole, one cell per idea.
    shown = recent.select(
        "run_id",
        pl.format("{} {}", "flow", "status").alias("run"),
        pl.col("started").str.slice(5, 11).alias("started"),
        pl.format("{}/{}", pl.col("n_invalid").fill_null(0), pl.col("n_rows").fill_null(0)).alias(
            "bad/rows"
        ),
        pl.when(pl.col("best_value").is_not_null())
        .then(
            pl.format(
                "{} {}{}{}",
                "metric",
                _number("best_value"),
                # half the test split's bootstrap 95 % interval, where the run has one
                pl.when(pl.col("best_half_width").is_not_null())
                .then(pl.format(" ±{}", _number("best_half_width")))
                .otherwise(pl.lit("")),
                pl.when(pl.col("promoted")).then(pl.lit(" *")).otherwise(pl.lit("")),
            )
        )
        .alias("best"),
        pl.col("error").str.slice(0, 80).alias("error"),
    )
    if shown["error"].is_null().all():
        shown = shown.drop("error")
    print_frame(shown, title="runs", whole=("run_id",))
    if recent["promoted"].fill_null(False).any():
        console.print(
            "best: the run's chosen model on its primary metric (test split, ± half its "
            "95 % interval); * promoted to champion",
            highlight=False,
        )


@app.command()
@user_errors
def leaderboard(
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline name")] = None,
    run_id: Annotated[str | None, typer.Option(help="A specific run instead of the latest")] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Show this metric instead (the rank stays the primary metric's)"),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Rank the models of a pipeline's latest succeeded run on its primary metric (test split)."""
    from mallard import warehouse as wh
    from mallard.core.config import warehouse_path

    db = warehouse_path(warehouse)
    board = wh.leaderboard(db, pipeline, run_id)
    if board.is_empty():
        what = f"pipeline '{pipeline}'" if pipeline else "any pipeline"
        raise InputError(f"no succeeded run of {what} in the warehouse") from None
    title = f"leaderboard: {board['pipeline'][0]} run {board['run_id'][0]}"
    if metric is None or metric == board["metric"][0]:
        _print_leaderboard(board, title=title)
        return
    shown = wh.run_metric(db, board["run_id"][0], metric)
    if shown.is_empty():
        known = ", ".join(wh.run_metrics(db, board["run_id"][0])) or "none"
        raise InputError(
            f"--metric: run {board['run_id'][0]} has no test figure of '{metric}'; it has: {known}"
        )
    _print_other_metric(board, shown, metric, title)


@app.command()
@user_errors
def sql(
    query: Annotated[str, typer.Argument(help='SQL, e.g. "SELECT * FROM leaderboard"')],
    warehouse: WarehouseOption = None,
    output: Annotated[str, typer.Option("--format", help="table | csv | json | parquet")] = "table",
    to: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write csv/json/parquet to this file"),
    ] = None,
    max_rows: Annotated[int, typer.Option(min=1, help="Rows a table shows")] = 40,
) -> None:
    """Run a read-only SQL query against the warehouse; schema ml is the default, so
    SHOW TABLES lists mallard's tables. BLOBs show as their size."""
    from mallard.cli.sql_output import check_format, print_query
    from mallard.core.config import warehouse_path

    check_format(output, to)
    print_query(warehouse_path(warehouse), query, output, to, max_rows)


@app.command()
@user_errors
def snapshot(
    target: Annotated[
        Path | None, typer.Argument(help="The DuckDB copy to write, e.g. bi.duckdb")
    ] = None,
    parquet: Annotated[
        Path | None,
        typer.Option(help="Also (or instead) export every table as Parquet into this folder"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing copy or folder")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Copy the warehouse for BI tools and long reads (they then never lock the live file).
    The copy opens in DuckDB 1.4+ and 2.x clients."""
    from mallard.cli.paths import output_file, output_folder
    from mallard.core.config import warehouse_path
    from mallard.warehouse.snapshot import export_parquet
    from mallard.warehouse.snapshot import snapshot as copy_warehouse

    if target is None and parquet is None:
        raise InputError("name a copy to write (e.g. bi.duckdb), or --parquet DIR")
    if target is not None:
        output_file(target, "the snapshot")
    if parquet is not None:
        output_folder(parquet, "--parquet")
    db = warehouse_path(warehouse)
    if target is not None:
        tables = copy_warehouse(db, target, overwrite=force)
        console.print(
            f"snapshot: {tables} tables copied to {target} "
            f"(open it read-only, e.g. duckdb -readonly {target})",
            highlight=False,
            markup=False,
        )
    if parquet is not None:
        tables = export_parquet(db, parquet, overwrite=force)
        console.print(
            f"snapshot: {tables} tables exported as Parquet to {parquet} "
            f"(IMPORT DATABASE '{parquet}' recreates them, views included)",
            highlight=False,
            markup=False,
        )


def _train(
    spec: Path, warehouse: Path | None, run_id: str | None, dask: str | None = None
) -> RunResult:
    from mallard.flows.runners import check_reachable
    from mallard.flows.train import train

    if dask:
        check_reachable(dask)  # a wrong address fails here, before a flow run is recorded
    return run_flow(
        train, spec_path=spec, warehouse_file=warehouse, run_id=run_id, dask_address=dask
    )


def _print_result(result: RunResult) -> None:
    from mallard import warehouse as wh

    verdict = "promoted to champion" if result.promoted else "not promoted"
    console.print(
        f"run [bold]{result.run_id}[/]: {result.n_rows} rows, {result.n_invalid} quarantined; "
        f"warehouse {result.warehouse}\n"
        f"chosen: {result.best_model_id}, {verdict} "
        f"({escape(result.promotion_reason)})"
    )

    console.print(f"read copy for analysts: {wh.read_copy_path(result.warehouse)}")
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    board = wh.leaderboard(result.warehouse, run_id=result.run_id)
    _print_leaderboard(board, title=f"leaderboard: {result.pipeline}")


def _print_leaderboard(board: pl.DataFrame, title: str) -> None:
    """Rank, candidate (with its family where the name does not say it) and the primary
    metric: on test with its bootstrap 95 % interval, and the selection CV (train + validation
    rows, what the rank is on) as mean ± std; sized for an 80-column terminal. Clustering has
    one number per model, on all rows."""
    import polars as pl

    metric = board["metric"][0]
    held_out = board["validation_value"].is_not_null().any()
    columns = [pl.col("rank"), _model_cell()]
    if not held_out:
        print_frame(board.select(*columns, _number("value").alias(metric)), title=title)
        return
    columns.append(
        pl.format("{} [{}, {}]", *(_number(c) for c in ("value", "value_low", "value_high"))).alias(
            f"test {metric} [95% CI]"
        )
    )
    if board["selection_value"].is_not_null().any():
        columns.append(
            pl.format("{} ± {}", _number("selection_value"), _number("selection_std")).alias(
                f"cv {metric} (ranked)"
            )
        )
    else:  # runs from before the selection CV were ranked on validation
        columns.append(_number("validation_value").alias(f"validation {metric} (ranked)"))
    print_frame(board.select(columns), title=title)


def _print_other_metric(board: pl.DataFrame, shown: pl.DataFrame, metric: str, title: str) -> None:
    """`metric` beside the rank of the primary one: on test with its 95 % interval, and the
    tuning CV's mean ± std."""
    import polars as pl

    rows = board.select("rank", "model_id", "family").join(shown, on="model_id", how="left")
    print_frame(
        rows.select(
            pl.col("rank"),
            _model_cell(),
            pl.format(
                "{} [{}, {}]", *(_number(c) for c in ("value", "value_low", "value_high"))
            ).alias(f"test {metric} [95% CI]"),
            pl.format("{} ± {}", _number("cv_value"), _number("cv_std")).alias(f"cv {metric}"),
        ),
        title=f"{title} (ranked on {board['metric'][0]})",
    )


def _model_cell() -> pl.Expr:
    """The candidate's name, with its family where the name does not say it."""
    import polars as pl

    candidate = pl.col("model_id").str.split(":").list.last()
    return (
        pl.when(candidate == pl.col("family"))
        .then(candidate)
        .otherwise(pl.format("{} ({})", candidate, "family"))
        .alias("model")
    )


def _number(column: str) -> pl.Expr:
    """A metric as short text: 4 significant figures, thousands grouped from 1,000 on
    (10,670 rather than 1.067e+04), '—' when missing."""
    import polars as pl

    from mallard.core.figures import MISSING, figure

    return pl.col(column).map_elements(figure, return_dtype=pl.String).fill_null(MISSING)

"""The `mallard` command line. Heavy libraries are imported inside commands so --help is fast."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mallard.config import WAREHOUSE_ENV
from mallard.errors import MallardError

if TYPE_CHECKING:
    import polars as pl

    from mallard.flows.train import RunResult

app = typer.Typer(
    name="mallard",
    help="Validated, cross-validated models from a file or SQL query, kept in a DuckDB warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_OK, EXIT_INTERNAL = 0, 1
WarehouseOption = Annotated[
    Path | None,
    typer.Option(
        "--warehouse", "-w", envvar=WAREHOUSE_ENV, help="DuckDB file [default: ./warehouse.duckdb]"
    ),
]
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Turn a MallardError into one red line and its exit code; anything else is a bug (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MallardError as exc:
            errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("MALLARD_DEBUG"):
                raise
            errors.print(
                f"[bold red]internal error:[/] {escape(repr(exc))}\n"
                "This is a bug in mallard; rerun with MALLARD_DEBUG=1 for the traceback.",
                highlight=False,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (TOML)")],
    warehouse: WarehouseOption = None,
    run_id: Annotated[
        str | None, typer.Option(help="Reuse a run id: its stored rows are replaced")
    ] = None,
) -> None:
    """Run the train flow of a pipeline spec and print its leaderboard."""
    from mallard.spec import load_spec

    load_spec(spec)  # a bad spec fails here, before a Prefect server is started
    _print_result(_train(spec, warehouse, run_id))


@app.command()
@user_errors
def demo(
    rows: Annotated[int, typer.Option(min=100, help="Rows of housing data to generate")] = 2000,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's data and spec are written")
    ] = Path("mallard-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the data generator")] = 42,
    warehouse: WarehouseOption = None,
) -> None:
    """Generate seeded housing data (with a few bad rows) and run the housing pipeline on it."""
    from mallard.examples import HOUSING_SPEC, spec_text, write_housing_csv

    data = write_housing_csv(directory / "data" / "housing.csv", rows, seed)
    spec = directory / HOUSING_SPEC
    spec.write_text(spec_text(HOUSING_SPEC), encoding="utf-8")
    console.print(f"demo: {rows} housing rows in [bold]{data}[/], spec [bold]{spec}[/]")
    _print_result(_train(spec, warehouse, None))


@app.command()
@user_errors
def runs(
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs")] = 20,
) -> None:
    """List recent runs, newest first."""
    from mallard import warehouse as wh
    from mallard.config import warehouse_path

    _print_frame(wh.runs(warehouse_path(warehouse), limit), title="runs")


@app.command()
@user_errors
def leaderboard(
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline name")] = None,
    run_id: Annotated[str | None, typer.Option(help="A specific run instead of the latest")] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Rank the models of a pipeline's latest succeeded run on its primary metric (test split)."""
    from mallard import warehouse as wh
    from mallard.config import warehouse_path

    board = wh.leaderboard(warehouse_path(warehouse), pipeline, run_id)
    if board.is_empty():
        what = f"pipeline '{pipeline}'" if pipeline else "any pipeline"
        raise MallardError(f"no succeeded run of {what} in the warehouse") from None
    _print_leaderboard(board, title=f"leaderboard: {board['pipeline'][0]} run {board['run_id'][0]}")


@app.command()
@user_errors
def sql(
    query: Annotated[str, typer.Argument(help='SQL, e.g. "SELECT * FROM ml.leaderboard"')],
    warehouse: WarehouseOption = None,
    output: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run a read-only SQL query against the warehouse."""
    from mallard import warehouse as wh
    from mallard.config import warehouse_path

    frame = wh.query(warehouse_path(warehouse), query)
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        _print_frame(frame)


def _train(spec: Path, warehouse: Path | None, run_id: str | None) -> RunResult:
    from mallard.config import configure_prefect_environment

    configure_prefect_environment()
    from mallard.flows.train import RunResult, train

    state = train(spec, warehouse, run_id, return_state=True)
    if state.is_failed():
        failure = state.result(raise_on_failure=False)
        if isinstance(failure, BaseException):
            raise failure
        raise MallardError(state.message or "the train flow failed")
    result = state.result()
    if not isinstance(result, RunResult):
        raise MallardError(f"the train flow returned {type(result).__name__}, not a run result")
    return result


def _print_result(result: RunResult) -> None:
    console.print(
        f"run [bold]{result.run_id}[/]: {result.n_rows} rows, {result.n_invalid} quarantined; "
        f"warehouse {result.warehouse}"
    )
    from mallard import warehouse as wh

    board = wh.leaderboard(result.warehouse, run_id=result.run_id)
    _print_leaderboard(board, title=f"leaderboard: {result.pipeline}")


def _print_leaderboard(board: pl.DataFrame, title: str) -> None:
    """Rank, candidate name and the primary metric on test, validation and CV."""
    import polars as pl

    metric = board["metric"][0]
    shown = board.select(
        "rank",
        pl.col("model_id").str.split(":").list.last().alias("model"),
        "family",
        pl.col("value").alias(f"test {metric}"),
        pl.col("validation_value").alias(f"validation {metric}"),
        pl.col("cv_value").alias(f"cv {metric}"),
    )
    _print_frame(shown, title=title)


def _print_frame(frame: pl.DataFrame, title: str | None = None) -> None:
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(escape(_cell(value)) for value in row))
    console.print(table)
    if frame.is_empty():
        console.print("(no rows)")


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""What every command shares: the consoles, the error-to-exit-code wrapper, table printing."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mallard.core.config import WAREHOUSE_ENV
from mallard.core.errors import MallardError
from mallard.core.figures import figure

if TYPE_CHECKING:
    import polars as pl

    from mallard.core.spec import Spec

console = Console()
errors = Console(stderr=True)

EXIT_INTERNAL = 1
WarehouseOption = Annotated[
    Path | None,
    typer.Option(
        "--warehouse", "-w", envvar=WAREHOUSE_ENV, help="DuckDB file [default: ./warehouse.duckdb]"
    ),
]
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


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


def print_frame(
    frame: pl.DataFrame,
    title: str | None = None,
    markup: bool = False,
    whole: tuple[str, ...] = (),
) -> None:
    """A frame as a rich table; cells are escaped unless `markup` says they carry styling;
    `whole` columns never wrap (ids a user copies); binary cells show their size, not bytes
    (mallard sql draws query results with DuckDB's renderer instead, see cli/sql_output.py)."""
    import polars as pl

    binary = [name for name, kind in frame.schema.items() if kind == pl.Binary]
    if binary:
        frame = frame.with_columns(
            pl.format("<blob {} bytes>", pl.col(name).bin.size()).alias(name) for name in binary
        )
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(name, overflow="fold", no_wrap=name in whole)
    for row in frame.iter_rows():
        table.add_row(*(cell_text(v) if markup else escape(cell_text(v)) for v in row))
    console.print(table)
    if frame.is_empty():
        console.print("(no rows)")


def cell_text(value: object) -> str:
    if value is None or isinstance(value, float):
        return figure(value)
    return str(value)


def run_flow(flow: Callable[..., R], **parameters: Any) -> R:
    """Run a Prefect flow by keyword; a user error inside it is re-raised as its MallardError
    (the flow run is recorded as Failed with the same one-line message).

    Paths are made absolute first (the warehouse too), so the parameters Prefect stores work
    from any folder, e.g. a retry from the UI. The flow reports to `prefect_api()`'s server."""
    from mallard.cli.prefect_api import prefect_api
    from mallard.core.config import warehouse_path

    if "warehouse_file" in parameters:
        parameters["warehouse_file"] = warehouse_path(parameters["warehouse_file"])
    for key, value in parameters.items():
        if isinstance(value, Path):
            parameters[key] = value.absolute()
        elif key == "input_path" and isinstance(value, str):  # a file or glob
            parameters[key] = os.path.abspath(value)
    with prefect_api():
        return flow(**parameters)


def checked_spec(path: Path, flow_run_follows: bool = False, *, trains: bool = True) -> Spec:
    """Load the spec and check what needs no data (the PII salt; the candidates' parameters for
    a command that `trains`), so a mistake fails here, before the warehouse is touched. With
    `flow_run_follows`, a spec that parses starts the local Prefect server booting meanwhile
    (the checks below import pandera, and scikit-learn for the candidates)."""
    from mallard.core.spec import load_spec

    spec = load_spec(path)
    if flow_run_follows:
        from mallard.cli.prefect_api import start_server_early

        start_server_early()
    from mallard.schemas.inline import build_schema, pii_policies
    from mallard.tasks.privacy import require_salt

    if trains:  # validate and score never fit a candidate: they skip importing scikit-learn
        from mallard.tasks.families import check_candidates

        check_candidates(spec)
    schema = build_schema(spec.schema_, spec.target, spec_folder=spec.spec_path.parent)
    require_salt(pii_policies(schema))
    return spec

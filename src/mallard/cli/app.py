"""The typer application every command module registers on."""

from __future__ import annotations

from typing import Annotated

import typer

from mallard.core.config import configure_prefect_environment

# Prefect reads its settings when first imported; commands import it lazily, after this.
configure_prefect_environment()

app = typer.Typer(
    name="mallard",
    help="Validated, cross-validated models from a file or SQL query, kept in a DuckDB warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain text: rich markup would eat "[schedule]" and "[default: ...]".
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from mallard import __version__

        typer.echo(f"mallard {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print mallard's version and exit.",
        ),
    ] = False,
) -> None:
    """Validated, cross-validated models from a file or SQL query, kept in a DuckDB warehouse."""

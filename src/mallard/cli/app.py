"""The typer application every command module registers on."""

from __future__ import annotations

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
)

"""`mallard init`: draft a commented, runnable pipeline spec from a data file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mallard.cli.app import app
from mallard.cli.output import console, errors, user_errors
from mallard.core.errors import InputError

if TYPE_CHECKING:
    from mallard.init_spec import Draft


@app.command()
@user_errors
def init(
    data: Annotated[Path, typer.Argument(help="CSV / TSV / Parquet file to draft a spec for")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Spec file to write (TOML)", show_default=False)
    ],
    target: Annotated[
        str | None, typer.Option(help="Target column; leave it out for clustering")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="regression | classification | clustering [default: guessed from the target]"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing spec file")] = False,
) -> None:
    """Infer a schema and a task from a data file and write a commented spec that runs as is."""
    from mallard import init_spec

    if not data.is_file():
        raise InputError(f"data file not found: {data}")
    if output.resolve() == data.resolve():
        raise InputError(f"--output {output} is the data file itself; choose a .toml file")
    if output.exists() and not force:
        raise InputError(f"{output} already exists; pass --force to overwrite it")
    frame, rows = init_spec.read_sample(data)
    draft = init_spec.infer(frame, data, target, task, rows)
    text = init_spec.render(draft, output)
    output.parent.mkdir(parents=True, exist_ok=True)  # the spec's folder anchors source.path
    init_spec.check(text, output)
    output.write_text(text, encoding="utf-8", newline="\n")
    _print_draft(draft, output)


def _print_draft(draft: Draft, output: Path) -> None:
    table = Table(
        title=f"inferred from {escape(str(draft.data))}: {draft.sampled:,} of {draft.rows:,} rows",
        title_justify="left",
    )
    for name in ("column", "dtype", "nullable", "checks", "role"):
        table.add_column(name, overflow="fold")
    for column in draft.columns:
        role = column.role if not column.note else f"{column.role}: {column.note}"
        table.add_row(
            escape(column.name),
            column.dtype or "—",
            "yes" if column.nullable else "no",
            escape(column.checks()),
            escape(role),
        )
    console.print(table)
    metric = draft.primary_metric
    if draft.positive_class is not None:
        metric += f", threshold tuned for F1, positive class {draft.positive_class}"
    console.print(
        f"task: [bold]{draft.task}[/] ({escape(draft.task_reason)}); "
        f"primary metric: {escape(metric)}",
        highlight=False,
    )
    for note in draft.notes:
        errors.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"wrote [bold]{escape(str(output))}[/]; review it, then run:", highlight=False)
    console.print(f"  mallard run {escape(shlex.quote(str(output)))}", highlight=False)

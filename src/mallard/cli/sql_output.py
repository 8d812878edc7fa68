"""What `mallard sql` prints or writes: DuckDB's box renderer at the terminal's width, or a
csv | json | parquet export of every row (see mallard.warehouse.sql_render)."""

from __future__ import annotations

import sys
from pathlib import Path

from mallard.cli.output import console, errors
from mallard.core.errors import InputError

FORMATS = ("table", "csv", "json", "parquet")


def check_format(fmt: str, output: Path | None) -> None:
    """Refuse an unknown format, or parquet to the terminal, before the warehouse is opened."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format '{fmt}'; choose one of {' | '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise InputError("--format parquet writes a file: add --output FILE.parquet")
    if fmt == "table" and output is not None:
        raise InputError("--output needs --format csv, json or parquet")


def print_query(db: Path, sql: str, fmt: str, output: Path | None, max_rows: int) -> None:
    from mallard.warehouse.sql_render import export_query, render_query

    check_format(fmt, output)
    if fmt == "table":
        sys.stdout.write(render_query(db, sql, max_width=console.width, max_rows=max_rows))
        sys.stdout.flush()
        return
    sys.stdout.flush()  # text written before must come first
    notes = export_query(db, sql, fmt, output if output is not None else sys.stdout.buffer)
    for note in notes:
        errors.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    if output is not None:
        errors.print(f"wrote {output}", highlight=False, markup=False, soft_wrap=True)

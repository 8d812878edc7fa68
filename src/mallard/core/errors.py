"""Every error a user can cause, each with the exit code the CLI returns for it.

Exit 2: the spec, the input, the warehouse or the environment needs fixing; exit 3: the data
failed validation. Anything that is not a MallardError is a bug in mallard and exits with 1.
The base class is never raised itself: raise the subclass that says whose mistake it is.
"""

from __future__ import annotations

from pathlib import Path


def first_line(exc: BaseException) -> str:
    """A library's error as one line for a user-facing message (its first line, else its type)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_files(files: list[Path]) -> str:
    """How messages and ml.runs.source name a run's input files."""
    return str(files[0]) if len(files) == 1 else f"{len(files)} files from {files[0].parent}"


class MallardError(Exception):
    """Base class: a problem the user can fix. The message is shown as is, without a traceback."""

    exit_code = 2


class SpecError(MallardError):
    """The pipeline spec is unreadable, names an unknown key, or has a wrong value."""

    exit_code = 2


class InputError(MallardError):
    """The input data cannot be used at all (missing, empty, target column absent)."""

    exit_code = 2


class DataValidationError(MallardError):
    """Too many rows failed the schema; they are in ml.quarantine."""

    exit_code = 3


class WarehouseError(MallardError):
    """The warehouse file cannot be opened or written (locked, missing, wrong version)."""

    exit_code = 2


class ModelIntegrityError(MallardError):
    """A stored model fails its checks (checksum, readable file, loadable types): not loaded."""

    exit_code = 2


class ReadCopyError(WarehouseError):
    """The analysts' read copy could not be refreshed; the warehouse itself is untouched."""


class PrefectApiError(MallardError):
    """The Prefect API a command needs is unreachable or could not be started."""

    exit_code = 2


class StackError(MallardError):
    """`mallard stack` cannot start, find or stop the stack as asked."""

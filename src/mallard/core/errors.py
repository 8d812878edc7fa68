"""Errors a user can cause, each with the exit code the CLI returns for it.

Anything that is not a MallardError is a bug in mallard and exits with code 1.
"""

from __future__ import annotations


class MallardError(Exception):
    """Base class: a problem the user can fix. The message is shown as is, without a traceback."""

    exit_code = 1


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

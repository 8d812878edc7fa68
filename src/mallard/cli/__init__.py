"""The `mallard` command line. Heavy libraries are imported inside commands so --help is fast."""

from __future__ import annotations

from mallard.cli import init_command, lifecycle_commands, server, stack, train_commands
from mallard.cli.app import app

__all__ = ["app", "init_command", "lifecycle_commands", "main", "server", "stack", "train_commands"]


def main() -> None:
    app()

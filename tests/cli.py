"""Drive the CLI in-process as a user would: exit code and output, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mallard.cli import app

runner = CliRunner()


def mallard(*args: str) -> tuple[int, str]:
    """Run `mallard ARGS`; the output comes back with whitespace collapsed (rich wraps lines)."""
    result = runner.invoke(app, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output, output
    return result.exit_code, " ".join(output.split())


def mallard_process(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `mallard ARGS` as its own process, as a user's shell would, with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "mallard.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )

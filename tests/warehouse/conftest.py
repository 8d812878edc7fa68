"""A DuckDB 1.x client for the readability tests: the `duckdb` Python package 1.5 (or 1.4)
from the package index, in a venv made once per test session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIENTS = ("duckdb==1.5.*", "duckdb==1.4.*")


@pytest.fixture(scope="session")
def duckdb1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv with a DuckDB 1.x client; skips if pip cannot install one."""
    venv = tmp_path_factory.mktemp("duckdb1-client") / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120
    )
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv for a DuckDB 1.x client: {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    problems = []
    for requirement in CLIENTS:
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", requirement],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode == 0:
            return python
        problems.append(f"{requirement}: {installed.stderr.strip()[-300:]}")
    pytest.skip("pip cannot install a DuckDB 1.x client: " + " | ".join(problems))


def run_in(python: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=120
    )

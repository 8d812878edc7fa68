"""What a run records about the code and libraries that produced it."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mallard

LIBRARIES = ("polars", "duckdb", "pandera", "scikit-learn", "skops", "prefect", "numpy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mallard": mallard.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> str:
    """The git commit of the mallard checkout (with '+dirty' for local edits), else the version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return mallard.__version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return mallard.__version__

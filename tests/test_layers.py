"""The floors of the package are enforced: the import contract passes on the tree as it is and
fails when a planted import reaches up a floor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(package_root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_root,
        timeout=120,
    )


@pytest.fixture
def planted_tree(tmp_path: Path) -> Path:
    """A copy of the package whose ground floor imports a step: an upward import."""
    shutil.copytree(REPO / "src" / "mallard", tmp_path / "mallard")
    (tmp_path / "mallard" / "pipelines").mkdir(exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    spec = tmp_path / "mallard" / "core" / "spec.py"
    spec.write_text(spec.read_text() + "\nfrom mallard.tasks import split  # planted\n")
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(REPO / "src", REPO / "pyproject.toml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Floors KEPT" in result.stdout


def test_an_upward_import_breaks_the_floors_contract(planted_tree: Path) -> None:
    result = _lint(planted_tree, planted_tree / "pyproject.toml")

    assert result.returncode != 0
    assert "Floors BROKEN" in result.stdout
    assert "mallard.core.spec -> mallard.tasks.split" in result.stdout

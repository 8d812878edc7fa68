"""The package list in pyproject.toml is written by hand (a found list cannot hold the mapped
data package mallard.pipelines): every package folder under src/mallard must be in it."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        "mallard"
        + "".join(f".{part}" for part in init.parent.relative_to(REPO / "src" / "mallard").parts)
        for init in (REPO / "src" / "mallard").rglob("__init__.py")
    }

    assert found | {"mallard.pipelines"} == listed

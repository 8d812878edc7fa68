"""Seeded generators for the shipped example pipelines; nothing is downloaded at run time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import polars as pl

from mallard.examples.fraud import fraud
from mallard.examples.housing import HOUSING_SPEC, housing, write_housing_csv
from mallard.examples.segments import segments


@dataclass(frozen=True)
class Example:
    generate: Callable[[int, int], pl.DataFrame]  # rows, seed -> frame
    rows: int  # default demo size
    spec: str  # file name in pipelines/
    data: str  # the spec's source.path


EXAMPLES = {
    "housing": Example(lambda n, s: housing(n, s), 2000, "housing.toml", "data/housing.csv"),
    "fraud": Example(fraud, 5000, "fraud.toml", "data/fraud.csv"),
    "segments": Example(segments, 1500, "segments.toml", "data/segments.csv"),
}


def spec_text(name: str = HOUSING_SPEC) -> str:
    """The shipped example spec, read from the installed package."""
    return (files("mallard.pipelines") / name).read_text(encoding="utf-8")


def write_example(name: str, folder: Path, rows: int | None = None, seed: int = 42) -> Path:
    """Generate an example's data and spec into `folder`; returns the spec path."""
    example = EXAMPLES[name]
    data = folder / example.data
    data.parent.mkdir(parents=True, exist_ok=True)
    example.generate(rows or example.rows, seed).write_csv(data)
    spec = folder / example.spec
    spec.write_text(spec_text(example.spec), encoding="utf-8")
    return spec


__all__ = [
    "EXAMPLES",
    "HOUSING_SPEC",
    "fraud",
    "housing",
    "segments",
    "spec_text",
    "write_example",
    "write_housing_csv",
]

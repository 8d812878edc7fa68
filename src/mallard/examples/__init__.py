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
    new_data: str  # rows to score: more of the same, without the target
    target: str | None = None
    scheduled: str | None = None  # a variant of the spec with a [schedule] section
    new_rows: int = 300


EXAMPLES = {
    "housing": Example(
        lambda n, s: housing(n, s),
        2000,
        "housing.toml",
        "data/housing.csv",
        "data/new_houses.csv",
        target="price",
        scheduled="housing_scheduled.toml",
    ),
    "fraud": Example(
        fraud, 5000, "fraud.toml", "data/fraud.csv", "data/new_transactions.csv", "is_fraud"
    ),
    "segments": Example(
        segments, 1500, "segments.toml", "data/segments.csv", "data/new_customers.csv"
    ),
}


def new_rows(name: str, rows: int | None = None, seed: int = 42) -> pl.DataFrame:
    """Rows to score for an example: drawn with the next seed (so they are not the training
    rows), with the generator's few bad rows, without the target."""
    example = EXAMPLES[name]
    frame = example.generate(rows or example.new_rows, seed + 1)
    return frame if example.target is None else frame.drop(example.target)


def spec_text(name: str = HOUSING_SPEC) -> str:
    """The shipped example spec, read from the installed package."""
    return (files("mallard.pipelines") / name).read_text(encoding="utf-8")


def write_example(name: str, folder: Path, rows: int | None = None, seed: int = 42) -> Path:
    """Generate an example's data, rows to score and spec(s) into `folder`, laid out as in
    pipelines/; returns the spec path."""
    example = EXAMPLES[name]
    data = folder / example.data
    data.parent.mkdir(parents=True, exist_ok=True)
    example.generate(rows or example.rows, seed).write_csv(data)
    new_rows(name, seed=seed).write_csv(folder / example.new_data)
    for spec_name in filter(None, (example.scheduled, example.spec)):
        (folder / spec_name).write_text(spec_text(spec_name), encoding="utf-8")
    return folder / example.spec


__all__ = [
    "EXAMPLES",
    "HOUSING_SPEC",
    "fraud",
    "housing",
    "new_rows",
    "segments",
    "spec_text",
    "write_example",
    "write_housing_csv",
]

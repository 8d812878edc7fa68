"""The shipped example data is exactly what the seeded generator makes."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mallard.examples import housing, write_housing_csv

REPO = Path(__file__).resolve().parents[1]


def test_generator_is_deterministic() -> None:
    assert housing(300, seed=1).equals(housing(300, seed=1))
    assert not housing(300, seed=1).equals(housing(300, seed=2))


def test_shipped_housing_csv_matches_the_generator(tmp_path: Path) -> None:
    regenerated = write_housing_csv(tmp_path / "housing.csv", rows=2000, seed=42)
    assert (REPO / "pipelines" / "data" / "housing.csv").read_bytes() == regenerated.read_bytes()


def test_generator_plants_about_one_percent_bad_rows() -> None:
    frame = housing(1000, seed=3)
    bad = frame.filter(
        pl.col("price").is_null()
        | pl.col("lotsize").is_in(["-1", "n/a"])
        | (pl.col("bedrooms") == "99")
        | (pl.col("driveway") == "maybe")
    )
    assert bad.height == 10

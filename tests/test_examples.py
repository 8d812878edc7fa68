"""The shipped example data is exactly what the seeded generator makes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mallard.core.spec import load_spec
from mallard.examples import EXAMPLES, housing, new_rows, write_example, write_housing_csv

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


def test_shipped_new_houses_csv_matches_the_generator(tmp_path: Path) -> None:
    new_rows("housing").write_csv(tmp_path / "new_houses.csv")
    shipped = REPO / "pipelines" / "data" / "new_houses.csv"
    assert shipped.read_bytes() == (tmp_path / "new_houses.csv").read_bytes()


def test_scheduled_spec_is_the_housing_spec_plus_a_schedule() -> None:
    """pipelines/housing_scheduled.toml may not drift from housing.toml but in [schedule]."""
    plain = load_spec(REPO / "pipelines" / "housing.toml")
    scheduled = load_spec(REPO / "pipelines" / "housing_scheduled.toml")
    assert scheduled.model_dump(exclude={"schedule"}) == plain.model_dump(exclude={"schedule"})
    assert plain.schedule.train is None and plain.schedule.score is None
    assert scheduled.schedule.train and scheduled.schedule.score
    assert scheduled.resolve_files(scheduled.schedule.score.input)  # the rows it scores ship


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_demo_folder_holds_the_spec_its_data_and_rows_to_score(tmp_path: Path, name: str) -> None:
    spec_path = write_example(name, tmp_path, rows=200, seed=3)
    example = EXAMPLES[name]
    spec = load_spec(spec_path)
    new = pl.read_csv(tmp_path / example.new_data)
    trained_on = pl.read_csv(tmp_path / example.data)
    assert new.height == example.new_rows
    assert new.columns == [c for c in trained_on.columns if c != spec.target]
    assert spec.source.id is None or spec.source.id in new.columns
    if example.scheduled:
        scheduled = load_spec(tmp_path / example.scheduled)
        assert scheduled.schedule.score is not None
        assert scheduled.resolve_files(scheduled.schedule.score.input) == [
            tmp_path / example.new_data
        ]

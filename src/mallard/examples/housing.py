"""House prices: the guide's running example for regression.

The housing data follows the guide's running example (lot size, bedrooms, bathrooms, stories,
amenities -> price) and plants a few realistic bad rows so the quarantine has something to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

HOUSING_SPEC = "housing.toml"


def housing(rows: int, seed: int = 42, invalid_fraction: float = 0.01) -> pl.DataFrame:
    """House-price rows; about `invalid_fraction` of them break the housing schema on purpose."""
    rng = np.random.default_rng(seed)
    lotsize = rng.lognormal(mean=8.4, sigma=0.35, size=rows).round(0)
    bedrooms = rng.choice([1, 2, 3, 4, 5, 6], size=rows, p=[0.05, 0.2, 0.4, 0.25, 0.08, 0.02])
    bathrms = np.clip(bedrooms // 2 + rng.integers(0, 2, size=rows), 1, 4)
    stories = rng.choice([1, 2, 3, 4], size=rows, p=[0.35, 0.45, 0.15, 0.05])
    driveway = rng.random(rows) < 0.86
    recroom = rng.random(rows) < 0.18
    fullbase = rng.random(rows) < 0.35
    airco = rng.random(rows) < 0.32
    garagepl = rng.choice([0, 1, 2, 3], size=rows, p=[0.55, 0.22, 0.2, 0.03])
    prefarea = rng.random(rows) < 0.23
    year_built = rng.integers(1900, 2024, size=rows)
    price = (
        6.5 * lotsize**0.85
        + 4_000 * bedrooms
        + 14_000 * bathrms
        + 6_500 * stories
        + 7_000 * driveway
        + 4_500 * recroom
        + 5_500 * fullbase
        + 12_500 * airco
        + 4_000 * garagepl
        + 9_500 * prefarea
        + 120 * np.maximum(year_built - 1950, 0)
        + 2_500 * airco * prefarea * stories
    ) * rng.lognormal(0.0, 0.12, size=rows)

    yes_no = {True: "yes", False: "no"}
    frame = pl.DataFrame(
        {
            "price": price.round(0),
            "lotsize": lotsize,
            "bedrooms": bedrooms,
            "bathrms": bathrms,
            "stories": stories,
            "driveway": [yes_no[bool(v)] for v in driveway],
            "recroom": [yes_no[bool(v)] for v in recroom],
            "fullbase": [yes_no[bool(v)] for v in fullbase],
            "airco": [yes_no[bool(v)] for v in airco],
            "garagepl": garagepl,
            "prefarea": [yes_no[bool(v)] for v in prefarea],
            "year_built": year_built,
        }
    )
    # Everything leaves as text so the planted bad values ("n/a", "maybe") can sit in any column,
    # as they would in a real export.
    frame = frame.with_columns(pl.all().cast(pl.String))
    return _plant_invalid_rows(frame, rng, invalid_fraction)


def _plant_invalid_rows(
    frame: pl.DataFrame, rng: np.random.Generator, fraction: float
) -> pl.DataFrame:
    n_bad = round(frame.height * fraction)
    if n_bad == 0:
        return frame
    rows = rng.choice(frame.height, size=n_bad, replace=False)
    defects = [
        ("lotsize", "-1"),  # a sentinel for "unknown"
        ("bedrooms", "99"),  # a typo
        ("driveway", "maybe"),  # a free-text answer
        ("price", None),  # a missing target
        ("lotsize", "n/a"),  # text in a numeric column
    ]
    columns = {name: frame[name].to_list() for name in frame.columns}
    for i, row in enumerate(rows):
        column, value = defects[i % len(defects)]
        columns[column][int(row)] = value
    return pl.DataFrame(columns, schema=frame.schema)


def write_housing_csv(path: Path, rows: int, seed: int = 42) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    housing(rows, seed).write_csv(path)
    return path

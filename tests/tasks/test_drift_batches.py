"""Drift over a file scored in batches: bin counts of the batches add up to the same PSI figures
as psi_table over all rows at once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mallard.core.errors import InputError
from mallard.tasks.drift import (
    add_counts,
    bin_counts,
    prediction_profile,
    psi_from_counts,
    psi_table,
    reference_profile,
)


def frame(rows: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, rows)
    x[rng.random(rows) < 0.05] = np.nan
    return pl.DataFrame(
        {
            "x": x,
            "n": rng.integers(0, 5, rows),
            "c": rng.choice(["a", "b", "c", "new"] if shift else ["a", "b", "c"], rows).tolist(),
        }
    ).with_columns(  # some nulls in every column
        pl.when(pl.int_range(pl.len()) % 50 != 7).then(pl.col("n", "c")).name.keep()
    )


@pytest.mark.parametrize("batch", [1, 37, 500, 5_000])
def test_summed_batch_counts_give_psi_tables_figures(batch: int) -> None:
    reference = frame(2_000, seed=1)
    profile = pl.concat(
        [
            reference_profile(reference, ["x", "n"], ["c"]),
            prediction_profile(reference["x"].fill_nan(0).to_numpy() * 2),
        ]
    )
    new = frame(1_234, seed=2, shift=0.3)
    predictions = new["x"].fill_nan(0).to_numpy() * 2 + 0.1

    counts = None
    for start in range(0, new.height, batch):
        part = new.slice(start, batch)
        counts = add_counts(
            counts, bin_counts(profile, part, predictions[start : start + part.height])
        )
    assert counts is not None
    batched = psi_from_counts(profile, counts)

    whole = psi_table(profile, new, predictions)
    assert batched.equals(whole)  # exactly: the same integer counts over the same total
    assert batched["feature"].to_list() == ["x", "n", "c", "__prediction__"]
    assert set(whole["status"]) != {"stable"}  # the shift was seen


def test_no_rows_counted_is_an_error() -> None:
    reference = frame(200, seed=1)
    profile = reference_profile(reference, ["x"], ["c"])
    empty = bin_counts(profile, reference.head(0))
    assert all(int(counts.sum()) == 0 for counts in empty.values())
    with pytest.raises(InputError, match="empty"):
        psi_from_counts(profile, empty)
    with pytest.raises(InputError, match="empty"):
        psi_table(profile, reference.head(0))

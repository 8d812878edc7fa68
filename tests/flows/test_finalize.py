"""Selection on stable evidence and finalize (issue 12): the champion candidate is chosen on
CV over train + validation rows and recorded; the deployed model is its configuration refitted
on every labelled row, registered beside the evaluated model it is linked to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mallard import warehouse
from mallard.examples import spec_text, write_housing_csv
from mallard.flows.train import train
from mallard.tasks.model_files import load_model_row

pytestmark = pytest.mark.usefixtures("prefect_server")

# An unbounded tree memorises the rows it was fitted on: the finalized refit then predicts the
# test rows exactly, the evaluated model (fitted on the train split) does not.
MEMORISING = """
[[candidates]]
family = "decision_tree"
params = { max_depth = ["none"], min_samples_leaf = [1] }

[[candidates]]
family = "ridge"
params = { alpha = [1.0] }
"""


def _spec(folder: Path, extra: str = "") -> Path:
    write_housing_csv(folder / "data" / "housing.csv", rows=300, seed=3)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + MEMORISING + extra
    text = text.replace("folds = 5", "folds = 3")
    spec = folder / "housing.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def _test_rows(db: Path, model_id: str, folder: Path) -> tuple[pl.DataFrame, np.ndarray]:
    """The input rows of the run's test split, as the model's features, and their prices."""
    held = warehouse.query_params(
        db,
        "SELECT row_index, actual FROM ml.predictions WHERE model_id = ? ORDER BY row_index",
        [model_id],
    )
    names = json.loads(str(warehouse.model(db, model_id)["feature_names"]))  # type: ignore[index]
    rows = pl.read_csv(folder / "data" / "housing.csv").with_row_index("row_index")
    test = rows.filter(pl.col("row_index").is_in(held["row_index"].implode())).sort("row_index")
    X = test.select(names).with_columns(pl.col("lotsize").cast(pl.Float64, strict=False))
    return X, held["actual"].to_numpy()


def test_the_deployed_model_has_seen_every_labelled_row_and_the_evaluated_one_not(
    tmp_path: Path, db: Path
) -> None:
    result = train(_spec(tmp_path), db)

    models = warehouse.query_params(
        db,
        "SELECT model_id, candidate, evaluated_model_id, trained_on FROM ml.models "
        "WHERE run_id = ? ORDER BY model_id",
        [result.run_id],
    )
    final = models.filter(pl.col("trained_on") == "labelled").row(0, named=True)
    assert final["model_id"] == result.deployed_model_id == f"{result.best_model_id}.final"
    assert final["evaluated_model_id"] == result.best_model_id
    assert set(models["trained_on"]) == {"train", "labelled"}
    evaluated_tree = f"{result.run_id}:decision_tree"
    X, y = _test_rows(db, evaluated_tree, tmp_path)

    evaluated = load_model_row(warehouse.model(db, evaluated_tree))  # type: ignore[arg-type]
    assert np.mean(np.isclose(evaluated.predict(X), y)) < 0.5  # never saw the test rows
    # The refit of the tree (whether or not it won) is what would be deployed for it: check the
    # deployed model's own rows when the tree is the champion, else refit semantics via ridge.
    deployed = load_model_row(warehouse.model(db, result.deployed_model_id))  # type: ignore[arg-type]
    if result.best_model_id == evaluated_tree:
        assert np.allclose(deployed.predict(X), y)  # memorised: it was fitted on them
    else:
        original = load_model_row(warehouse.model(db, result.best_model_id))  # type: ignore[arg-type]
        assert not np.allclose(deployed.predict(X), original.predict(X))


def test_the_selection_rule_and_evidence_are_recorded(tmp_path: Path, db: Path) -> None:
    result = train(_spec(tmp_path), db)

    run = warehouse.run_record(db, result.run_id)
    assert run is not None and "CV on" in str(run["selection_rule"])
    assert "train + validation rows" in str(run["selection_rule"])
    selection = warehouse.query_params(
        db,
        "SELECT model_id, value, std, n_folds FROM ml.metrics "
        "WHERE run_id = ? AND split = 'selection' ORDER BY value",
        [result.run_id],
    )
    # 3 folds x 3 repeats on small data, for every candidate and the baseline
    assert selection.height == 3 and set(selection["n_folds"]) == {9}
    assert selection["std"].is_not_null().all()
    best = selection.filter(~pl.col("model_id").str.ends_with(":baseline"))["model_id"][0]
    assert best == result.best_model_id  # lowest mean rmse, never the dummy
    board = warehouse.leaderboard(db, run_id=result.run_id)
    assert board.filter(pl.col("rank") == 1)["model_id"].to_list() == [selection["model_id"][0]]


def test_test_metrics_carry_a_bootstrap_interval_around_the_estimate(
    tmp_path: Path, db: Path
) -> None:
    result = train(_spec(tmp_path), db)

    test = warehouse.query_params(
        db,
        "SELECT value, ci_low, ci_high FROM ml.metrics WHERE run_id = ? AND split = 'test'",
        [result.run_id],
    )
    assert test.height > 0
    assert (test["ci_low"] <= test["value"]).all() and (test["value"] <= test["ci_high"]).all()
    assert (test["ci_low"] < test["ci_high"]).all()
    cv = warehouse.query_params(
        db, "SELECT std FROM ml.metrics WHERE run_id = ? AND split = 'cv'", [result.run_id]
    )
    assert cv["std"].is_not_null().all()


def test_finalize_can_be_turned_off(tmp_path: Path, db: Path) -> None:
    spec = _spec(tmp_path, "\n[evaluate]\nfinalize = false\n")

    result = train(spec, db)

    assert result.deployed_model_id == result.best_model_id
    trained_on = warehouse.query_params(
        db, "SELECT DISTINCT trained_on FROM ml.models WHERE run_id = ?", [result.run_id]
    )
    assert trained_on["trained_on"].to_list() == ["train"]


def test_min_improvement_in_standard_errors_needs_a_gain_beyond_the_noise(
    tmp_path: Path, db: Path
) -> None:
    spec = _spec(tmp_path, '\n[promote]\nmin_improvement = "3se"\n')
    train(spec, db)

    again = train(spec, db)  # the same data and seed: no gain at all over the champion

    assert not again.promoted
    decision = warehouse.query_params(
        db, "SELECT min_improvement FROM ml.promotions WHERE run_id = ?", [again.run_id]
    )
    assert decision["min_improvement"][0] > 0  # 3 standard errors, in rmse units


def test_finalize_fits_a_seeded_max_rows_sample_of_the_labelled_rows(
    tmp_path: Path, db: Path
) -> None:
    spec = _spec(tmp_path, "\n[train]\nmax_rows = 120\n")  # of 300 labelled rows

    first = train(spec, db)
    second = train(spec, db)

    deployed = [
        load_model_row(warehouse.model(db, result.deployed_model_id))  # type: ignore[arg-type]
        for result in (first, second)
    ]
    scalers = [m.named_steps["prepare"].named_transformers_["numeric"][-1] for m in deployed]
    assert [s.n_samples_seen_ for s in scalers] == [120, 120]  # the cap, not all 300
    assert np.array_equal(scalers[0].mean_, scalers[1].mean_)  # the same seeded rows
    row = warehouse.model(db, first.deployed_model_id)
    assert row is not None and row["trained_on"] == "labelled"

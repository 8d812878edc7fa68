"""The train flow end to end on a real Prefect server and a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mallard import warehouse
from mallard.core.errors import DataValidationError
from mallard.flows.train import train

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_train_writes_one_complete_run(housing_spec: Path, db: Path) -> None:
    result = train(housing_spec, db)

    counts = warehouse.table_counts(db, result.run_id)
    assert counts["runs"] == 1
    assert counts["quarantine"] == result.n_invalid > 0  # the generator plants bad rows
    # ridge 2 configs + tree 2 configs + baseline 1 config, x 3 folds x 4 metrics
    assert counts["cv_results"] == (2 + 2 + 1) * 3 * 4
    # 3 models x (cv, validation, test) x 4 metrics, plus the selection CV on the primary metric
    assert counts["metrics"] == 3 * 3 * 4 + 3
    # the 3 evaluated models and the champion candidate refitted on every labelled row
    assert counts["models"] == 4
    run = warehouse.run_record(db, result.run_id)
    assert run is not None and run["status"] == "succeeded"
    assert run["data_sha256"] and len(run["data_sha256"]) == 64
    board = warehouse.leaderboard(db, "housing")
    assert result.best_model_id in board["model_id"].to_list()
    assert board["rank"].to_list() == sorted(board["rank"].to_list())
    # a tuned ridge on this data must beat predicting the mean
    values = dict(zip(board["family"], board["value"], strict=True))
    assert values["ridge"] < values["dummy"]


def test_rerun_with_same_run_id_replaces_rows(housing_spec: Path, db: Path) -> None:
    first = train(housing_spec, db, run_id="fixed-run")
    before = warehouse.table_counts(db, first.run_id)
    train(housing_spec, db, run_id="fixed-run")
    assert warehouse.table_counts(db, "fixed-run") == before


def test_too_many_invalid_rows_fails_and_keeps_only_run_and_quarantine(
    housing_spec: Path, db: Path
) -> None:
    strict = housing_spec.read_text().replace(
        "max_invalid_fraction = 0.05", "max_invalid_fraction = 0.001"
    )
    housing_spec.write_text(strict)

    state = train(housing_spec, db, run_id="too-dirty", return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DataValidationError)
    assert "max_invalid_fraction" in str(error)
    counts = warehouse.table_counts(db, "too-dirty")
    assert counts["runs"] == 1 and counts["quarantine"] > 0
    assert counts["cv_results"] == counts["metrics"] == 0
    run = warehouse.run_record(db, "too-dirty")
    assert run is not None and run["status"] == "failed" and "max_invalid_fraction" in run["error"]

"""The validate flow: quarantine and run record only, never a model; exit 3 over the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mallard import warehouse
from mallard.cli import app
from mallard.examples import housing

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()


def test_validate_stores_the_quarantine_and_trains_nothing(housing_spec: Path, db: Path) -> None:
    result = runner.invoke(app, ["validate", str(housing_spec), "--warehouse", str(db)])

    assert result.exit_code == 0, result.output
    assert "price: not_nullable" in result.output
    runs = warehouse.query(db, "SELECT run_id, flow, status, n_invalid FROM ml.runs")
    assert runs["flow"].to_list() == ["validate"] and runs["status"].to_list() == ["succeeded"]
    run_id = runs["run_id"][0]
    counts = warehouse.table_counts(db, run_id)
    assert counts["quarantine"] == runs["n_invalid"][0] > 0
    assert counts["models"] == counts["metrics"] == counts["cv_results"] == 0


def test_validate_an_input_without_the_target(housing_spec: Path, db: Path) -> None:
    new = housing_spec.parent / "new.csv"
    housing(200, seed=5, invalid_fraction=0.0).drop("price").write_csv(new)

    result = runner.invoke(app, ["validate", str(housing_spec), str(new), "--warehouse", str(db)])

    assert result.exit_code == 0, result.output
    assert warehouse.query(db, "SELECT n_invalid FROM ml.runs").item() == 0


def test_too_many_invalid_rows_exit_3_and_keep_the_quarantine(housing_spec: Path, db: Path) -> None:
    bad = housing_spec.parent / "bad.csv"
    housing(100, seed=5, invalid_fraction=0.5).write_csv(bad)

    result = runner.invoke(app, ["validate", str(housing_spec), str(bad), "--warehouse", str(db)])

    assert result.exit_code == 3
    assert "failed the schema" in result.output + (result.stderr or "")
    run = warehouse.query(db, "SELECT run_id, status FROM ml.runs").row(0, named=True)
    assert run["status"] == "failed"
    # half the rows are broken; a missing price is no defect here (the target is optional)
    assert warehouse.table_counts(db, run["run_id"])["quarantine"] >= 30

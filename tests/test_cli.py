"""The CLI as a user drives it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mallard import warehouse
from tests.cli import mallard

runner = CliRunner()


@pytest.fixture(scope="module")
def good_warehouse(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A warehouse holding one succeeded housing run, built once for this module."""
    from mallard.examples import spec_text, write_housing_csv
    from tests.conftest import FAST_CANDIDATES  # the fixture is function-scoped; rebuild here

    folder = tmp_path_factory.mktemp("good")
    write_housing_csv(folder / "data" / "housing.csv", rows=400, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    (folder / "housing.toml").write_text(text.replace("folds = 5", "folds = 3"))
    db = folder / "warehouse.duckdb"
    code, output = mallard("run", str(folder / "housing.toml"), "--warehouse", str(db))
    assert code == 0, output
    return db


@pytest.fixture
def populated_db(good_warehouse: Path, tmp_path: Path) -> Path:
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(good_warehouse, db)
    return db


def snapshot(db: Path) -> dict[str, int]:
    """Row counts of every run table: what a failed run must leave untouched."""
    return {
        table: warehouse.query(db, f"SELECT count(*) AS n FROM ml.{table}").item()
        for table in ("quarantine", "cv_results", "metrics")
    }


def failed_runs(db: Path) -> list[dict[str, object]]:
    return warehouse.query(db, "SELECT * FROM ml.runs WHERE status <> 'succeeded'").to_dicts()


def test_run_prints_leaderboard_and_stores_it(good_warehouse: Path) -> None:
    code, output = mallard("leaderboard", "housing", "--warehouse", str(good_warehouse))
    assert code == 0
    assert "ridge" in output and "baseline" in output and "test rmse" in output
    code, output = mallard(
        "sql",
        "SELECT count(*) AS n FROM ml.runs",
        "--warehouse",
        str(good_warehouse),
        "--format",
        "csv",
    )
    assert code == 0 and output == "n 1"


def test_runs_lists_the_run(good_warehouse: Path) -> None:
    code, output = mallard("runs", "--warehouse", str(good_warehouse))
    assert code == 0 and "succeeded" in output and "housing" in output
    assert " *" in output and "* promoted to champion" in output  # the marker and its legend


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_sql_on_a_table_that_is_not_there_names_the_tables(good_warehouse: Path, fmt: str) -> None:
    code, output = mallard("sql", "SELECT * FROM nope", "-w", str(good_warehouse), "--format", fmt)
    assert code == 2 and output.startswith("error: query failed: Catalog Error: Table with name")
    listed = output.split("; the warehouse's tables and views: ", 1)[1].split(", ")
    assert {"runs", "models", "leaderboard", "predictions", "metrics"} <= set(listed)
    code, output = mallard("sql", "SELECT nope FROM runs", "-w", str(good_warehouse))
    assert code == 2 and "tables and views" not in output  # only for a missing table


def test_the_leaderboard_shows_another_metric_beside_the_primary_rank(
    good_warehouse: Path,
) -> None:
    w = ["--warehouse", str(good_warehouse)]
    primary = warehouse.leaderboard(good_warehouse, "housing")
    code, output = mallard("leaderboard", "housing", "--metric", "mae", *w)
    assert code == 0 and "(ranked on rmse)" in output and "test mae [95% CI]" in output
    # Rows in the primary metric's rank order, each with its own mae figure.
    names = [m.split(":")[-1] for m in primary.sort("rank")["model_id"]]
    assert [output.index(f" {n} ") for n in names] == sorted(output.index(f" {n} ") for n in names)
    maes = warehouse.query(
        good_warehouse, "SELECT value FROM ml.metrics WHERE split = 'test' AND metric = 'mae'"
    )["value"]
    assert maes.min() >= 1000  # house prices: shown as 4 significant figures, grouped
    for value in maes:
        assert f"{float(f'{value:.4g}'):,.0f} [" in output, value

    code, output = mallard("leaderboard", "housing", "--metric", "f1", *w)
    assert code == 2 and "has no test figure of 'f1'; it has: mae, mape, r2, rmse" in output


def test_runs_are_filtered_by_pipeline_flow_and_status(good_warehouse: Path) -> None:
    (run_id,) = warehouse.query(good_warehouse, "SELECT run_id FROM ml.runs")["run_id"]
    before = good_warehouse.read_bytes()
    w = ["--warehouse", str(good_warehouse)]

    code, output = mallard("runs", *w, "-p", "housing", "--flow", "train", "--status", "succeeded")
    assert code == 0 and run_id in output
    assert mallard("runs", *w, "--status", "failed") == (0, "no runs match")
    assert mallard("runs", *w, "--flow", "score") == (0, "no runs match")
    # A pipeline no run has is most likely a typo: say which ones there are.
    for name in ("housng", "x' OR 1=1 --"):
        code, output = mallard("runs", *w, "--pipeline", name)
        said = f"error: no pipeline '{name}' in {good_warehouse}; its runs are of: housing"
        assert code == 2 and said in output and "runs" not in output.replace(said, "")
    code, output = mallard("runs", *w, "--status", "done")
    assert code == 2 and "Invalid value for '--status'" in output
    assert good_warehouse.read_bytes() == before  # listing only reads


@pytest.mark.parametrize(
    ("spec_text", "message"),
    [
        ("this is = = not toml", "not valid TOML"),
        ("[pipeline]\nname = 'x'\n", "[pipeline.task] required key is missing"),
        ("[pipeline]\nnme = 'x'\n", "[pipeline.nme] unknown key; did you mean 'name'?"),
    ],
)
def test_bad_spec_is_exit_2_and_writes_nothing(
    tmp_path: Path, db: Path, spec_text: str, message: str
) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text)
    code, output = mallard("run", str(spec), "--warehouse", str(db))
    assert code == 2
    assert message in output
    assert not db.exists()


def test_missing_spec_file(tmp_path: Path, db: Path) -> None:
    code, output = mallard("run", str(tmp_path / "nope.toml"), "--warehouse", str(db))
    assert code == 2 and "spec file not found" in output and not db.exists()


def test_unknown_family_names_the_key(housing_spec: Path, db: Path) -> None:
    housing_spec.write_text(housing_spec.read_text().replace('"ridge"', '"xgboost"'))
    code, output = mallard("run", str(housing_spec), "--warehouse", str(db))
    assert code == 2
    assert "[candidates[0].family] unknown model family 'xgboost'" in output
    assert "random_forest" in output  # the known families are listed
    assert not db.exists()


def test_missing_data_file(housing_spec: Path, db: Path) -> None:
    (housing_spec.parent / "data" / "housing.csv").unlink()
    code, output = mallard("run", str(housing_spec), "--warehouse", str(db))
    assert code == 2 and "[source.path] no file matches 'data/housing.csv'" in output


def _write_data(spec: Path, text: str) -> None:
    (spec.parent / "data" / "housing.csv").write_text(text)


HEADER = "price,lotsize,bedrooms,bathrms,driveway\n"
BAD_DATA = {
    "empty file": ("", 2, "is empty"),
    "header only": (HEADER, 2, "has a header but no data rows"),
    "target missing": (
        "lotsize,bedrooms,driveway\n" + "5000,3,yes\n" * 50,
        2,
        "column(s) price named in the schema are missing from the data",
    ),
    "wrong column types": (
        HEADER + "".join(f"{1000 + i},big,three,1,yes\n" for i in range(50)),
        3,
        "50 of 50 rows (100.0%) failed the schema",
    ),
    "all rows invalid": (
        HEADER + "".join(f"-{i},5000,3,1,maybe\n" for i in range(1, 51)),
        3,
        "50 of 50 rows (100.0%) failed the schema",
    ),
}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_fails_cleanly_and_keeps_previous_runs(
    case: str, housing_spec: Path, populated_db: Path
) -> None:
    data, exit_code, message = BAD_DATA[case]
    _write_data(housing_spec, data)
    before = snapshot(populated_db)

    code, output = mallard("run", str(housing_spec), "--warehouse", str(populated_db))

    assert code == exit_code, output
    assert message in output
    after = snapshot(populated_db)
    assert after["cv_results"] == before["cv_results"]
    assert after["metrics"] == before["metrics"]
    [failed] = failed_runs(populated_db)
    assert failed["status"] == "failed" and message in str(failed["error"])
    stored = warehouse.table_counts(populated_db, str(failed["run_id"]))
    assert stored["cv_results"] == stored["metrics"] == 0
    if exit_code == 3:  # the failing rows are kept for inspection, with their raw values
        assert stored["quarantine"] >= 50
        assert after["quarantine"] == before["quarantine"] + stored["quarantine"]
    else:
        assert after["quarantine"] == before["quarantine"]


def test_sql_error_is_one_line(good_warehouse: Path) -> None:
    code, output = mallard("sql", "SELECT * FROM ml.nope", "--warehouse", str(good_warehouse))
    assert code == 2 and "query failed" in output


def test_reading_a_missing_warehouse(tmp_path: Path) -> None:
    code, output = mallard("runs", "--warehouse", str(tmp_path / "none.duckdb"))
    assert code == 2 and "no warehouse at" in output


@pytest.mark.slow
def test_demo_end_to_end_as_a_user_runs_it(tmp_path: Path) -> None:
    """`mallard demo` in a fresh process: starts its own Prefect server, trains, prints."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    for key in ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_LOGGING_LEVEL"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "mallard.cli"]
    demo = subprocess.run(
        [*cli, "demo", "--rows", "600", "--dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "leaderboard: housing" in demo.stdout
    assert "validate:" in demo.stderr  # the flow's per-step log lines are the progress
    db = tmp_path / "warehouse.duckdb"  # the default location, in the working directory
    board = warehouse.leaderboard(db, "housing")
    assert set(board["family"]) == {"ridge", "random_forest", "hist_gradient_boosting", "dummy"}
    quarantined = subprocess.run(
        [
            *cli,
            "sql",
            "SELECT check_name, count(*) AS n FROM ml.quarantine GROUP BY 1",
            "--format",
            "csv",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quarantined.returncode == 0
    assert "not_nullable" in quarantined.stdout and "isin" in quarantined.stdout

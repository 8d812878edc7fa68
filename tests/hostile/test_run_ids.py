"""No --run-id erases another run: a run id is reused only by the same pipeline and flow, a
rerun that fails leaves the earlier succeeded run as it was, and a malformed id is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mallard import warehouse
from tests.hostile.conftest import dump
from tests.hostile.test_user_errors import cli, refused, regression_rows, spec_text, write_case

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, str]:
    """(spec, warehouse, run id) after one succeeded train run that made a champion."""
    spec = write_case(tmp_path / "case", spec_text())
    db = tmp_path / "warehouse.duckdb"
    code, line = cli("run", str(spec), "-w", str(db), "--run-id", "train-1")
    assert code == 0, line
    return spec, db, "train-1"


def _scorable(folder: Path) -> Path:
    path = folder / "new.csv"
    regression_rows(40, seed=9).drop("price").write_csv(path)
    return path


def test_a_score_run_cannot_reuse_a_train_runs_id(
    trained: tuple[Path, Path, str], tmp_path: Path
) -> None:
    spec, db, run_id = trained
    before = dump(db)

    code, line = cli(
        "score", str(spec), str(_scorable(tmp_path)), "-w", str(db), "--run-id", run_id
    )

    refused(code, line, 2, run_id, "train run", "reused by the same pipeline and flow")
    assert dump(db) == before


def test_another_pipeline_cannot_reuse_a_run_id(
    trained: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, db, run_id = trained
    other = write_case(tmp_path / "other", spec_text().replace('name = "hostile"', 'name = "x"'))
    before = dump(db)

    code, line = cli("run", str(other), "-w", str(db), "--run-id", run_id)

    refused(code, line, 2, run_id, "pipeline 'hostile'")
    assert dump(db) == before


def test_a_failing_rerun_of_the_champions_run_keeps_the_champion(
    trained: tuple[Path, Path, str], tmp_path: Path
) -> None:
    spec, db, run_id = trained
    before = dump(db)
    champion = warehouse.champion(db, "hostile")
    assert champion is not None and champion["run_id"] == run_id
    bad = regression_rows().with_columns(price=regression_rows()["price"].str.replace(r"^", "x"))
    bad.write_csv(spec.parent / "data.csv")  # every price fails its cast: too many invalid

    code, line = cli("run", str(spec), "-w", str(db), "--run-id", run_id)

    refused(code, line, 3, "failed the schema")
    after = dump(db)
    assert {k: v for k, v in after.items() if k != "file sha256"} == {
        k: v for k, v in before.items() if k != "file sha256"
    }
    again = warehouse.champion(db, "hostile")
    assert again is not None and again["model_id"] == champion["model_id"]


def test_a_succeeding_rerun_of_the_same_pipeline_and_flow_replaces_its_rows(
    trained: tuple[Path, Path, str],
) -> None:
    spec, db, run_id = trained
    counts = warehouse.table_counts(db, run_id)

    code, line = cli("run", str(spec), "-w", str(db), "--run-id", run_id)

    assert code == 0, line
    assert warehouse.table_counts(db, run_id) == counts  # replaced, never duplicated


@pytest.mark.parametrize(
    "run_id",
    ["", "../../etc/passwd", "a b", "x" * 129, "run;DROP TABLE ml.runs", "-leading", "ünïcode"],
)
def test_a_malformed_run_id_is_refused_before_anything_is_written(
    tmp_path: Path, run_id: str
) -> None:
    spec = write_case(tmp_path / "case", spec_text())
    db = tmp_path / "warehouse.duckdb"

    code, line = cli("run", str(spec), "-w", str(db), "--run-id", run_id)

    refused(code, line, 2, "is not a run id")
    assert not db.exists() or warehouse.query(db, "SELECT count(*) FROM ml.runs").item() == 0

"""Model lifecycle through the CLI: manual promotion and rollback, show, repro."""

from __future__ import annotations

import getpass
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from mallard import warehouse
from mallard.examples import housing, spec_text, write_housing_csv
from tests.cli import mallard
from tests.conftest import FAST_CANDIDATES

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()


def write_pipeline(folder: Path) -> Path:
    write_housing_csv(folder / "data" / "housing.csv", rows=400, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    spec = folder / "housing.toml"
    spec.write_text(text.replace("folds = 5", "folds = 3"), encoding="utf-8")
    return spec


def train_run_id(db: Path) -> str:
    return str(
        warehouse.query(
            db, "SELECT run_id FROM ml.runs WHERE flow = 'train' ORDER BY started_at LIMIT 1"
        ).item()
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A warehouse with one auto-promoting housing run, built once for this module."""
    folder = tmp_path_factory.mktemp("lifecycle")
    db = folder / "warehouse.duckdb"
    code, output = mallard("run", str(write_pipeline(folder)), "--warehouse", str(db))
    assert code == 0 and "promoted to champion" in output, output
    return db


@pytest.fixture
def project(trained: Path) -> Iterator[Path]:
    """The folder of the module's spec and data, for tests that change them; restored after,
    because the stored runs point at these files."""
    files = [trained.parent / "housing.toml", trained.parent / "data" / "housing.csv"]
    saved = {path: path.read_bytes() for path in files}
    try:
        yield trained.parent
    finally:
        for path, content in saved.items():
            path.write_bytes(content)


@pytest.fixture
def wh(trained: Path, tmp_path: Path) -> Path:
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(trained, db)
    return db


def champion(db: Path) -> dict[str, Any]:
    [row] = warehouse.query(db, "SELECT * FROM ml.champions").to_dicts()
    return row


def models(db: Path) -> list[str]:
    return warehouse.query(db, "SELECT model_id FROM ml.models ORDER BY model_id")[
        "model_id"
    ].to_list()


def manual_rows(db: Path) -> pl.DataFrame:
    return warehouse.query(
        db, "SELECT * FROM ml.promotions WHERE run_id IS NULL ORDER BY decided_at"
    )


def aliases(db: Path) -> pl.DataFrame:
    return warehouse.query(db, "SELECT * FROM ml.aliases ORDER BY set_at")


# --- promote and roll back ----------------------------------------------------------------


def test_promote_then_roll_back(wh: Path) -> None:
    original = str(champion(wh)["model_id"])
    challenger = next(m for m in models(wh) if m != original and not m.endswith(":baseline"))

    code, output = mallard(
        "promote", "housing", challenger, "--reason", "easier to explain", "-w", str(wh)
    )

    assert code == 0, output
    assert f"now {challenger} (was {original})" in output
    now = champion(wh)
    assert now["model_id"] == challenger and now["previous_model_id"] == original
    assert now["reason"] == "easier to explain" and now["set_by"] == getpass.getuser()
    [decision] = manual_rows(wh).to_dicts()
    assert decision["model_id"] == challenger and decision["champion_model_id"] == original
    assert decision["promoted"] is True and decision["policy"] == "manual"
    assert decision["reason"] == "easier to explain"

    code, output = mallard("promote", "housing", original, "--reason", "rollback", "-w", str(wh))

    assert code == 0, output
    back = champion(wh)
    assert back["model_id"] == original and back["previous_model_id"] == challenger
    history = aliases(wh)
    assert history["model_id"].to_list() == [original, challenger, original]
    assert history["previous_model_id"].to_list() == [None, original, challenger]
    assert history["reason"].to_list()[1:] == ["easier to explain", "rollback"]
    assert manual_rows(wh)["reason"].to_list() == ["easier to explain", "rollback"]


def test_promoting_the_champion_changes_nothing(wh: Path) -> None:
    current = str(champion(wh)["model_id"])
    before = aliases(wh).height
    code, output = mallard("promote", "housing", current, "-w", str(wh))
    assert code == 0 and "already the champion" in output
    assert aliases(wh).height == before and manual_rows(wh).is_empty()


@pytest.mark.parametrize("case", ["unknown model", "other pipeline"])
def test_promote_unknown_model_is_exit_2(wh: Path, case: str) -> None:
    current = str(champion(wh)["model_id"])
    pipeline, model_id = ("housing", "housing-nope:ridge")
    if case == "other pipeline":
        pipeline, model_id = ("flats", current)
    code, output = mallard("promote", pipeline, model_id, "-w", str(wh))
    assert code == 2, output
    assert f"no model '{model_id}' of pipeline '{pipeline}'" in output
    assert aliases(wh).height == 1 and manual_rows(wh).is_empty()
    assert champion(wh)["model_id"] == current


def test_score_uses_the_manually_promoted_model(wh: Path, tmp_path: Path) -> None:
    spec = Path(str(warehouse.run_record(wh, train_run_id(wh))["spec_path"]))  # type: ignore[index]
    tree = next(m for m in models(wh) if m.endswith(":decision_tree"))
    if champion(wh)["model_id"] != tree:
        assert mallard("promote", "housing", tree, "-w", str(wh))[0] == 0
    housing(200, 9, invalid_fraction=0.0).drop("price").write_csv(tmp_path / "new.csv")

    code, output = mallard("score", str(spec), str(tmp_path / "new.csv"), "-w", str(wh))

    assert code == 0, output
    assert f"by {tree}" in output
    run = warehouse.query(wh, "SELECT * FROM ml.runs WHERE flow = 'score'").row(0, named=True)
    assert run["model_id"] == tree
    scored_by = warehouse.query_params(
        wh, "SELECT DISTINCT model_id FROM ml.predictions WHERE run_id = ?", [run["run_id"]]
    )
    assert scored_by["model_id"].to_list() == [tree]


# --- show -----------------------------------------------------------------------------------


def test_show_prints_lineage_and_models(wh: Path) -> None:
    run_id = train_run_id(wh)
    run = warehouse.run_record(wh, run_id)
    assert run is not None

    code, output = mallard("show", run_id, "-w", str(wh))

    assert code == 0, output
    assert f"data_sha256: {run['data_sha256']}" in output
    assert f"spec_sha256: {run['spec_sha256']}" in output
    assert "seed: 42" in output and "scikit-learn" in output
    for candidate in ("ridge", "decision_tree", "baseline"):
        assert f":{candidate}" in output
    assert "no champion yet" in output  # the promotion decision of the run


def test_show_unknown_run_is_exit_2(wh: Path) -> None:
    code, output = mallard("show", "no-such-run", "-w", str(wh))
    assert code == 2 and "no run 'no-such-run'" in output


# --- repro ----------------------------------------------------------------------------------


def test_repro_reproduces_and_never_changes_the_champion(wh: Path, project: Path) -> None:
    """The weak baseline is made champion first: the rule would replace it at once, so an
    unchanged champion shows the reproduction run really never promotes."""
    run_id = train_run_id(wh)
    assert mallard("promote", "housing", f"{run_id}:baseline", "-w", str(wh))[0] == 0
    before = champion(wh)
    # The spec file changing afterwards does not matter: the run's stored spec is re-run.
    spec = project / "housing.toml"
    spec.write_text(spec.read_text().replace("alpha = [0.1, 10.0]", "alpha = [3.0]"))

    code, output = mallard("repro", run_id, "-w", str(wh))

    assert code == 0, output
    assert "reproduced" in output and "not reproduced" not in output
    rerun = warehouse.query_params(
        wh, "SELECT * FROM ml.runs WHERE flow = 'train' AND run_id <> ?", [run_id]
    ).row(0, named=True)
    original = warehouse.run_record(wh, run_id)
    assert original is not None
    assert rerun["status"] == "succeeded" and rerun["data_sha256"] == original["data_sha256"]
    assert rerun["spec_toml"] == original["spec_toml"]
    comparison = warehouse.compare_runs(wh, run_id, rerun["run_id"])
    # the data, 3 evaluated models and the refit of the chosen one, the metrics
    assert comparison.height == 1 + 3 + 1 + 1 and comparison["identical"].all()
    [decision] = warehouse.query_params(
        wh, "SELECT * FROM ml.promotions WHERE run_id = ?", [rerun["run_id"]]
    ).to_dicts()
    assert decision["promoted"] is False
    assert decision["reason"] == "a reproduction run never changes the champion"
    after = champion(wh)
    assert after["model_id"] == before["model_id"] == f"{run_id}:baseline"
    assert after["set_at"] == before["set_at"]
    assert aliases(wh).height == 2  # the train run's and the manual one, none from the repro


def test_repro_with_changed_data_is_exit_4(wh: Path, project: Path) -> None:
    run_id = train_run_id(wh)
    data = project / "data" / "housing.csv"
    lines = data.read_text().splitlines()
    data.write_text("\n".join([*lines, lines[1]]) + "\n")  # one more (valid) row

    code, output = mallard("repro", run_id, "-w", str(wh))

    assert code == 4, output
    assert "not reproduced" in output
    assert "data sha256" in output and "false" in output.lower()
    assert champion(wh)["trained_in_run"] == run_id


@pytest.mark.parametrize("which", ["unknown", "score run"])
def test_repro_of_something_not_a_train_run_is_exit_2(wh: Path, tmp_path: Path, which: str) -> None:
    run_id = "no-such-run"
    if which == "score run":
        spec = Path(str(warehouse.run_record(wh, train_run_id(wh))["spec_path"]))  # type: ignore[index]
        housing(100, 9, invalid_fraction=0.0).drop("price").write_csv(tmp_path / "new.csv")
        assert mallard("score", str(spec), str(tmp_path / "new.csv"), "-w", str(wh))[0] == 0
        run_id = str(warehouse.query(wh, "SELECT run_id FROM ml.runs WHERE flow = 'score'").item())
    code, output = mallard("repro", run_id, "-w", str(wh))
    assert code == 2 and f"no train run '{run_id}'" in output

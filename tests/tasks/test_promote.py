"""The champion rule: `decide` both ways, and the train flow recording it end to end."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mallard import warehouse
from mallard.examples import spec_text, write_housing_csv
from mallard.flows.train import RunResult, train
from mallard.tasks.model_files import load_model
from mallard.tasks.promote import decide, manual_decision, promotion_rows
from tests.conftest import FAST_CANDIDATES

CANDIDATES = {"ridge", "decision_tree", "baseline"}


def rule(**overrides: Any) -> Any:
    """`decide` with an rmse champion at 100.0 and the new model at 90.0 unless overridden."""
    arguments: dict[str, Any] = {
        "pipeline": "housing",
        "model_id": "new:ridge",
        "model_value": 90.0,
        "metric": "rmse",
        "policy": "auto",
        "min_improvement": 0.0,
        "champion_model_id": "old:ridge",
        "champion_value": 100.0,
    }
    return decide(**{**arguments, **overrides})


# --- the rule, pure -------------------------------------------------------------------------


def test_no_champion_promotes() -> None:
    decision = rule(champion_model_id=None, champion_value=None)
    assert decision.promoted and decision.reason == "no champion yet"
    assert decision.improvement is None


def test_better_by_at_least_min_improvement_promotes() -> None:
    decision = rule(model_value=90.0, champion_value=100.0, min_improvement=10.0)
    assert decision.promoted
    assert decision.improvement == pytest.approx(10.0)
    assert "beats the champion" in decision.reason


def test_better_by_less_than_min_improvement_does_not_promote() -> None:
    decision = rule(model_value=95.0, champion_value=100.0, min_improvement=10.0)
    assert not decision.promoted
    assert decision.improvement == pytest.approx(5.0)
    assert "below the required 10" in decision.reason


def test_worse_does_not_promote() -> None:
    decision = rule(model_value=110.0, champion_value=100.0)
    assert not decision.promoted
    assert decision.improvement == pytest.approx(-10.0)
    assert "does not beat the champion" in decision.reason


def test_equal_does_not_promote_even_with_no_margin() -> None:
    decision = rule(model_value=100.0, champion_value=100.0, min_improvement=0.0)
    assert not decision.promoted and "does not beat" in decision.reason


@pytest.mark.parametrize(
    ("model_value", "champion_value", "promoted", "improvement"),
    [(0.80, 0.75, True, 0.05), (0.70, 0.75, False, -0.05), (0.76, 0.75, False, 0.01)],
)
def test_r2_greater_is_better(
    model_value: float, champion_value: float, promoted: bool, improvement: float
) -> None:
    decision = rule(
        metric="r2", model_value=model_value, champion_value=champion_value, min_improvement=0.02
    )
    assert decision.promoted is promoted
    assert decision.improvement == pytest.approx(improvement)


def test_rmse_lower_is_better_so_higher_is_worse() -> None:
    """The same numbers as r2's winning case lose on rmse."""
    assert not rule(metric="rmse", model_value=0.80, champion_value=0.75).promoted
    assert rule(metric="rmse", model_value=0.75, champion_value=0.80).promoted


def test_manual_policy_never_promotes_even_a_much_better_model() -> None:
    decision = rule(policy="manual", model_value=1.0, champion_value=100.0)
    assert not decision.promoted and "manual" in decision.reason
    assert not rule(policy="manual", champion_model_id=None, champion_value=None).promoted


def test_unmeasurable_champion_is_replaced_with_the_reason() -> None:
    decision = rule(
        champion_value=None, champion_problem="it cannot score this run's test rows (no 'x')"
    )
    assert decision.promoted
    assert "could not be measured" in decision.reason and "no 'x'" in decision.reason


def test_promotion_rows_alias_only_when_promoted() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    promotions, aliases = promotion_rows(rule(), at, set_by="train run r1")
    assert promotions.height == 1 and promotions["promoted"].to_list() == [True]
    assert aliases.to_dicts() == [
        {
            "pipeline": "housing",
            "alias": "champion",
            "model_id": "new:ridge",
            "set_at": at,
            "set_by": "train run r1",
            "reason": promotions["reason"][0],
            "previous_model_id": "old:ridge",
        }
    ]
    promotions, aliases = promotion_rows(rule(model_value=200.0), at, set_by="x")
    assert promotions["promoted"].to_list() == [False] and aliases.height == 0


# --- the train flow, end to end -------------------------------------------------------------


def write_pipeline(folder: Path, promote: str = "") -> Path:
    """The fast housing spec over 400 generated rows, with an optional [promote] section."""
    if not (folder / "data" / "housing.csv").exists():
        write_housing_csv(folder / "data" / "housing.csv", rows=400, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    text = text.replace("folds = 5", "folds = 3") + '\n[evaluate]\nprimary_metric = "rmse"\n'
    spec = folder / "housing.toml"
    spec.write_text(text + (f"\n[promote]\n{promote}\n" if promote else ""), encoding="utf-8")
    return spec


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None
) -> tuple[Path, RunResult]:
    """One auto-policy run on a fresh warehouse, built once for this module."""
    folder = tmp_path_factory.mktemp("first")
    db = folder / "warehouse.duckdb"
    result = train(write_pipeline(folder), db)
    assert isinstance(result, RunResult)
    return db, result


@pytest.fixture
def after_first(first_run: tuple[Path, RunResult], tmp_path: Path) -> Path:
    """A copy of the first run's warehouse, next to a spec over the same data."""
    shutil.copytree(first_run[0].parent / "data", tmp_path / "data")
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(first_run[0], db)
    return db


def champions(db: Path) -> list[dict[str, Any]]:
    return warehouse.query(db, "SELECT * FROM ml.champions").to_dicts()


def promotions_of(db: Path, run_id: str) -> list[dict[str, Any]]:
    return warehouse.query_params(
        db, "SELECT * FROM ml.promotions WHERE run_id = ?", [run_id]
    ).to_dicts()


def models_of(db: Path, run_id: str) -> pl.DataFrame:
    return warehouse.query_params(
        db, "SELECT * FROM ml.models WHERE run_id = ? ORDER BY candidate", [run_id]
    )


def test_first_run_promotes_its_best_on_the_selection_cv_refitted(
    first_run: tuple[Path, RunResult],
) -> None:
    db, result = first_run
    assert result.promoted and result.promotion_reason == "no champion yet"

    best = warehouse.query_params(
        db,
        "SELECT model_id FROM ml.metrics WHERE run_id = ? AND split = 'selection' "
        "AND metric = 'rmse' AND family <> 'dummy' ORDER BY value LIMIT 1",
        [result.run_id],
    ).item()
    assert result.best_model_id == best
    assert result.deployed_model_id == f"{best}.final"  # the refit on every labelled row
    [champion] = champions(db)
    assert champion["pipeline"] == "housing" and champion["model_id"] == result.deployed_model_id
    assert champion["trained_in_run"] == result.run_id
    assert champion["previous_model_id"] is None
    [decision] = promotions_of(db, result.run_id)
    assert decision["promoted"] is True and decision["model_id"] == result.deployed_model_id
    assert decision["policy"] == "auto" and decision["champion_model_id"] is None


def test_every_model_is_registered_and_loads_verified(first_run: tuple[Path, RunResult]) -> None:
    db, result = first_run
    models = models_of(db, result.run_id)
    refit = result.deployed_model_id.rsplit(":", 1)[1]
    assert set(models["candidate"]) == CANDIDATES | {refit}
    assert models["model_id"].to_list() == [f"{result.run_id}:{c}" for c in models["candidate"]]
    for row in models.iter_rows(named=True):
        assert row["size_bytes"] == len(row["skops_blob"]) > 0
        assert len(row["sha256"]) == 64
        model = load_model(row["skops_blob"], row["sha256"], json.loads(row["trusted_types"]))
        assert hasattr(model, "predict")
        assert row["data_sha256"] == warehouse.run_record(db, result.run_id)["data_sha256"]  # type: ignore[index]
        assert json.loads(row["feature_names"]) and row["target"] == "price"
    tree = models.filter(pl.col("candidate") == "decision_tree").row(0, named=True)
    assert "sklearn.tree._tree.Tree" in json.loads(tree["trusted_types"])
    profiles = warehouse.feature_profile(db, result.best_model_id)
    assert {"lotsize", "__prediction__"} <= set(profiles["feature"])


def test_identical_rerun_is_not_promoted_and_models_are_byte_identical(
    first_run: tuple[Path, RunResult], after_first: Path
) -> None:
    first_db, first = first_run
    result = train(write_pipeline(after_first.parent), after_first)
    assert isinstance(result, RunResult)

    assert not result.promoted
    assert "does not beat the champion" in result.promotion_reason
    [decision] = promotions_of(after_first, result.run_id)
    assert decision["promoted"] is False
    assert decision["champion_model_id"] == first.deployed_model_id
    assert decision["improvement"] == 0.0  # measured through its evaluated model: like for like
    [champion] = champions(after_first)
    assert champion["model_id"] == first.deployed_model_id  # unchanged

    # The determinism proof: same seed and data give the very same model files.
    before = models_of(first_db, first.run_id)
    again = models_of(after_first, result.run_id)
    assert again["candidate"].to_list() == before["candidate"].to_list()
    assert again["sha256"].to_list() == before["sha256"].to_list()
    assert again["skops_blob"].to_list() == before["skops_blob"].to_list()
    assert set(again["model_id"]).isdisjoint(before["model_id"])


def test_min_improvement_is_required(after_first: Path) -> None:
    """With the dummy baseline made champion, the new ridge/tree beats it clearly, yet not by
    the huge margin the spec asks for; with no margin it is promoted."""
    db = after_first
    [current] = champions(db)
    baseline = str(current["model_id"]).rsplit(":", 1)[0] + ":baseline"
    decision = manual_decision("housing", baseline, str(current["model_id"]), "test: weak champ")
    warehouse.write_promotion(db, *promotion_rows(decision, datetime.now(UTC), "pytest"))
    assert champions(db)[0]["model_id"] == baseline

    strict = train(write_pipeline(db.parent, "min_improvement = 1e12"), db)
    assert isinstance(strict, RunResult)
    assert not strict.promoted and "below the required 1e+12" in strict.promotion_reason
    [row] = promotions_of(db, strict.run_id)
    assert row["promoted"] is False and row["min_improvement"] == 1e12
    assert row["improvement"] > 0 and row["champion_model_id"] == baseline
    assert champions(db)[0]["model_id"] == baseline

    lenient = train(write_pipeline(db.parent, "min_improvement = 1.0"), db)
    assert isinstance(lenient, RunResult)
    assert lenient.promoted and "beats the champion" in lenient.promotion_reason
    [champion] = champions(db)
    assert champion["model_id"] == lenient.deployed_model_id
    assert champion["previous_model_id"] == baseline


def test_manual_policy_never_promotes(tmp_path: Path, prefect_server: None) -> None:
    db = tmp_path / "warehouse.duckdb"
    result = train(write_pipeline(tmp_path, 'policy = "manual"'), db)
    assert isinstance(result, RunResult)

    assert not result.promoted and "policy is manual" in result.promotion_reason
    assert champions(db) == []
    assert warehouse.query(db, "SELECT count(*) FROM ml.aliases").item() == 0
    [decision] = promotions_of(db, result.run_id)
    assert decision["promoted"] is False and decision["policy"] == "manual"
    # registered all the same, with the refit of the chosen one
    assert models_of(db, result.run_id).height == len(CANDIDATES) + 1


def test_manual_champion_is_the_current_champion(after_first: Path) -> None:
    """A manual alias has no run_id; it must still count when no run is being ignored (this
    is what `mallard score` and `mallard promote` ask)."""
    db = after_first
    [current] = champions(db)
    baseline = str(current["model_id"]).rsplit(":", 1)[0] + ":baseline"
    decision = manual_decision("housing", baseline, str(current["model_id"]), "pin it")
    warehouse.write_promotion(db, *promotion_rows(decision, datetime.now(UTC), "pytest"))

    for ignore in (None, "some-other-run"):
        row = warehouse.champion(db, "housing", ignore_run_id=ignore)
        assert row is not None and row["model_id"] == baseline, ignore
    assert champions(db)[0]["model_id"] == baseline


def test_rerun_with_the_same_run_id_is_not_judged_against_itself(
    first_run: tuple[Path, RunResult], after_first: Path
) -> None:
    _, first = first_run
    result = train(write_pipeline(after_first.parent), after_first, run_id=first.run_id)
    assert isinstance(result, RunResult)
    assert result.promoted and result.promotion_reason == "no champion yet"
    assert warehouse.query(after_first, "SELECT count(*) FROM ml.aliases").item() == 1
    assert len(promotions_of(after_first, first.run_id)) == 1
    assert champions(after_first)[0]["model_id"] == first.deployed_model_id

"""write_run / record_run_started on real DuckDB files, and the leaderboard view over them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from mallard import warehouse
from mallard.warehouse import RunBundle, RunRecord, record_run_started, write_run
from mallard.warehouse.connection import connect

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def run_record(run_id: str = "run-1", **fields: object) -> RunRecord:
    values: dict[str, object] = {
        "run_id": run_id,
        "pipeline": "housing",
        "task": "regression",
        "status": "succeeded",
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=30),
        "spec_toml": "[pipeline]\nname = 'housing'\n",
        "spec_sha256": "ab" * 32,
        "primary_metric": "rmse",
        "greater_is_better": False,
        "versions": {"duckdb": duckdb.__version__, "polars": pl.__version__},
    }
    values.update(fields)
    return RunRecord(**values)  # type: ignore[arg-type]


def quarantine(*rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "row_index": list(rows),
            "column_name": ["lotsize"] * len(rows),
            "check_name": ["dtype('Float64')"] * len(rows),
            "failure_value": ["n/a"] * len(rows),
        },
        schema={
            "row_index": pl.Int64,
            "column_name": pl.String,
            "check_name": pl.String,
            "failure_value": pl.String,
        },
    )


def cv_results(n_folds: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "candidate": ["ridge"] * n_folds,
            "family": ["ridge"] * n_folds,
            "params": [json.dumps({"alpha": 1.0})] * n_folds,
            "fold": list(range(n_folds)),
            "metric": ["rmse"] * n_folds,
            "value": [10.0 + fold for fold in range(n_folds)],
        },
        schema_overrides={"fold": pl.Int32},
    )


def metrics(run_id: str, values: dict[str, dict[str, float]]) -> pl.DataFrame:
    """values: family -> {"split/metric": value}, one model per family."""
    rows = []
    for family, scores in values.items():
        for key, value in scores.items():
            split, metric = key.split("/")
            rows.append((f"{run_id}:{family}", family, split, metric, value))
    return pl.DataFrame(
        rows, schema=["model_id", "family", "split", "metric", "value"], orient="row"
    )


def bundle(run_id: str = "run-1", **run_fields: object) -> RunBundle:
    return RunBundle(
        run=run_record(run_id, **run_fields),
        quarantine=quarantine(3, 7),
        cv_results=cv_results(),
        metrics=metrics(run_id, {"ridge": {"test/rmse": 5.0, "test/r2": 0.8}}),
    )


def select(db: Path, sql: str, params: list[object] | None = None) -> pl.DataFrame:
    with connect(db, read_only=True) as con:
        return con.sql(sql, params=params).pl()


# --- write_run ---------------------------------------------------------------------------------


def counts_of(db: Path, run_id: str) -> dict[str, int]:
    """Row counts under run_id of the tables that hold any."""
    return {t: n for t, n in warehouse.table_counts(db, run_id).items() if n}


def test_write_run_stores_every_table(db: Path) -> None:
    write_run(db, bundle())

    counts = warehouse.table_counts(db, "run-1")
    assert {t: counts[t] for t in ("runs", "quarantine", "cv_results", "metrics")} == {
        "runs": 1,
        "quarantine": 2,
        "cv_results": 3,
        "metrics": 2,
    }
    assert counts["models"] == counts["predictions"] == counts["drift"] == 0
    stored = warehouse.run_record(db, "run-1")
    assert stored is not None
    assert stored["status"] == "succeeded"
    assert stored["started_at"] == T0
    assert stored["spec_sha256"] == "ab" * 32
    assert json.loads(str(stored["versions"])) == {
        "duckdb": duckdb.__version__,
        "polars": pl.__version__,
    }
    q = select(db, "SELECT * FROM ml.quarantine ORDER BY row_index")
    assert q["run_id"].to_list() == ["run-1", "run-1"]
    assert q["row_index"].to_list() == [3, 7]
    cv = select(db, "SELECT fold, value, params FROM ml.cv_results ORDER BY fold")
    assert cv["value"].to_list() == [10.0, 11.0, 12.0]
    assert json.loads(cv["params"][0]) == {"alpha": 1.0}


def test_rerunning_the_same_run_id_does_not_duplicate(db: Path) -> None:
    write_run(db, bundle())
    first = select(db, "SELECT * FROM ml.metrics ORDER BY metric")

    write_run(db, bundle())
    write_run(db, bundle())

    counts = warehouse.table_counts(db, "run-1")
    assert {t: counts[t] for t in ("runs", "quarantine", "cv_results", "metrics")} == {
        "runs": 1,
        "quarantine": 2,
        "cv_results": 3,
        "metrics": 2,
    }
    assert counts["models"] == counts["predictions"] == counts["drift"] == 0
    assert select(db, "SELECT * FROM ml.metrics ORDER BY metric").equals(first)


def test_a_rerun_replaces_rows_it_no_longer_has(db: Path) -> None:
    write_run(db, bundle())

    write_run(
        db, RunBundle(run=run_record(status="failed", error="boom"), quarantine=quarantine(9))
    )

    assert counts_of(db, "run-1") == {"runs": 1, "quarantine": 1}
    stored = warehouse.run_record(db, "run-1")
    assert stored is not None and (stored["status"], stored["error"]) == ("failed", "boom")
    assert select(db, "SELECT row_index FROM ml.quarantine")["row_index"].to_list() == [9]


def test_writing_one_run_leaves_other_runs_alone(db: Path) -> None:
    write_run(db, bundle("run-1"))
    write_run(db, bundle("run-2"))

    write_run(db, RunBundle(run=run_record("run-2")))

    assert warehouse.table_counts(db, "run-1")["metrics"] == 2
    assert warehouse.table_counts(db, "run-2")["metrics"] == 0


def test_empty_and_missing_frames_write_nothing(db: Path) -> None:
    write_run(db, RunBundle(run=run_record(), quarantine=quarantine(), metrics=None))

    assert counts_of(db, "run-1") == {"runs": 1}


def test_a_failure_mid_write_rolls_back_to_the_previous_state(db: Path) -> None:
    write_run(db, bundle())
    before = {
        table: select(db, f"SELECT * EXCLUDE (run_id) FROM ml.{table} ORDER BY ALL")
        for table in ("runs", "quarantine", "cv_results", "metrics")
    }
    bad_metrics = metrics("run-1", {"lasso": {"test/rmse": 1.0}}).with_columns(bogus=pl.lit(1))
    bad = RunBundle(
        run=run_record(status="failed", error="second attempt"),
        quarantine=quarantine(1, 2, 3, 4),  # inserted before metrics fail
        cv_results=cv_results(5),
        metrics=bad_metrics,
    )

    with pytest.raises(duckdb.Error, match="bogus"):  # the cause, not a follow-on error
        write_run(db, bad)

    for table, frame in before.items():
        after = select(db, f"SELECT * EXCLUDE (run_id) FROM ml.{table} ORDER BY ALL")
        assert after.equals(frame), table


def test_a_failed_first_write_leaves_no_rows(db: Path) -> None:
    bad = RunBundle(run=run_record("new"), quarantine=quarantine(1).with_columns(oops=pl.lit(0)))

    with pytest.raises(duckdb.Error, match="oops"):
        write_run(db, bad)

    assert counts_of(db, "new") == {}


def test_the_file_is_released_after_a_failed_write(db: Path) -> None:
    """Another process can open the file at once: the failed write closed its connection."""
    with pytest.raises(duckdb.Error):
        write_run(db, RunBundle(run=run_record(), metrics=pl.DataFrame({"bogus": [1]})))

    opened = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert opened.returncode == 0, opened.stderr


# --- record_run_started ------------------------------------------------------------------------


def test_a_started_run_is_visible_then_replaced_by_the_finished_run(db: Path) -> None:
    record_run_started(db, run_record(status="running", finished_at=None))

    started = warehouse.run_record(db, "run-1")
    assert started is not None and started["status"] == "running"
    assert started["finished_at"] is None

    write_run(db, bundle())

    assert warehouse.table_counts(db, "run-1")["runs"] == 1
    finished = warehouse.run_record(db, "run-1")
    assert finished is not None and finished["status"] == "succeeded"
    assert finished["finished_at"] == T0 + timedelta(seconds=30)


# --- the leaderboard view ----------------------------------------------------------------------


def board(db: Path, run_id: str) -> list[tuple[str, float, int]]:
    frame = select(
        db,
        "SELECT family, value, rank FROM ml.leaderboard WHERE run_id = ? ORDER BY rank, family",
        [run_id],
    )
    return list(frame.iter_rows())


SCORES = {
    # lasso is best on rmse, ridge best on r2; validation and cv disagree on purpose
    "ridge": {"test/rmse": 20.0, "test/r2": 0.90, "validation/rmse": 1.0, "cv/rmse": 1.0},
    "lasso": {"test/rmse": 10.0, "test/r2": 0.70, "validation/rmse": 99.0, "cv/rmse": 99.0},
    "dummy": {"test/rmse": 50.0, "test/r2": 0.00, "validation/rmse": 50.0, "cv/rmse": 50.0},
}


def test_leaderboard_ranks_on_validation_rmse_ascending_and_shows_test(db: Path) -> None:
    """Ranked the way the champion candidate is chosen (validation); test is only reported."""
    write_run(db, RunBundle(run=run_record("by-rmse"), metrics=metrics("by-rmse", SCORES)))

    assert board(db, "by-rmse") == [("ridge", 20.0, 1), ("dummy", 50.0, 2), ("lasso", 10.0, 3)]


def test_leaderboard_ranks_r2_descending_on_test_without_a_validation_score(db: Path) -> None:
    run = run_record("by-r2", primary_metric="r2", greater_is_better=True)

    write_run(db, RunBundle(run=run, metrics=metrics("by-r2", SCORES)))

    assert board(db, "by-r2") == [("ridge", 0.9, 1), ("lasso", 0.7, 2), ("dummy", 0.0, 3)]


def test_leaderboard_ties_share_a_rank(db: Path) -> None:
    scores = {"a": {"test/rmse": 3.0}, "b": {"test/rmse": 3.0}, "c": {"test/rmse": 4.0}}

    write_run(db, RunBundle(run=run_record("tie"), metrics=metrics("tie", scores)))

    assert [rank for _, _, rank in board(db, "tie")] == [1, 1, 3]


def test_leaderboard_shows_only_succeeded_runs(db: Path) -> None:
    write_run(db, RunBundle(run=run_record("ok"), metrics=metrics("ok", SCORES)))
    failed = run_record("broken", status="failed", error="x")
    write_run(db, RunBundle(run=failed, metrics=metrics("broken", SCORES)))

    assert board(db, "broken") == []
    assert len(board(db, "ok")) == 3


def test_leaderboard_query_picks_the_latest_succeeded_run_of_the_pipeline(db: Path) -> None:
    old = run_record("old", finished_at=T0 + timedelta(hours=1))
    new = run_record("new", finished_at=T0 + timedelta(hours=2))
    newest_failed = run_record("newest", status="failed", finished_at=T0 + timedelta(hours=3))
    other = run_record("other", pipeline="prices", finished_at=T0 + timedelta(hours=4))
    for run in (old, new, newest_failed, other):
        write_run(db, RunBundle(run=run, metrics=metrics(run.run_id, SCORES)))

    latest = warehouse.leaderboard(db, "housing")

    assert set(latest["run_id"]) == {"new"}
    assert latest["model_id"].to_list() == ["new:ridge", "new:dummy", "new:lasso"]
    assert latest["rank"].to_list() == [1, 2, 3]
    assert set(warehouse.leaderboard(db, run_id="old")["run_id"]) == {"old"}
    assert warehouse.leaderboard(db, "no-such-pipeline").height == 0

"""Training with the DuckDB engine (issue 13): the valid rows stay in Parquet, `[features] sql`
runs in DuckDB over every row, and only the rows the run fits or evaluates are gathered. Every
fitted model and figure must equal the in-memory engine's on the same input."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.examples import spec_text, write_example, write_housing_csv
from mallard.flows.train import train
from mallard.flows.training_rows import Positions, gathered_rows
from mallard.tasks.split import Split
from tests.cli import mallard_process

pytestmark = pytest.mark.usefixtures("prefect_server")

BOOSTING_AND_RIDGE = """
[[candidates]]
family = "ridge"
params = { alpha = [0.1, 10.0] }

[[candidates]]
family = "hist_gradient_boosting"
params = { learning_rate = [0.1], max_iter = [40] }
"""
# A window over every row: per batch it would see one batch, so it must run over the whole file.
WINDOW_SQL = (
    'sql = "SELECT *, avg(lotsize) OVER (PARTITION BY bedrooms) AS area_mean, '
    'lotsize / NULLIF(bedrooms, 0) AS area_per_room FROM source"'
)


def _housing(folder: Path, engine: str, extra: str = "", rows: int = 1500) -> Path:
    data = folder / "data" / "housing.csv"
    if not data.exists():
        write_housing_csv(data, rows=rows, seed=11)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + BOOSTING_AND_RIDGE
    text = text.replace('sql = ""', WINDOW_SQL).replace("folds = 5", "folds = 3")
    text += f'\n[ingest]\nengine = "{engine}"\nmemory_limit = "64MB"\n' + extra
    spec = folder / f"housing_{engine}.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def _mallard(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mallard ARGS` as a process on its own temporary Prefect server, with its INFO log."""
    env = dict(os.environ, MALLARD_HOME=str(folder / "home"), PREFECT_LOGGING_LEVEL="INFO")
    return mallard_process(env, *args, timeout=600)


def _results(db: Path) -> dict[str, pl.DataFrame]:
    """What a run wrote, without the run id (it differs between runs)."""
    strip = "regexp_replace(model_id, '^[^:]*:', '') AS model"
    return {
        "cv": warehouse.query(
            db,
            "SELECT candidate, params, metric, fold, value FROM ml.cv_results ORDER BY ALL",
        ),
        "metrics": warehouse.query(
            db,
            f"SELECT {strip}, split, metric, value, std, ci_low, ci_high FROM ml.metrics "
            "ORDER BY ALL",
        ),
        "models": warehouse.query(
            db, "SELECT candidate, sha256, trained_on FROM ml.models ORDER BY candidate"
        ),
        "predictions": warehouse.query(
            db,
            f"SELECT {strip}, row_index, split, actual, prediction, probability "
            "FROM ml.predictions ORDER BY ALL",
        ),
        "run": warehouse.query(
            db, "SELECT n_rows, n_invalid, train_rows, ingest_engine FROM ml.runs"
        ),
    }


def _same_run(memory: dict[str, pl.DataFrame], disk: dict[str, pl.DataFrame]) -> None:
    assert memory["run"]["ingest_engine"].item() == "polars"
    assert disk["run"]["ingest_engine"].item() == "duckdb"
    assert memory["run"].drop("ingest_engine").equals(disk["run"].drop("ingest_engine"))
    for name in ("cv", "metrics", "models", "predictions"):
        assert memory[name].height > 0, name
        assert memory[name].equals(disk[name]), name


def test_a_sampled_run_on_disk_equals_the_same_run_in_memory(tmp_path: Path) -> None:
    sample = "\n[train]\nmax_rows = 400\n"  # of ~1,050 train rows: tuning fits a sample
    results = {}
    for engine in ("polars", "duckdb"):
        db = tmp_path / f"{engine}.duckdb"
        train(_housing(tmp_path, engine, sample), warehouse_file=db)
        results[engine] = _results(db)
    _same_run(results["polars"], results["duckdb"])
    assert results["duckdb"]["run"]["train_rows"].item() == 400
    # The generator plants invalid rows: row_index is the input position, on both paths.
    assert results["duckdb"]["run"]["n_invalid"].item() > 0
    assert results["duckdb"]["models"]["trained_on"].to_list().count("labelled") == 1


def test_classification_with_pii_and_fairness_on_disk_equals_in_memory(tmp_path: Path) -> None:
    """Stratified split (the target of every row read alone), a generalised and a dropped PII
    column, the fairness audit's column, and features.sql over the protected rows."""
    base = write_example("fraud", tmp_path, rows=3000)
    text = base.read_text(encoding="utf-8")
    text = (
        text[: text.index("[[candidates]]")]
        + ('[[candidates]]\nfamily = "logistic_regression"\nparams = { C = [0.1, 1.0] }\n')
        + text[text.index("[fairness]") :]
    )
    text = text.replace(
        'drop = ["customer_id"]',
        'drop = ["customer_id"]\nsql = "SELECT *, amount / (1 + velocity_24h) AS amount_per_use, '
        'left(postcode, 1) AS area FROM source"',
    )
    results, profiled = {}, {}
    for engine in ("polars", "duckdb"):
        spec = tmp_path / f"fraud_{engine}.toml"
        spec.write_text(
            text + f'\n[ingest]\nengine = "{engine}"\nmemory_limit = "64MB"\n', encoding="utf-8"
        )
        db = tmp_path / f"{engine}.duckdb"
        train(spec, warehouse_file=db)
        results[engine] = _results(db)
        profiles = warehouse.query(db, "SELECT feature FROM ml.feature_profiles")
        profiled[engine] = set(profiles["feature"])
        fairness = warehouse.query(
            db, 'SELECT attribute, "group", metric, value FROM ml.fairness ORDER BY ALL'
        )
        results[engine]["fairness"] = fairness
    _same_run(results["polars"], results["duckdb"])
    assert results["polars"]["fairness"].height > 0
    assert results["polars"]["fairness"].equals(results["duckdb"]["fairness"])
    assert "email" not in profiled["duckdb"] and "area" in profiled["duckdb"]


def test_features_sql_that_reorders_without_the_row_key_fails_in_one_line(
    tmp_path: Path,
) -> None:
    spec = _housing(tmp_path, "duckdb", rows=300)
    spec.write_text(
        spec.read_text(encoding="utf-8").replace(
            WINDOW_SQL, 'sql = "SELECT price, lotsize, bedrooms FROM source ORDER BY lotsize"'
        ),
        encoding="utf-8",
    )
    db = tmp_path / "warehouse.duckdb"
    done = _mallard(tmp_path, "run", str(spec), "--warehouse", str(db))
    assert done.returncode == 2, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert said == [
        "error: [features.sql] the query reorders rows (a window function or ORDER BY) and does "
        "not keep the source's row key: select * (or __mallard_row) so each result row can be "
        "paired with its input row"
    ]
    assert "Traceback" not in done.stderr
    failed = warehouse.query(db, "SELECT status FROM ml.runs")
    assert failed["status"].to_list() == ["failed"]
    assert warehouse.query(db, "SELECT count(*) AS n FROM ml.models")["n"].item() == 0


def test_gathering_reads_only_the_wanted_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pl.DataFrame({"row_index": range(0, 2000, 2), "x": range(1000)}).write_parquet(path)
    wanted = Positions(gathered=pl.Series([3, 10, 11, 999]).to_numpy())
    frame = gathered_rows.fn(str(path), wanted.gathered)
    assert frame["x"].to_list() == [3, 10, 11, 999]
    assert frame["row_index"].to_list() == [6, 20, 22, 1998]
    split = wanted.split(Split(*(pl.Series(v).to_numpy() for v in ([3, 999], [10], [11]))))
    assert [s.tolist() for s in (split.train, split.validation, split.test)] == [[0, 3], [1], [2]]


def test_a_cli_run_on_disk_gathers_only_the_sample_and_the_holdout(tmp_path: Path) -> None:
    """The user's journey: `mallard run` as a process on a file above the DuckDB engine's size
    rule, a max_rows sample; the log says how many rows came into memory."""
    write_housing_csv(tmp_path / "data" / "housing.csv", rows=20_000, seed=5)
    spec = _housing(
        tmp_path, "auto", "\n[train]\nmax_rows = 2000\n\n[evaluate]\nfinalize = false\n"
    )
    text = spec.read_text(encoding="utf-8").replace(
        'engine = "auto"', 'engine = "auto"\nduckdb_above_mb = 0.1'
    )
    spec.write_text(text, encoding="utf-8")
    db = tmp_path / "warehouse.duckdb"
    done = _mallard(tmp_path, "run", str(spec), "--warehouse", str(db))
    assert done.returncode == 0, done.stderr
    logged = done.stdout + done.stderr
    found = re.search(r"gather: (\d+) of (\d+) feature rows", logged)
    assert found, logged[-2000:]
    gathered, total = int(found[1]), int(found[2])
    run = warehouse.query(db, "SELECT n_rows, n_invalid, train_rows, ingest_engine FROM ml.runs")
    assert run["ingest_engine"].item() == "duckdb" and run["train_rows"].item() == 2000
    assert total == run["n_rows"].item() - run["n_invalid"].item()
    held_out = 2 * round(total * 0.15)  # validation + test rows, all evaluated
    assert gathered == 2000 + held_out < total
    params = json.loads(
        warehouse.query(db, "SELECT params FROM ml.models WHERE candidate = 'ridge'")["params"][0]
    )
    assert params["alpha"] in (0.1, 10.0)


def test_a_missing_split_column_on_disk_fails_as_in_memory(tmp_path: Path) -> None:
    """The split is drawn before the rows are gathered: the same user error, nothing stored."""
    messages = {}
    for engine in ("polars", "duckdb"):
        spec = _housing(tmp_path, engine, rows=300)
        text = spec.read_text(encoding="utf-8").replace(
            'strategy = "random"', 'strategy = "group"\ncolumn = "street"'
        )
        spec.write_text(text, encoding="utf-8")
        db = tmp_path / f"{engine}.duckdb"
        with pytest.raises(InputError) as failed:
            train(spec, warehouse_file=db)
        messages[engine] = str(failed.value)
        assert warehouse.query(db, "SELECT count(*) AS n FROM ml.models")["n"].item() == 0
    assert (
        messages["duckdb"] == messages["polars"] == "[split.column] no column 'street' in the data"
    )

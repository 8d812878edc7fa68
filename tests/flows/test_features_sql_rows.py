"""A features.sql that drops rows (WHERE): every stored prediction and every scored row still
points at the input row it was made from, in memory and on disk, when training and scoring."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from mallard import warehouse
from mallard.examples import housing, spec_text, write_housing_csv
from mallard.flows.train import train
from mallard.tasks.model_files import load_model
from tests.cli import mallard_process
from tests.conftest import FAST_CANDIDATES

pytestmark = pytest.mark.usefixtures("prefect_server")

FILTER = 'sql = "SELECT * FROM source WHERE bedrooms >= 3"'
FILTER_WITHOUT_KEY = 'sql = "SELECT * EXCLUDE (__mallard_row) FROM source WHERE bedrooms >= 3"'
INTS = ["bedrooms", "bathrms", "stories", "garagepl", "year_built"]


def _spec(folder: Path, engine: str, sql: str = FILTER) -> Path:
    data = folder / "data" / "housing.csv"
    if not data.exists():
        write_housing_csv(data, rows=900, seed=4)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    text = text.replace('sql = ""', sql).replace("folds = 5", "folds = 3")
    spec = folder / f"housing_{engine}.toml"
    spec.write_text(text + f'\n[ingest]\nengine = "{engine}"\n', encoding="utf-8")
    return spec


def _input(folder: Path) -> pl.DataFrame:
    return pl.read_csv(folder / "data" / "housing.csv", infer_schema=False).with_row_index()


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_training_predictions_point_at_their_input_rows(tmp_path: Path, engine: str) -> None:
    db = tmp_path / "warehouse.duckdb"
    train(_spec(tmp_path, engine), warehouse_file=db)
    stored = warehouse.query(
        db, "SELECT DISTINCT row_index, actual FROM ml.predictions ORDER BY row_index"
    )
    source = _input(tmp_path).filter(pl.col("index").is_in(stored["row_index"].implode()))
    assert source.height == stored.height > 0
    assert (source["bedrooms"].cast(pl.Int64) >= 3).all()  # only rows the query kept
    np.testing.assert_array_equal(source["price"].cast(pl.Float64), stored["actual"])


def _mallard(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MALLARD_HOME=str(folder / "home"), MALLARD_SCORE_BATCH_ROWS="70")
    return mallard_process(env, *args, timeout=600)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_scored_rows_point_at_their_input_rows(tmp_path: Path, engine: str) -> None:
    """Scoring on disk runs features.sql per 70-row batch: each batch drops its own rows."""
    spec = _spec(tmp_path, engine)
    db = tmp_path / "warehouse.duckdb"
    train(spec, warehouse_file=db)
    new = housing(400, 12, invalid_fraction=0.0).drop("price")
    new = new.with_columns(house=pl.format("H{}", pl.int_range(400)))
    new.write_csv(tmp_path / "new.csv")
    spec.write_text(spec.read_text().replace("[source]\n", '[source]\nid = "house"\n'))
    out = tmp_path / "scored.parquet"
    done = _mallard(
        tmp_path, "score", str(spec), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(db)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scored = pl.read_parquet(out)
    rows = pl.read_csv(tmp_path / "new.csv")
    picked = rows[scored["row_index"].to_list()]
    assert scored["house"].to_list() == picked["house"].to_list()
    assert scored.height == rows.filter(pl.col("bedrooms") >= 3).height > 0
    champion = warehouse.champion(db, "housing")
    assert champion is not None
    model = load_model(
        champion["skops_blob"], champion["sha256"], json.loads(champion["trusted_types"])
    )
    X = picked.with_columns(pl.col("lotsize").cast(pl.Float64), pl.col(INTS).cast(pl.Int64))
    predicted = model.predict(X.select(json.loads(champion["feature_names"])))
    np.testing.assert_allclose(scored["prediction"].to_numpy(), predicted, rtol=1e-9)
    stored = warehouse.query(
        db,
        "SELECT row_index FROM ml.predictions p JOIN ml.runs r USING (run_id) "
        "WHERE r.flow = 'score' ORDER BY row_index",
    )
    assert stored["row_index"].to_list() == sorted(scored["row_index"].to_list())


def _refused_in_one_line(done: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """The one error line's (rows made, valid rows) of a refused features.sql."""
    assert done.returncode == 2, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(said) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    refused = re.fullmatch(
        r"error: \[features\.sql\] the query made (\d+) rows of (\d+) and does not keep the "
        r"source's row key: select \* \(or __mallard_row\) so each prediction can be paired "
        r"with its input row",
        said[0],
    )
    assert refused, said
    return int(refused[1]), int(refused[2])


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_a_filter_without_the_row_key_is_refused_by_run_before_any_model(
    tmp_path: Path, engine: str
) -> None:
    """Its predictions would carry positions among the kept rows as row_index, pointing an
    analyst's join at other input rows, and `score` would refuse its model anyway."""
    spec = _spec(tmp_path, engine, FILTER_WITHOUT_KEY)
    db = tmp_path / "warehouse.duckdb"

    done = _mallard(tmp_path, "run", str(spec), "--warehouse", str(db))

    made, valid = _refused_in_one_line(done)
    assert 0 < made < valid <= 900  # the rows the filter kept, of the rows validation kept
    assert warehouse.query(db, "SELECT status FROM ml.runs").rows() == [("failed",)]
    for table in ("models", "predictions", "metrics", "cv_results"):
        assert warehouse.query(db, f"SELECT count(*) AS n FROM ml.{table}")["n"].item() == 0


def test_a_filter_without_the_row_key_cannot_be_scored(tmp_path: Path) -> None:
    """A champion trained before `run` refused such a query: score uses its stored [features]."""
    db = tmp_path / "warehouse.duckdb"
    spec = _spec(tmp_path, "polars")
    train(spec, warehouse_file=db)
    with duckdb.connect(str(db)) as con:
        changed = con.execute(
            "UPDATE ml.runs SET spec_toml = replace(spec_toml, $kept, $dropped) "
            "WHERE contains(spec_toml, $kept)",
            {"kept": FILTER, "dropped": FILTER_WITHOUT_KEY},
        ).fetchall()
    assert changed == [(1,)]
    new = housing(300, 13).drop("price")
    new.write_csv(tmp_path / "new.csv")
    out = tmp_path / "scored.parquet"
    done = _mallard(
        tmp_path, "score", str(spec), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(db)
    )
    _refused_in_one_line(done)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    runs = warehouse.query(db, "SELECT flow, status FROM ml.runs ORDER BY started_at")
    assert runs.rows() == [("train", "succeeded"), ("score", "failed")]

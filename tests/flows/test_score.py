"""The score flow end to end: the champion scores validated new rows; predictions and drift go
to the warehouse; bad input fails cleanly, leaving only the run record and quarantine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mallard import warehouse
from mallard.cli import app
from mallard.core.errors import InputError
from mallard.examples import fraud, housing, spec_text, write_example, write_housing_csv
from mallard.flows.score import ScoreResult, score
from mallard.flows.train import RunResult, train
from mallard.tasks.model_files import load_model
from tests.conftest import FAST_CANDIDATES

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()
# Numeric features read from CSV; lotsize and bedrooms are declared in the spec's schema.
INTS = ["bedrooms", "bathrms", "stories", "garagepl", "year_built"]


def mallard(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output, output
    return result.exit_code, " ".join(output.split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> tuple[Path, Path]:
    """(spec, warehouse) after one auto-promoting run. 2,000 rows, so the reference profiles
    (train split for features, test split for predictions) are not dominated by sampling noise."""
    folder = tmp_path_factory.mktemp("scoring")
    write_housing_csv(folder / "data" / "housing.csv", rows=2000, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    spec = folder / "housing.toml"
    spec.write_text(text.replace("folds = 5", "folds = 3"), encoding="utf-8")
    db = folder / "warehouse.duckdb"
    result = train(spec, db)
    assert isinstance(result, RunResult) and result.promoted
    return spec, db


@pytest.fixture
def spec(trained: tuple[Path, Path]) -> Path:
    return trained[0]


@pytest.fixture
def wh(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the trained warehouse."""
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(trained[1], db)
    return db


def new_rows(path: Path, rows: int = 1000, seed: int = 11, invalid: float = 0.0) -> pl.DataFrame:
    """Fresh housing rows without the target, written as CSV to `path`; returns what was
    written (all text, as the generator makes it)."""
    frame = housing(rows, seed, invalid_fraction=invalid).drop("price")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return frame


def champion_id(db: Path) -> str:
    return str(warehouse.query(db, "SELECT model_id FROM ml.champions").item())


def stored(db: Path, table: str, run_id: str) -> pl.DataFrame:
    return warehouse.query_params(
        db, f"SELECT * FROM ml.{table} WHERE run_id = ? ORDER BY ALL", [run_id]
    )


def only_run(db: Path, flow: str = "score") -> dict[str, object]:
    [run] = warehouse.query_params(db, "SELECT * FROM ml.runs WHERE flow = ?", [flow]).to_dicts()
    return run


def predict_with_champion(db: Path, rows: pl.DataFrame) -> np.ndarray:
    """Load the champion as any client would (sha256 and trusted types checked) and predict."""
    row = warehouse.champion(db, "housing")
    assert row is not None
    model = load_model(row["skops_blob"], row["sha256"], json.loads(row["trusted_types"]))
    X = rows.with_columns(pl.col("lotsize").cast(pl.Float64), pl.col(INTS).cast(pl.Int64)).select(
        json.loads(row["feature_names"])
    )
    return np.asarray(model.predict(X), dtype=float)


def test_valid_rows_are_all_scored_with_stable_drift(spec: Path, wh: Path, tmp_path: Path) -> None:
    rows = new_rows(tmp_path / "new.csv")
    result = score(spec, str(tmp_path / "new.csv"), wh)
    assert isinstance(result, ScoreResult)

    assert result.model_id == champion_id(wh)
    assert result.n_rows == result.n_scored == rows.height and result.n_invalid == 0
    predictions = stored(wh, "predictions", result.run_id).sort("row_index")
    assert predictions.height == rows.height
    assert predictions["row_index"].to_list() == list(range(rows.height))
    assert set(predictions["model_id"]) == {result.model_id}
    # row_index points back at the input row that was scored
    np.testing.assert_allclose(
        predictions["prediction"].to_numpy(), predict_with_champion(wh, rows), rtol=1e-9
    )
    drift = stored(wh, "drift", result.run_id)
    features = set(json.loads(str(warehouse.champion(wh, "housing")["feature_names"])))  # type: ignore[index]
    assert set(drift["feature"]) == features | {"__prediction__"}
    assert set(drift["status"]) == {"stable"}, drift.filter(pl.col("status") != "stable")
    assert set(drift["model_id"]) == {result.model_id}
    run = warehouse.run_record(wh, result.run_id)
    assert run is not None
    assert (run["flow"], run["status"], run["model_id"]) == ("score", "succeeded", result.model_id)
    assert run["n_rows"] == rows.height and run["data_sha256"]
    assert stored(wh, "quarantine", result.run_id).is_empty()


def test_target_column_may_be_present_and_null(spec: Path, wh: Path, tmp_path: Path) -> None:
    rows = housing(300, 5, invalid_fraction=0.0).with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("price")).alias("price")
    )
    rows.write_csv(tmp_path / "with_price.csv")
    result = score(spec, str(tmp_path / "with_price.csv"), wh)
    assert isinstance(result, ScoreResult)
    assert result.n_scored == 300 and result.n_invalid == 0


def test_invalid_rows_are_quarantined_under_the_score_run(
    spec: Path, wh: Path, tmp_path: Path
) -> None:
    rows = new_rows(tmp_path / "dirty.csv", rows=1000, seed=12, invalid=0.02)
    lotsize = rows["lotsize"].cast(pl.Float64, strict=False)
    bad = (
        lotsize.is_null()
        | (lotsize < 0)
        | (rows["bedrooms"].cast(pl.Int64) > 20)
        | ~rows["driveway"].is_in(["yes", "no"])
    )
    expected_bad = set(np.flatnonzero(bad.to_numpy()).tolist())
    assert 10 <= len(expected_bad) <= 20  # the generator planted them (its price defects are gone)

    result = score(spec, str(tmp_path / "dirty.csv"), wh)
    assert isinstance(result, ScoreResult)

    quarantine = stored(wh, "quarantine", result.run_id)
    assert set(quarantine["row_index"]) == expected_bad
    assert {"-1.0", "99", "maybe", "n/a"} <= set(quarantine["failure_value"])
    assert result.n_invalid == len(expected_bad)
    predictions = stored(wh, "predictions", result.run_id)
    assert predictions.height == result.n_scored == rows.height - len(expected_bad)
    assert set(predictions["row_index"]) == set(range(rows.height)) - expected_bad
    scored = sorted(predictions["row_index"].to_list())
    np.testing.assert_allclose(
        predictions.sort("row_index")["prediction"].to_numpy(),
        predict_with_champion(wh, rows[scored]),
        rtol=1e-9,
    )


def test_drifted_feature_is_flagged_and_others_are_not(
    spec: Path, wh: Path, tmp_path: Path
) -> None:
    rows = housing(1000, 13, invalid_fraction=0.0).drop("price")
    rows.with_columns((pl.col("lotsize").cast(pl.Float64) * 3).alias("lotsize")).write_csv(
        tmp_path / "drifted.csv"
    )
    result = score(spec, str(tmp_path / "drifted.csv"), wh)
    assert isinstance(result, ScoreResult)

    status = dict(stored(wh, "drift", result.run_id).select("feature", "status").iter_rows())
    assert status["lotsize"] == "shifted"
    assert status["year_built"] == "stable" and status["bedrooms"] == "stable"
    assert status["__prediction__"] != "stable"  # bigger lots, dearer houses
    assert result.n_scored == 1000  # drift is reported, never a reason to refuse


def test_glob_input_scores_every_file(spec: Path, wh: Path, tmp_path: Path) -> None:
    a = new_rows(tmp_path / "incoming" / "a.csv", rows=200, seed=1)
    b = new_rows(tmp_path / "incoming" / "b.csv", rows=300, seed=2)
    result = score(spec, str(tmp_path / "incoming" / "*.csv"), wh)
    assert isinstance(result, ScoreResult)
    assert result.n_scored == a.height + b.height
    predictions = stored(wh, "predictions", result.run_id).sort("row_index")
    np.testing.assert_allclose(
        predictions["prediction"].to_numpy(),
        predict_with_champion(wh, pl.concat([a, b])),
        rtol=1e-9,
    )


# --- failures through the CLI: exit code, one line, nothing half-written ---------------------


def assert_failed_cleanly(db: Path, message: str) -> dict[str, object]:
    run = only_run(db)
    assert run["status"] == "failed" and message in str(run["error"])
    counts = warehouse.table_counts(db, str(run["run_id"]))
    assert counts["predictions"] == counts["drift"] == 0
    return run


def test_no_champion_is_exit_2(spec: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.duckdb"
    new_rows(tmp_path / "new.csv")
    code, output = mallard("score", str(spec), str(tmp_path / "new.csv"), "-w", str(fresh))
    assert code == 2, output
    assert "no champion model" in output and "mallard promote" in output
    # The champion is read before the run starts: nothing is written, not even a run row.
    assert not fresh.exists()


def test_another_pipelines_champion_is_never_used(spec: Path, wh: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    shutil.copytree(spec.parent / "data", tmp_path / "data")
    other.write_text(spec.read_text().replace('name = "housing"', 'name = "flats"'))
    new_rows(tmp_path / "new.csv")
    code, output = mallard("score", str(other), str(tmp_path / "new.csv"), "-w", str(wh))
    assert code == 2 and "'flats' has no champion" in output


@pytest.mark.parametrize("column", ["stories", "lotsize"])
def test_missing_feature_column_is_exit_2_naming_it(
    spec: Path, wh: Path, tmp_path: Path, column: str
) -> None:
    new_rows(tmp_path / "new.csv")
    pl.read_csv(tmp_path / "new.csv").drop(column).write_csv(tmp_path / "new.csv")
    code, output = mallard("score", str(spec), str(tmp_path / "new.csv"), "-w", str(wh))
    assert code == 2, output
    assert column in output
    assert column in str(assert_failed_cleanly(wh, column)["error"])


def test_missing_input_file_is_exit_2(spec: Path, wh: Path, tmp_path: Path) -> None:
    code, output = mallard("score", str(spec), str(tmp_path / "nope*.csv"), "-w", str(wh))
    assert code == 2 and "no input file matches" in output
    # Checked before the run starts: no score run is recorded.
    assert warehouse.query(wh, "SELECT count(*) FROM ml.runs WHERE flow = 'score'").item() == 0


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("sha256", "0" * 64, "checksum mismatch"),
        ("trusted_types", "[]", "needs type(s) it was not saved with"),
    ],
)
def test_tampered_champion_is_refused(
    spec: Path, wh: Path, tmp_path: Path, column: str, value: str, message: str
) -> None:
    """What the warehouse says about the champion's file is checked before anything loads."""
    import duckdb  # tests may touch the file directly; mallard itself only through warehouse

    model_id = champion_id(wh)
    with duckdb.connect(str(wh)) as con:
        con.execute(f"UPDATE ml.models SET {column} = ? WHERE model_id = ?", [value, model_id])
    new_rows(tmp_path / "new.csv", rows=100)
    out = tmp_path / "out.parquet"
    code, output = mallard(
        "score", str(spec), str(tmp_path / "new.csv"), "-w", str(wh), "-o", str(out)
    )
    assert code == 2, output
    assert message in output and "refusing to load it" in output
    assert_failed_cleanly(wh, message)
    assert not out.exists()


def test_too_many_invalid_rows_is_exit_3_and_keeps_quarantine(
    spec: Path, wh: Path, tmp_path: Path
) -> None:
    new_rows(tmp_path / "dirty.csv", rows=400, seed=3, invalid=0.3)
    out = tmp_path / "out.parquet"
    code, output = mallard(
        "score", str(spec), str(tmp_path / "dirty.csv"), "-w", str(wh), "-o", str(out)
    )
    assert code == 3, output
    assert not out.exists()
    assert "max_invalid_fraction" in output
    run = assert_failed_cleanly(wh, "failed the schema")
    assert warehouse.table_counts(wh, str(run["run_id"]))["quarantine"] >= 80


def test_scored_parquet_has_the_key_and_the_prediction(
    spec: Path, wh: Path, tmp_path: Path
) -> None:
    rows = new_rows(tmp_path / "new.csv", rows=500, seed=21, invalid=0.02)
    out = tmp_path / "out" / "scored.parquet"  # a missing folder is made, as init -o does
    code, output = mallard(
        "score", str(spec), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(wh)
    )
    assert code == 0, output
    assert "rows scored" in output and "lotsize" in output  # the drift table

    written = pl.read_parquet(out)
    assert written.columns == ["row_index", "prediction"]
    assert written.schema == {"row_index": pl.Int64, "prediction": pl.Float64}
    run = only_run(wh)
    assert written.height == run["n_rows"] - run["n_invalid"]  # type: ignore[operator]
    assert 0 < run["n_invalid"] < 20  # type: ignore[operator]
    predictions = stored(wh, "predictions", str(run["run_id"])).sort("row_index")
    assert written["row_index"].to_list() == predictions["row_index"].to_list()
    np.testing.assert_array_equal(written["prediction"].to_numpy(), predictions["prediction"])
    # row_index points at the input row each prediction is for
    source = rows.with_row_index("row_index")[written["row_index"].to_list()]
    np.testing.assert_allclose(
        written["prediction"].to_numpy(), predict_with_champion(wh, source.drop("row_index"))
    )
    assert not list(out.parent.glob(".*partial"))


def test_scored_csv_carries_the_specs_id_column(spec: Path, wh: Path, tmp_path: Path) -> None:
    """`[source] id` names the input's key: it is in the scored file, and never a feature."""
    rows = new_rows(tmp_path / "new.csv", rows=200, seed=22).with_columns(
        house_id=pl.format("H-{}", pl.int_range(1000, 1200))
    )
    rows.write_csv(tmp_path / "new.csv")
    with_id = tmp_path / "with_id.toml"
    with_id.write_text(
        spec.read_text().replace("[source]\n", '[source]\nid = "house_id"\n'), encoding="utf-8"
    )
    shutil.copytree(spec.parent / "data", tmp_path / "data")
    out = tmp_path / "scored.CSV"
    code, output = mallard(
        "score", str(with_id), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(wh)
    )
    assert code == 0, output

    written = pl.read_csv(out)
    assert written.columns == ["house_id", "row_index", "prediction"]
    assert written["house_id"].to_list() == rows["house_id"].to_list()
    assert written["row_index"].to_list() == list(range(200))
    np.testing.assert_allclose(
        written["prediction"].to_numpy(), predict_with_champion(wh, rows), rtol=1e-9
    )


def test_id_column_missing_from_the_input_is_exit_2(spec: Path, wh: Path, tmp_path: Path) -> None:
    new_rows(tmp_path / "new.csv", rows=50)
    with_id = tmp_path / "with_id.toml"
    with_id.write_text(
        spec.read_text().replace("[source]\n", '[source]\nid = "house_id"\n'), encoding="utf-8"
    )
    shutil.copytree(spec.parent / "data", tmp_path / "data")
    out = tmp_path / "scored.parquet"
    code, output = mallard(
        "score", str(with_id), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(wh)
    )
    assert code == 2 and "[source.id] the input has no id column 'house_id'" in output
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("scored.json", "must end in .csv or .parquet (not '.json')"),
        ("scored", "must end in .csv or .parquet (not 'no extension')"),
        ("folder.parquet/", "is a folder"),
        ("a_file.txt/scored.parquet", "is a file, not a folder"),
    ],
)
def test_bad_output_path_is_exit_2_before_anything_runs(
    spec: Path, wh: Path, tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "folder.parquet").mkdir()
    (tmp_path / "a_file.txt").write_text("not a folder")
    code, output = mallard(
        "score", str(spec), str(tmp_path / "nope*.csv"), "-o", str(tmp_path / name), "-w", str(wh)
    )
    assert code == 2 and message in output, output
    assert "no input file" not in output  # checked before the (missing) input is looked at
    assert warehouse.query(wh, "SELECT count(*) FROM ml.runs WHERE flow = 'score'").item() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_unwritable_output_folder_is_exit_2(spec: Path, wh: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    new_rows(tmp_path / "new.csv", rows=50)
    code, output = mallard(
        "score", str(spec), str(tmp_path / "new.csv"), "-o", str(locked / "s.csv"), "-w", str(wh)
    )
    assert code == 2 and "permission denied" in output


def test_bad_output_path_fails_the_flow_before_the_model_loads(
    spec: Path, wh: Path, tmp_path: Path
) -> None:
    """The flow checks too (deployments call it without the CLI): before any run is recorded."""
    new_rows(tmp_path / "new.csv", rows=50)
    with pytest.raises(InputError, match=r"\.csv or \.parquet"):
        score(spec, str(tmp_path / "new.csv"), wh, output=tmp_path / "scored.xlsx")
    assert warehouse.query(wh, "SELECT count(*) FROM ml.runs WHERE flow = 'score'").item() == 0


def test_scoring_uses_the_champions_features_not_todays(
    trained: tuple[Path, Path], wh: Path, tmp_path: Path
) -> None:
    """features.sql edited after training: scoring still builds the columns the champion was
    trained with (from its train run's stored spec), and the score run points at that run."""
    spec = tmp_path / "housing.toml"
    shutil.copytree(trained[0].parent / "data", tmp_path / "data")
    edited = (
        trained[0]
        .read_text()
        .replace(
            'sql = ""', 'sql = "SELECT * EXCLUDE (lotsize), lotsize * 1000 AS lotsize FROM source"'
        )
    )
    assert edited != trained[0].read_text()
    spec.write_text(edited, encoding="utf-8")
    rows = new_rows(tmp_path / "new.csv", rows=300, seed=23)

    result = score(spec, str(tmp_path / "new.csv"), wh, output=tmp_path / "scored.parquet")
    assert isinstance(result, ScoreResult)

    written = pl.read_parquet(tmp_path / "scored.parquet")
    np.testing.assert_allclose(
        written["prediction"].to_numpy(), predict_with_champion(wh, rows), rtol=1e-9
    )
    status = dict(stored(wh, "drift", result.run_id).select("feature", "status").iter_rows())
    assert status["lotsize"] == "stable"  # the edited SQL would have shifted it 1000-fold
    # the record: score run -> its model -> the train run whose spec gave the features
    run = warehouse.run_record(wh, result.run_id)
    assert run is not None and run["model_id"] == result.model_id
    model = warehouse.model(wh, result.model_id)
    assert model is not None and model["run_id"] == result.features_run_id
    train_run = warehouse.run_record(wh, result.features_run_id)
    assert train_run is not None and 'sql = ""' in train_run["spec_toml"]
    assert "lotsize * 1000" in run["spec_toml"]  # the score run keeps the spec it was given


# --- concurrency ------------------------------------------------------------------------------


def test_reads_from_another_process_while_scoring(
    spec: Path, wh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mallard sql` in other processes keeps working while score runs write; nothing is lost."""
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "30")
    new_rows(tmp_path / "new.csv", rows=800, seed=31)
    env = {**os.environ, "MALLARD_LOCK_TIMEOUT": "30"}
    command = [sys.executable, "-m", "mallard.cli", "sql", "SELECT count(*) AS n FROM ml.runs"]
    command += ["-w", str(wh), "--format", "csv"]
    reads: list[subprocess.CompletedProcess[str]] = []

    def read_repeatedly() -> None:
        for _ in range(3):
            reads.append(
                subprocess.run(
                    command,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    results: list[ScoreResult] = []
    while reader.is_alive() or not results:
        result = score(spec, str(tmp_path / "new.csv"), wh)
        assert isinstance(result, ScoreResult)
        results.append(result)
        if len(results) == 5:
            break
    reader.join(timeout=180)

    assert len(reads) == 3
    for read in reads:
        assert read.returncode == 0, read.stderr[-2000:]
        lines = read.stdout.split()
        assert lines[0] == "n" and 1 <= int(lines[1]) <= 1 + len(results)
    counts = [int(read.stdout.split()[1]) for read in reads]
    assert counts == sorted(counts)
    total = warehouse.query(
        wh,
        "SELECT count(*) FROM ml.predictions JOIN ml.runs USING (run_id) WHERE flow = 'score'",
    ).item()
    assert total == 800 * len(results)
    for result in results:
        assert warehouse.table_counts(wh, result.run_id)["predictions"] == 800
    statuses = warehouse.query(wh, "SELECT DISTINCT status FROM ml.runs")["status"].to_list()
    assert statuses == ["succeeded"]


# --- classification: the scored file has the label and each class's probability -------------

LOGISTIC = '[[candidates]]\nfamily = "logistic_regression"\nparams = { C = [1.0] }\n\n'


def test_binary_scored_file_has_label_at_the_tuned_threshold_and_probabilities(
    tmp_path: Path, db: Path
) -> None:
    """The fraud spec tunes its threshold for F1: labels follow it (not 0.5), probabilities of
    both classes are there, and the spec's id column (transaction_id) keys the rows."""
    spec = write_example("fraud", tmp_path, rows=2000, seed=5)
    text = spec.read_text()
    text = text[: text.index("[[candidates]]")] + LOGISTIC + text[text.index("[fairness]") :]
    # f1, not the shipped pr_auc: what is tested here is scoring, not champion selection
    spec.write_text(text.replace('primary_metric = "pr_auc"', 'primary_metric = "f1"'))
    assert train(spec, db).promoted
    new = fraud(400, seed=9).drop("is_fraud")
    new.write_csv(tmp_path / "new.csv")
    out = tmp_path / "scored.parquet"

    code, output = mallard(
        "score", str(spec), str(tmp_path / "new.csv"), "-o", str(out), "-w", str(db)
    )
    assert code == 0, output
    row = warehouse.champion(db, "fraud")
    assert row is not None and row["decision_threshold"] is not None
    assert "transaction_id" not in json.loads(row["feature_names"])  # the key is no feature
    threshold = float(row["decision_threshold"])
    assert f"labels: '1' where its probability >= {threshold:.3g} (the tuned threshold)" in output

    written = pl.read_parquet(out)
    assert written.columns == [
        "transaction_id",
        "row_index",
        "label",
        "probability_0",
        "probability_1",
    ]
    assert 390 <= written.height < 400  # the generator plants a few bad rows
    ids = new["transaction_id"].cast(pl.Int64)[written["row_index"]]
    assert written["transaction_id"].to_list() == ids.to_list()
    assert written["label"].dtype == pl.Int64 and set(written["label"]) <= {0, 1}
    p1 = written["probability_1"].to_numpy()
    np.testing.assert_allclose(written["probability_0"].to_numpy() + p1, 1.0)
    np.testing.assert_array_equal(written["label"].to_numpy(), (p1 >= threshold).astype(int))
    assert 0.05 < threshold < 0.95 and threshold != 0.5
    # the warehouse rows say the same: label, and P(positive class) as the probability
    [run] = warehouse.query(db, "SELECT run_id FROM ml.runs WHERE flow = 'score'")["run_id"]
    stored_rows = stored(db, "predictions", run).sort("row_index")
    assert stored_rows["label"].to_list() == written["label"].cast(pl.String).to_list()
    np.testing.assert_allclose(stored_rows["probability"].to_numpy(), p1)


def test_multiclass_scored_csv_has_a_probability_per_class(tmp_path: Path, db: Path) -> None:
    """Housing rows classified by their number of stories (1 to 4), scored to CSV."""
    write_housing_csv(tmp_path / "data" / "housing.csv", rows=600, seed=3)
    text = spec_text().replace('task = "regression"', 'task = "classification"')
    text = text.replace('target = "price"', 'target = "stories"')
    text = text.replace(
        "[schema.columns]\n", '[schema.columns]\nstories = { dtype = "int", nullable = false }\n'
    )
    spec = tmp_path / "stories.toml"
    spec.write_text(text[: text.index("[[candidates]]")] + LOGISTIC, encoding="utf-8")
    assert train(spec, db).promoted
    new = housing(150, 8, invalid_fraction=0.0).drop("stories")
    new.write_csv(tmp_path / "new.csv")
    out = tmp_path / "scored.csv"

    result = score(spec, str(tmp_path / "new.csv"), db, output=out)
    assert isinstance(result, ScoreResult) and result.positive_class is None

    written = pl.read_csv(out)
    probabilities = [f"probability_{k}" for k in (1, 2, 3, 4)]
    assert written.columns == ["row_index", "label", *probabilities]
    assert written.height == 150 and set(written["label"]) <= {1, 2, 3, 4}
    proba = written.select(probabilities).to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    # the label is the most probable class; ml.predictions keeps P(that label)
    np.testing.assert_array_equal(written["label"].to_numpy(), proba.argmax(axis=1) + 1)
    stored_rows = stored(db, "predictions", result.run_id).sort("row_index")
    np.testing.assert_allclose(stored_rows["probability"].to_numpy(), proba.max(axis=1), rtol=1e-6)

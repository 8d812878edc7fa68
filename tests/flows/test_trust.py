"""Trust end to end: raw personal data never reaches the warehouse or the report; importance and
fairness rows are written; a hash policy without a salt is refused before anything runs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mallard import warehouse
from mallard.core.errors import SpecError
from mallard.flows.score import score
from mallard.flows.train import train
from mallard.report import render_report
from mallard.tasks.privacy import SALT_ENV
from tests.cli import mallard

pytestmark = pytest.mark.usefixtures("prefect_server")

PLANTED = {
    "email": "jane.planted@example.com",
    "phone": "+44 7700 900123",
    "postcode": "ZZ9 9ZZ",
    "birth_date": "1961-07-14",
}

SPEC = """
[pipeline]
name = "loans"
task = "classification"
target = "default"
seed = 3

[source]
path = "loans.csv"

[schema]
max_invalid_fraction = 0.2
[schema.columns]
email      = { dtype = "str", pii = "hash" }
phone      = { dtype = "str", pii = "drop" }
postcode   = { dtype = "str", pii = "generalise", regex = "^[A-Z]{1,2}[0-9]" }
birth_date = { dtype = "date", pii = "generalise" }
income     = { dtype = "float", ge = 0 }
default    = { dtype = "int", isin = [0, 1], nullable = false }

[fairness]
sensitive = ["sex"]
max_disparity = 0.25

[split]
strategy = "stratified"

[cv]
folds = 3

[[candidates]]
family = "logistic_regression"
params = { C = [1.0] }

[evaluate]
primary_metric = "roc_auc"
"""


def loans(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.3, 0.5, rows)
    debt = rng.uniform(0, 1, rows)
    default = (debt * 2 - np.log(income) / 10 + rng.normal(0, 0.3, rows) > 0.2).astype(int)
    frame = pl.DataFrame(
        {
            "email": [f"user{i}@example.org" for i in range(rows)],
            "phone": [f"+44 7700 {i:06d}" for i in range(rows)],
            "postcode": [f"{'ABCD'[i % 4]}{i % 9 + 1} {i % 7}AB" for i in range(rows)],
            "birth_date": [f"19{50 + i % 40}-0{i % 9 + 1}-1{i % 9}" for i in range(rows)],
            "sex": rng.choice(["f", "m"], rows).tolist(),
            "income": income.round(2),
            "debt_ratio": debt.round(3),
            "default": default,
        }
    )
    # The planted person: a valid row, and an invalid one (bad postcode, negative income) so the
    # quarantine sees the raw values too.
    planted = {**PLANTED, "sex": "f", "income": 52000.0, "debt_ratio": 0.4, "default": 0}
    broken = {**planted, "postcode": "zz planted", "income": -1.0}
    return pl.concat([frame, pl.DataFrame([planted, broken], schema=frame.schema)])


def every_text_in_the_warehouse(db: Path) -> str:
    tables = warehouse.query(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ml' "
        "AND table_type = 'BASE TABLE'",
    )["table_name"]
    texts = []
    for table in tables:
        frame = warehouse.query(db, f"SELECT * FROM ml.{table}")
        blobs = [name for name, dtype in frame.schema.items() if dtype == pl.Binary]
        for name in blobs:  # model files: look inside the (compressed) skops zips too
            texts += [unzipped_text(blob) for blob in frame[name]]
        texts.append(frame.drop(blobs).select(pl.all().cast(pl.String)).write_csv())
    return "\n".join(texts)


def unzipped_text(blob: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return "".join(archive.read(name).decode("latin-1") for name in archive.namelist())


@pytest.fixture
def loans_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SALT_ENV, "test-salt")
    loans(300, seed=1).write_csv(tmp_path / "loans.csv")
    loans(80, seed=2).drop("default").write_csv(tmp_path / "new.csv")
    spec = tmp_path / "loans.toml"
    spec.write_text(SPEC)
    return spec


def test_raw_pii_never_reaches_the_warehouse_or_the_report(loans_spec: Path, db: Path) -> None:
    result = train(loans_spec, db)
    score(loans_spec, str(loans_spec.parent / "new.csv"), db, loans_spec.parent / "scored.parquet")

    stored = every_text_in_the_warehouse(db)
    report = render_report(db, result.run_id)
    scored = pl.read_parquet(loans_spec.parent / "scored.parquet").write_csv()
    for column, raw in PLANTED.items():
        assert raw in (loans_spec.parent / "loans.csv").read_text(), column  # the scan can find it
        for where, text in (("warehouse", stored), ("report", report), ("scored file", scored)):
            assert raw not in text, f"raw {column} found in the {where}"
    # the quarantine kept the bad row, with its PII value redacted and the rest inspectable
    quarantine = warehouse.query(db, "SELECT * FROM ml.quarantine")
    assert "<pii:redacted>" in quarantine["failure_value"].to_list()
    assert "-1.0" in quarantine["failure_value"].to_list()


def test_importance_and_fairness_are_written(loans_spec: Path, db: Path) -> None:
    result = train(loans_spec, db)

    importance = warehouse.query_params(
        db, "SELECT feature, rank FROM ml.feature_importance WHERE run_id = ?", [result.run_id]
    )
    features = set(importance["feature"])
    assert "sex" not in features  # audited, not used as a feature
    assert "phone" not in features  # dropped at ingest
    assert importance.filter(pl.col("rank") == 1)["feature"].to_list()[0] in {
        "debt_ratio",
        "income",
    }
    fairness = warehouse.query_params(
        db, 'SELECT "group", metric FROM ml.fairness WHERE run_id = ?', [result.run_id]
    )
    assert set(fairness["group"]) == {"f", "m"}
    assert {"selection_rate", "tpr", "fpr"} <= set(fairness["metric"])
    summary = warehouse.query_params(
        db, "SELECT metric, status FROM ml.fairness_summary WHERE run_id = ?", [result.run_id]
    )
    assert "demographic_parity_difference" in set(summary["metric"])
    assert set(summary["status"]) <= {"pass", "warn"}


def test_a_hash_policy_without_a_salt_is_refused(
    loans_spec: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SALT_ENV)

    state = train(loans_spec, db, return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, SpecError)
    assert SALT_ENV in str(error) and "email" in str(error)
    assert warehouse.query(db, "SELECT count(*) AS n FROM ml.cv_results").item() == 0


def test_the_cli_refuses_a_hash_policy_without_a_salt_before_touching_anything(
    loans_spec: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SALT_ENV)

    code, output = mallard("run", str(loans_spec), "--warehouse", str(db))

    assert code == 2
    assert SALT_ENV in output and "email" in output
    assert not db.exists()

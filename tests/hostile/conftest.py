"""A small real warehouse (one train run, a ridge champion) built without running a flow, and a
dump of every ml table to prove an attack changed nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb  # tests may read the file directly; mallard itself only through warehouse
import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import Ridge

from mallard.tasks.model_files import save_model
from mallard.warehouse import RunBundle, RunRecord, write_run
from mallard.warehouse.connection import connect

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RUN_ID = "run-1"
MODEL_ID = f"{RUN_ID}:ridge"


def _bundle() -> RunBundle:
    rng = np.random.default_rng(0)
    X = pl.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    model = Ridge().fit(X, 2 * X["a"].to_numpy() - X["b"].to_numpy())
    saved = save_model(model)
    run = RunRecord(
        run_id=RUN_ID,
        pipeline="housing",
        task="regression",
        status="succeeded",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=30),
        spec_toml="[pipeline]\nname = 'housing'\n",
        spec_sha256="ab" * 32,
        primary_metric="rmse",
        greater_is_better=False,
    )
    models = pl.DataFrame(
        [
            {
                "model_id": MODEL_ID,
                "pipeline": "housing",
                "candidate": "ridge",
                "family": "ridge",
                "params": json.dumps({"alpha": 1.0}),
                "created_at": T0,
                "skops_blob": saved.blob,
                "size_bytes": len(saved.blob),
                "sha256": saved.sha256,
                "trusted_types": json.dumps(saved.trusted_types),
                "feature_names": json.dumps(["a", "b"]),
                "target": "y",
            }
        ]
    )
    metrics = pl.DataFrame(
        [(MODEL_ID, "ridge", "test", "rmse", 0.5), (MODEL_ID, "ridge", "validation", "rmse", 0.6)],
        schema=["model_id", "family", "split", "metric", "value"],
        orient="row",
    )
    aliases = pl.DataFrame(
        [
            {
                "pipeline": "housing",
                "alias": "champion",
                "model_id": MODEL_ID,
                "set_at": T0,
                "set_by": "test",
                "reason": "first model",
                "previous_model_id": None,
            }
        ],
        schema_overrides={"previous_model_id": pl.String},
    )
    return RunBundle(run=run, metrics=metrics, models=models, aliases=aliases)


@pytest.fixture(scope="session")
def template_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("template") / "warehouse.duckdb"
    write_run(db, _bundle())
    return db


@pytest.fixture
def wh(template_warehouse: Path, tmp_path: Path) -> Path:
    """A fresh copy of the one-run warehouse, in tmp_path/wh/ (nothing else in that folder)."""
    target = tmp_path / "wh" / "warehouse.duckdb"
    target.parent.mkdir()
    shutil.copy(template_warehouse, target)
    return target


@pytest.fixture
def other_db(tmp_path: Path) -> Path:
    """Another DuckDB file an attacker would like to change."""
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    return path


def dump(db: Path) -> dict[str, bytes]:
    """Every table and view of the ml schema, as sorted rows serialised to bytes; plus the
    sha256 of the file itself."""
    out: dict[str, bytes] = {"file sha256": hashlib.sha256(db.read_bytes()).digest()}
    with connect(db, read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ml' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        for name in names:
            rows = con.execute(f"SELECT * FROM ml.{name}").fetchall()
            out[name] = repr(sorted(map(repr, rows))).encode()
    return out


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

"""Scoring with a clustering champion: k-means assigns new rows to segments; a hierarchical
(agglomerative) model cannot, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from mallard import warehouse
from mallard.examples import segments, write_example
from mallard.flows.train import train
from tests.cli import mallard

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_kmeans_assigns_segments_and_agglomerative_is_refused(tmp_path: Path, db: Path) -> None:
    spec = write_example("segments", tmp_path, rows=400, seed=4)
    result = train(spec, db)
    models = warehouse.run_models(db, result.run_id)
    by_family = dict(zip(models["family"], models["model_id"], strict=True))
    new = tmp_path / "new.csv"
    segments(120, seed=9).write_csv(new)

    code, output = mallard("promote", "segments", by_family["kmeans"], "--warehouse", str(db))
    assert code == 0, output
    code, output = mallard("score", str(spec), str(new), "--warehouse", str(db))
    assert code == 0, output
    labels = warehouse.query(db, "SELECT label FROM ml.predictions WHERE split IS NULL")["label"]
    assert labels.len() > 100 and labels.n_unique() >= 2

    mallard("promote", "segments", by_family["agglomerative"], "--warehouse", str(db))
    code, output = mallard("score", str(spec), str(new), "--warehouse", str(db))
    assert code == 2
    assert "cannot assign new rows" in output

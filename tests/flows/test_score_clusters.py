"""Scoring with a clustering champion: k-means assigns new rows to segments; a hierarchical
(agglomerative) model cannot, and says so."""

from __future__ import annotations

from pathlib import Path

import polars as pl
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
    rows = segments(120, seed=9)
    rows.write_csv(new)

    code, output = mallard("promote", "segments", by_family["kmeans"], "--warehouse", str(db))
    assert code == 0, output
    out = tmp_path / "scored.csv"
    code, output = mallard("score", str(spec), str(new), "--warehouse", str(db), "-o", str(out))
    assert code == 0, output
    stored = warehouse.query(
        db, "SELECT row_index, label FROM ml.predictions WHERE split IS NULL ORDER BY row_index"
    )
    assert stored.height > 100 and stored["label"].n_unique() >= 2
    # the scored file: the spec's id (customer_id), the row position and the cluster
    written = pl.read_csv(out)
    assert written.columns == ["customer_id", "row_index", "cluster"]
    assert written["cluster"].dtype == pl.Int64
    assert written["row_index"].to_list() == stored["row_index"].to_list()
    assert written["cluster"].cast(pl.String).to_list() == stored["label"].to_list()
    ids = rows["customer_id"].cast(pl.Int64)[written["row_index"]]
    assert written["customer_id"].to_list() == ids.to_list()

    mallard("promote", "segments", by_family["agglomerative"], "--warehouse", str(db))
    out.unlink()
    code, output = mallard("score", str(spec), str(new), "--warehouse", str(db), "-o", str(out))
    assert code == 2
    assert "cannot assign new rows" in output
    assert not out.exists() and not list(tmp_path.glob(".*partial"))

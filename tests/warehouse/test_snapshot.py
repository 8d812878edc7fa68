"""mallard snapshot: a full copy that readers can hold open while pipelines keep writing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mallard import warehouse
from mallard.core.errors import InputError, WarehouseError
from mallard.warehouse import RunBundle, write_run
from mallard.warehouse.snapshot import snapshot
from tests.warehouse.test_writes import bundle, run_record


def test_the_copy_holds_every_table_and_view(db: Path, tmp_path: Path) -> None:
    write_run(db, bundle())
    copy = tmp_path / "bi.duckdb"

    tables = snapshot(db, copy)

    assert tables >= 10
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.runs").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM ml.metrics").fetchall() == [(2,)]
        con.execute("SELECT * FROM ml.leaderboard").fetchall()  # views come along
    assert not (tmp_path / ".bi.duckdb.partial").exists()


def test_an_open_snapshot_does_not_block_the_warehouse(db: Path, tmp_path: Path) -> None:
    write_run(db, bundle())
    copy = tmp_path / "bi.duckdb"
    snapshot(db, copy)

    with duckdb.connect(str(copy), read_only=True):  # a BI tool holding the copy open
        write_run(db, RunBundle(run=run_record("run-2")))

    assert warehouse.table_counts(db, "run-2")["runs"] == 1


def test_an_existing_copy_is_kept_unless_forced(db: Path, tmp_path: Path) -> None:
    write_run(db, bundle())
    copy = tmp_path / "bi.duckdb"
    copy.write_text("not a database")

    with pytest.raises(InputError, match="--force"):
        snapshot(db, copy)
    assert copy.read_text() == "not a database"

    snapshot(db, copy, overwrite=True)
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.runs").fetchall() == [(1,)]


def test_snapshot_of_itself_or_of_nothing_is_refused(db: Path, tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="no warehouse"):
        snapshot(db, tmp_path / "copy.duckdb")
    write_run(db, bundle())
    with pytest.raises(InputError, match="different file"):
        snapshot(db, db, overwrite=True)

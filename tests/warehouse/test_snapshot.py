"""mallard snapshot: a full copy that readers can hold open while pipelines keep writing, in
the 1.x-readable format, or a Parquet export."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from mallard import warehouse
from mallard.core.errors import InputError, WarehouseError
from mallard.warehouse import RunBundle, write_run
from mallard.warehouse.snapshot import export_parquet, snapshot
from tests.warehouse.conftest import run_in
from tests.warehouse.test_connection import Holder
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


def test_the_copy_is_in_the_1_4_storage_format(db: Path, tmp_path: Path) -> None:
    write_run(db, bundle())
    copy = tmp_path / "bi.duckdb"

    snapshot(db, copy)

    assert int.from_bytes(copy.read_bytes()[12:20], "little") <= 68  # 1.x clients read it


def test_parquet_export_writes_every_table_and_the_files_to_import_them(
    db: Path, tmp_path: Path
) -> None:
    write_run(db, bundle())
    folder = tmp_path / "bi"

    tables = export_parquet(db, folder)

    names = {p.name for p in folder.iterdir()}
    assert {"schema.sql", "load.sql", "ml_runs.parquet", "ml_metrics.parquet"} <= names
    assert len([n for n in names if n.endswith(".parquet")]) == tables
    assert pl.read_parquet(folder / "ml_runs.parquet").height == 1
    with duckdb.connect(":memory:") as con:  # IMPORT recreates tables and views
        con.execute(f"IMPORT DATABASE '{folder}'")
        assert con.execute("SELECT count(*) FROM ml.leaderboard").fetchall() == [(1,)]


def test_parquet_export_keeps_a_non_empty_folder_unless_forced(db: Path, tmp_path: Path) -> None:
    write_run(db, bundle())
    folder = tmp_path / "bi"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")

    with pytest.raises(InputError, match="--force"):
        export_parquet(db, folder)
    assert (folder / "mine.txt").read_text() == "keep"

    export_parquet(db, folder, overwrite=True)
    assert not (folder / "mine.txt").exists()
    assert (folder / "ml_runs.parquet").exists()


def test_a_locked_warehouse_fails_the_snapshot_and_leaves_nothing(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(db, bundle())
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "0.2")
    holder = Holder(db, "read_write")
    try:
        with pytest.raises(WarehouseError, match=f"PID {holder.pid}"):
            snapshot(db, tmp_path / "bi.duckdb")
        with pytest.raises(WarehouseError, match=f"PID {holder.pid}"):
            export_parquet(db, tmp_path / "pq")
    finally:
        holder.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]


@pytest.mark.slow
def test_a_1x_client_opens_the_snapshot_and_imports_the_parquet_export(
    db: Path, tmp_path: Path, duckdb1_python: Path
) -> None:
    write_run(db, bundle())
    copy, folder = tmp_path / "bi.duckdb", tmp_path / "pq"
    snapshot(db, copy)
    export_parquet(db, folder)

    opened = run_in(
        duckdb1_python,
        "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(con.execute('SELECT count(*) FROM ml.leaderboard').fetchall()[0][0])",
        str(copy),
    )
    imported = run_in(
        duckdb1_python,
        "import sys, duckdb; con = duckdb.connect(); "
        "con.execute(f\"IMPORT DATABASE '{sys.argv[1]}'\"); "
        "print(con.execute('SELECT count(*) FROM ml.runs').fetchall()[0][0])",
        str(folder),
    )

    assert (opened.returncode, opened.stdout.strip()) == (0, "1"), opened.stderr
    assert (imported.returncode, imported.stdout.strip()) == (0, "1"), imported.stderr

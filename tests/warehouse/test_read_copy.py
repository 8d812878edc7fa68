"""The read copy: consistent, atomically replaced, 1.x-readable, and never blocking a writer.

The journey test holds a DuckDB 1.x read connection on the copy in a real second process (a
venv with duckdb 1.5 from the package index) while this process writes twice and republishes.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from mallard import warehouse
from mallard.core.errors import WarehouseError
from mallard.warehouse import RunBundle, publish_read_copy, read_copy_path, write_run
from mallard.warehouse.read_copy import READABLE_STORAGE_VERSION, ReadCopyError
from tests.warehouse.conftest import run_in
from tests.warehouse.test_connection import Holder
from tests.warehouse.test_writes import bundle, run_record


def runs_in(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM ml.runs").fetchall()[0][0])


def test_the_read_copy_sits_beside_the_warehouse(tmp_path: Path) -> None:
    assert read_copy_path(tmp_path / "warehouse.duckdb") == tmp_path / "warehouse.read.duckdb"
    assert read_copy_path(tmp_path / "w.db") == tmp_path / "w.read.db"
    assert read_copy_path(tmp_path / "w") == tmp_path / "w.read.duckdb"


def test_publishing_copies_tables_and_views_and_leaves_no_temporary_file(
    db: Path, tmp_path: Path
) -> None:
    write_run(db, bundle())

    copy = publish_read_copy(db)

    assert copy == read_copy_path(db)
    assert runs_in(copy) == 1
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.leaderboard").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM ml.metrics").fetchall() == [(2,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "warehouse.duckdb",
        "warehouse.read.duckdb",
    ]


def test_the_copy_is_written_in_the_1_4_storage_format(db: Path) -> None:
    write_run(db, bundle())
    copy = publish_read_copy(db)

    with duckdb.connect(":memory:") as con:
        con.execute(f"ATTACH '{copy}' AS copy (READ_ONLY)")
        (tags,) = con.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = 'copy'"
        ).fetchall()[0]
    header_version = int.from_bytes(copy.read_bytes()[12:20], "little")

    assert tags["storage_version"].startswith(READABLE_STORAGE_VERSION)
    assert header_version <= 68  # the newest storage version DuckDB 1.x clients read


def test_a_reader_of_the_old_copy_keeps_reading_it_until_it_reopens(db: Path) -> None:
    write_run(db, bundle())
    copy = publish_read_copy(db)
    reader = duckdb.connect(str(copy), read_only=True)
    try:
        write_run(db, RunBundle(run=run_record("run-2")))
        publish_read_copy(db)

        held = reader.execute("SELECT count(*) FROM ml.runs").fetchall()
    finally:
        reader.close()

    assert held == [(1,)]  # the old file, whole
    assert runs_in(copy) == 2  # a fresh open sees the new copy


def test_lock_trouble_is_a_read_copy_error_and_keeps_the_previous_copy(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(db, bundle())
    copy = publish_read_copy(db)
    write_run(db, RunBundle(run=run_record("run-2")))
    holder = Holder(db, "read_write")  # e.g. another writer mid-run
    try:
        monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "0.3")
        started = time.monotonic()
        with pytest.raises(ReadCopyError) as caught:
            publish_read_copy(db)
        waited = time.monotonic() - started
    finally:
        holder.stop()

    message = str(caught.value)
    assert isinstance(caught.value, WarehouseError)  # the CLI's exit code 2, if it escaped
    assert "not refreshed" in message and "committed" in message
    assert f"PID {holder.pid}" in message
    assert waited < 3
    assert runs_in(copy) == 1  # the previous copy is still there, whole
    assert sorted(p.name for p in db.parent.iterdir()) == [
        "warehouse.duckdb",
        "warehouse.read.duckdb",
    ]


def test_no_warehouse_is_a_read_copy_error(db: Path) -> None:
    with pytest.raises(ReadCopyError, match="no warehouse"):
        publish_read_copy(db)


def test_the_exports_are_on_the_warehouse_package() -> None:
    assert warehouse.publish_read_copy is publish_read_copy
    assert warehouse.read_copy_path is read_copy_path


# --- the analyst's journey, with a DuckDB 1.x client -------------------------------------------

READER = """
import sys, duckdb
path = sys.argv[1]
con = duckdb.connect(path, read_only=True)
print("version", duckdb.__version__, flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "reopen":
        con.close()
        con = duckdb.connect(path, read_only=True)
    if command in ("count", "reopen"):
        runs = con.execute("SELECT count(*) FROM ml.runs").fetchall()[0][0]
        board = con.execute("SELECT count(*) FROM ml.leaderboard").fetchall()[0][0]
        print("runs", runs, "leaderboard", board, flush=True)
    if command == "quit":
        break
con.close()
"""


class Reader:
    """A DuckDB 1.x client process holding a read connection on `path` until told to quit."""

    def __init__(self, python: Path, path: Path) -> None:
        self.process = subprocess.Popen(
            [str(python), "-c", READER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.version = self._line()

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"the 1.x reader stopped: {self.process.stderr.read()}")
        return line.strip()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._line()

    def quit(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        return self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.mark.slow
def test_a_1x_reader_holding_the_read_copy_never_blocks_two_writes(
    db: Path,
    duckdb1_python: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_run(db, bundle())
    copy = publish_read_copy(db)
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "30")  # a blocked write would show as a wait
    reader = Reader(duckdb1_python, copy)
    try:
        assert reader.version.startswith("version 1.")
        assert reader.ask("count") == "runs 1 leaderboard 1"

        timings = []
        with caplog.at_level(logging.WARNING, logger="mallard.warehouse"):
            for run_id in ("run-2", "run-3"):
                started = time.monotonic()
                write_run(db, bundle(run_id))
                publish_read_copy(db)
                timings.append(time.monotonic() - started)

        assert reader.ask("count") == "runs 1 leaderboard 1"  # still the copy it opened
        assert reader.ask("reopen") == "runs 3 leaderboard 3"  # the new runs, views too
        assert reader.quit() == 0  # it held the copy to the end, and exits cleanly
    finally:
        reader.stop()

    assert not [r for r in caplog.records if "waiting for" in r.getMessage()]
    assert max(timings) < 25, timings  # a blocked write would wait out the 30 s


@pytest.mark.slow
def test_a_1x_client_cannot_open_the_live_file_but_opens_the_copy(
    db: Path, duckdb1_python: Path
) -> None:
    """The failure the read copy exists for: DuckDB 2 files are storage version 69."""
    write_run(db, bundle())
    copy = publish_read_copy(db)
    script = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(con.execute('SELECT count(*) FROM ml.run_summary').fetchall()[0][0])"
    )

    live = run_in(duckdb1_python, script, str(db))
    readable = run_in(duckdb1_python, script, str(copy))

    assert live.returncode != 0 and "version" in live.stderr
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.strip() == "1"

"""connect(): migrations on open, the missing-file message, and waiting on another process's lock.

The lock tests use a real second process: DuckDB locks the file per process, so a second
connection from this process would share the database instead of meeting the lock.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from mallard.core.errors import WarehouseError
from mallard.warehouse import RunBundle, RunRecord, migrations, run_record, write_run
from mallard.warehouse.connection import connect
from mallard.warehouse.migrations import MIGRATIONS, migrate, schema_version


def assert_commands_exist(message: str) -> None:
    """Every `mallard COMMAND` a message suggests is a command the CLI has."""
    import typer.main

    from mallard.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    suggested = set(re.findall(r"`mallard (\w+)", message))
    assert suggested <= commands, f"{message!r} suggests commands the CLI lacks"


# --- migrations --------------------------------------------------------------------------------


def applied(db: Path) -> list[tuple[int, str]]:
    with connect(db, read_only=True) as con:
        return con.execute(
            "SELECT version, name FROM ml.schema_migrations ORDER BY version"
        ).fetchall()


def ml_objects(db: Path) -> set[str]:
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ml'"
        ).fetchall()
    return {row[0] for row in rows}


def test_a_writer_creates_the_file_and_applies_every_migration(db: Path) -> None:
    with connect(db) as con:
        assert schema_version(con) == MIGRATIONS[-1][0]

    assert db.is_file()
    assert applied(db) == [(version, name) for version, name, _ in MIGRATIONS]
    assert {"runs", "quarantine", "cv_results", "metrics", "leaderboard"} <= ml_objects(db)


def test_migrations_are_idempotent(db: Path) -> None:
    with connect(db) as con:
        con.execute(
            "INSERT INTO ml.runs (run_id, pipeline, task, status, started_at, spec_toml, "
            "spec_sha256) VALUES ('kept', 'p', 'regression', 'running', now(), '', '')"
        )
        first = con.execute("SELECT version, applied_at FROM ml.schema_migrations").fetchall()
        migrate(con)  # again on the same connection
        migrate(con)

    with connect(db) as con:  # and on every later open
        again = con.execute("SELECT version, applied_at FROM ml.schema_migrations").fetchall()
        runs = con.execute("SELECT run_id FROM ml.runs").fetchall()

    assert again == first
    assert len(again) == len(MIGRATIONS)
    assert runs == [("kept",)]


def test_a_new_migration_is_applied_once_and_recorded(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(db):
        pass
    newer = [*MIGRATIONS, (99, "test table", "CREATE TABLE ml.extra (a INTEGER);")]
    monkeypatch.setattr(migrations, "MIGRATIONS", newer)

    with connect(db):
        pass
    with connect(db):
        pass

    assert applied(db)[-1] == (99, "test table")
    assert len(applied(db)) == len(newer)
    assert "extra" in ml_objects(db)


def test_a_failing_migration_rolls_back_entirely(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with connect(db):
        pass
    broken = "CREATE TABLE ml.extra (a INTEGER); INSERT INTO ml.extra VALUES ('not a number');"
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, (99, "broken", broken)])

    with pytest.raises(WarehouseError, match="cannot be migrated to version 99"), connect(db):
        pass

    assert "extra" not in ml_objects(db)  # the CREATE TABLE before the failure is undone
    assert 99 not in [version for version, _ in applied(db)]


def test_read_only_connections_do_not_migrate(db: Path) -> None:
    duckdb.connect(str(db)).close()  # an empty DuckDB file, e.g. made by another tool

    with connect(db, read_only=True) as con:
        schemas = con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()

    assert ("ml",) not in schemas


# --- opening problems --------------------------------------------------------------------------


def test_read_only_on_a_missing_file_says_how_to_make_one(db: Path) -> None:
    with pytest.raises(WarehouseError) as caught, connect(db, read_only=True):
        pass

    message = str(caught.value)
    assert f"no warehouse at {db}" in message
    assert "mallard demo" in message and "mallard run" in message
    assert_commands_exist(message)
    assert not db.exists()  # a read must not create the file


def test_a_file_that_is_not_duckdb_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "blocked" puts the word "lock" in the path: it must not be mistaken for a lock error
    # and retried until the timeout.
    db = tmp_path / "blocked" / "warehouse.duckdb"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database " * 200)
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "60")

    started = time.monotonic()
    with pytest.raises(WarehouseError) as caught, connect(db):
        pass

    assert time.monotonic() - started < 30  # far below the timeout a retry would wait out
    assert "not a valid DuckDB database" in str(caught.value)
    assert "is locked by" not in str(caught.value)


def test_a_missing_folder_is_a_warehouse_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "w.duckdb"

    with pytest.raises(WarehouseError, match="cannot open warehouse"), connect(missing):
        pass


def test_the_connection_is_closed_on_exit(db: Path) -> None:
    with connect(db) as con:
        pass

    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


# --- another process holds the lock ------------------------------------------------------------

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


class Holder:
    """A child process that keeps the warehouse file open until told to let go."""

    def __init__(self, db: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the child holds the lock
        assert line.strip() == "locked", f"the lock holder did not start: {line!r}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("release\n")
        self.process.stdin.flush()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def hold(db: Path) -> Iterator[Callable[..., Holder]]:
    """Start holders on `db` (created and migrated first); every one is stopped afterwards."""
    with connect(db):
        pass
    holders: list[Holder] = []

    def start(mode: str = "read_write") -> Holder:
        holder = Holder(db, mode)
        holders.append(holder)
        return holder

    yield start
    for holder in holders:
        holder.stop()


@pytest.mark.parametrize("mode", ["read_write", "read_only"])
def test_a_writer_gives_up_after_the_timeout_naming_the_holder(
    db: Path, hold: Callable[..., Holder], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    holder = hold(mode)
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "0.4")

    started = time.monotonic()
    with pytest.raises(WarehouseError) as caught, connect(db):
        pass
    waited = time.monotonic() - started

    message = str(caught.value)
    assert f"PID {holder.pid})" in message
    assert str(db) in message
    assert "close that duckdb shell or connection" in message
    assert "0.4 s" in message
    assert 0.4 <= waited < 5  # it retried for the timeout, then stopped
    assert_commands_exist(message)


def test_a_reader_also_waits_and_names_the_holder(
    db: Path, hold: Callable[..., Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold()
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "0.2")

    with (
        pytest.raises(WarehouseError, match=rf"PID {holder.pid}\)"),
        connect(db, read_only=True),
    ):
        pass


def test_a_write_succeeds_when_the_lock_is_released_within_the_timeout(
    db: Path, hold: Callable[..., Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold()
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "20")
    run = RunRecord(
        run_id="after-the-lock",
        pipeline="housing",
        task="regression",
        status="succeeded",
        started_at=datetime.now(UTC),
        spec_toml="",
        spec_sha256="",
    )
    releaser = threading.Timer(0.5, holder.release)  # while write_run is already retrying

    started = time.monotonic()
    releaser.start()
    try:
        write_run(db, RunBundle(run=run))
    finally:
        releaser.join()
    waited = time.monotonic() - started

    assert waited >= 0.5  # it did meet the lock
    assert holder.process.returncode == 0
    stored = run_record(db, "after-the-lock")
    assert stored is not None and stored["status"] == "succeeded"


def test_a_wait_is_announced_once_naming_the_holder_and_lasts_one_timeout(
    db: Path,
    hold: Callable[..., Holder],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = hold("read_only")  # e.g. an analyst's shell left open on the live file
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "2")

    started = time.monotonic()
    with (
        caplog.at_level("WARNING", logger="mallard.warehouse"),
        pytest.raises(WarehouseError, match="read copy"),
        connect(db),
    ):
        pass
    waited = time.monotonic() - started

    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waits) == 1
    assert waits[0].startswith(f"waiting for the warehouse lock held by PID {holder.pid} (")
    assert str(db) in waits[0] and "up to 2 s" in waits[0]
    assert 2 <= waited < 4  # one timeout, not one per attempt or per caller


def test_a_zero_timeout_tries_once(
    db: Path, hold: Callable[..., Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    hold()
    monkeypatch.setenv("MALLARD_LOCK_TIMEOUT", "30")

    started = time.monotonic()
    with pytest.raises(WarehouseError, match="stayed locked for 0 s"), connect(db, timeout_s=0):
        pass

    assert time.monotonic() - started < 15  # not the environment's 30 s

"""A run whose process died (kill -9) is marked interrupted by the next writer, not left
'running' forever; live runs and other hosts' runs are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from mallard.cli import app
from mallard.warehouse import RunRecord, record_run_started, run_record
from mallard.warehouse.connection import connect
from mallard.warehouse.reaper import this_process

OWNER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from mallard.warehouse import RunRecord, record_run_started
    from mallard.warehouse.reaper import this_process

    me = this_process()
    record_run_started(Path(sys.argv[1]), RunRecord(
        run_id="doomed", pipeline="housing", task="regression", status="running",
        started_at=datetime.now(UTC), spec_toml="", spec_sha256="",
        pid=me.pid, hostname=me.hostname, process_started_at=me.started_at,
    ))
    print("running", flush=True)
    time.sleep(120)
    """
)


def running(run_id: str, **owner: object) -> RunRecord:
    me = this_process()
    record = RunRecord(
        run_id=run_id,
        pipeline="housing",
        task="regression",
        status="running",
        started_at=datetime.now(UTC),
        spec_toml="",
        spec_sha256="",
        pid=me.pid,
        hostname=me.hostname,
        process_started_at=me.started_at,
    )
    return replace(record, **owner)  # type: ignore[arg-type]


def test_a_run_killed_with_sigkill_is_marked_interrupted_by_the_next_writer(db: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "running"
        assert run_record(db, "doomed")["status"] == "running"  # type: ignore[index]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)

    with connect(db):  # any writer
        pass

    row = run_record(db, "doomed")
    assert row is not None
    assert row["status"] == "interrupted"
    assert row["finished_at"] is not None
    assert f"PID {owner.pid}" in row["error"] and "is gone" in row["error"]
    assert row["pid"] == owner.pid and row["hostname"] == this_process().hostname

    shown = CliRunner().invoke(app, ["runs", "--warehouse", str(db)])
    assert shown.exit_code == 0, shown.output
    assert "interrupted" in shown.output


def test_a_live_run_stays_running(db: Path) -> None:
    record_run_started(db, running("alive"))
    with connect(db):
        pass
    row = run_record(db, "alive")
    assert row is not None and row["status"] == "running" and row["error"] is None


def test_a_reused_pid_counts_as_gone(db: Path) -> None:
    me = this_process()
    assert me.started_at is not None  # Linux /proc
    record_run_started(db, running("reused", process_started_at=me.started_at - timedelta(hours=1)))
    with connect(db):
        pass
    row = run_record(db, "reused")
    assert row is not None and row["status"] == "interrupted"
    assert "now belongs to another process" in row["error"]


def test_runs_of_other_hosts_and_finished_runs_are_left_alone(db: Path) -> None:
    dead = _dead_pid()
    record_run_started(db, running("elsewhere", hostname="another-host", pid=dead))
    record_run_started(db, replace(running("done", pid=dead), status="succeeded"))
    with connect(db):
        pass
    assert run_record(db, "elsewhere")["status"] == "running"  # type: ignore[index]
    assert run_record(db, "done")["status"] == "succeeded"  # type: ignore[index]


def test_the_run_record_stores_its_owning_process(db: Path) -> None:
    record_run_started(db, running("mine"))
    row = run_record(db, "mine")
    assert row is not None
    assert (row["pid"], row["hostname"]) == (os.getpid(), this_process().hostname)
    assert row["process_started_at"] is not None


def _dead_pid() -> int:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)

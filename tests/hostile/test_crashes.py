"""kill -9 of `mallard run` at 20 moments spread over a run: the warehouse still opens, no run is
partial (absent, failed/interrupted with no rows, or succeeded with all of them), none is left
`running` after the next writer connects, no child of the killed process survives it, and the
next run succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mallard.warehouse.connection import connect
from tests.hostile.test_concurrency import _api_env, _four_candidate_spec, run_state

KILLS = 20


def _start(spec: Path, db: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mallard.cli", "run", str(spec), "--warehouse", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _children(pid: int) -> list[object]:
    psutil = pytest.importorskip("psutil")
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _alive(processes: list[object]) -> list[str]:
    psutil = pytest.importorskip("psutil")
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:  # type: ignore[attr-defined]
                left.append(" ".join(process.cmdline())[:120])  # type: ignore[attr-defined]
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.mark.slow
def test_kill_9_at_twenty_moments_leaves_nothing_partial_stuck_or_orphaned(
    prefect_server: None, tmp_path: Path
) -> None:
    pytest.importorskip("psutil")
    spec = _four_candidate_spec(tmp_path / "spec", "crash")
    db = tmp_path / "warehouse.duckdb"
    env = _api_env(tmp_path)

    started = time.monotonic()
    full = _start(spec, db, env)
    assert full.wait(timeout=300) == 0
    duration = time.monotonic() - started

    orphans: list[str] = []
    for i in range(KILLS):
        proc = _start(spec, db, env)
        moment = duration * (i + 0.5) / KILLS  # spread over the whole run, ends included
        time.sleep(moment)
        children = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)
        orphans += _alive(children)

        with connect(db) as con:  # the next writer: opens, and reaps the killed run
            running = con.execute("SELECT count(*) FROM ml.runs WHERE status = 'running'")
            assert running.fetchone() == (0,), f"kill {i} at {moment:.1f} s left a run running"
        for run_id, (status, metrics, models, cv) in run_state(db).items():
            assert status in ("succeeded", "failed", "interrupted"), (run_id, status)
            if status == "succeeded":
                assert metrics > 0 and models >= 5 and cv > 0, run_id
            else:
                assert (metrics, models, cv) == (0, 0, 0), (run_id, status)

    assert orphans == []
    after = _start(spec, db, env)
    assert after.wait(timeout=300) == 0
    statuses = [s[0] for s in run_state(db).values()]
    assert statuses.count("succeeded") >= 2

"""`mallard stack up|down|status`: PostgreSQL, a Prefect server on it, a process worker and the
spec's scheduled deployments; deployed runs write the warehouse, two at once both commit, and
`down` leaves none of the processes `up` started alive. Plus the one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from mallard.cli import app, postgres
from mallard.examples import new_rows

runner = CliRunner()
MALLARD = str(Path(sys.executable).with_name("mallard"))
NO_POSTGRES = postgres.find_pg_bin() is None
SKIP_REASON = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed: "
    f"`{postgres.INSTALL_HINT}` (or set {postgres.PG_BIN_ENV})"
)
RUN_TIMEOUT_S = 120.0
SCHEDULE = """
[schedule]
train = "0 3 * * 1"

[schedule.score]
cron = "0 * * * *"
input = "data/new_houses.csv"
"""


def test_missing_postgres_is_one_line(
    monkeypatch: pytest.MonkeyPatch, housing_spec: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "find_pg_bin", lambda: None)
    result = runner.invoke(app, ["stack", "up", str(housing_spec), "--dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "apt-get install postgresql" in result.output
    assert not (tmp_path / "s").exists()


def test_nothing_to_stop_and_no_status(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stack", "down", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "nothing to stop" in result.output
    result = runner.invoke(app, ["stack", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no stack" in result.output


@pytest.mark.skipif(NO_POSTGRES, reason=SKIP_REASON)
def test_busy_port_is_one_line(housing_spec: Path, tmp_path: Path) -> None:
    _add_schedule(housing_spec)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app,
            ["stack", "up", str(housing_spec), "--dir", str(tmp_path / "s"), "--port", str(port)],
        )
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 (the Prefect server) is busy" in result.output


@pytest.mark.slow
@pytest.mark.skipif(NO_POSTGRES, reason=SKIP_REASON)
def test_stack_runs_deployments_and_stops(housing_spec: Path, tmp_path: Path) -> None:
    _add_schedule(housing_spec)
    warehouse = tmp_path / "warehouse.duckdb"
    with _world_searchable_dir() as base:
        state_dir = base / "stack"
        env = _stack_env()

        started = time.monotonic()
        up = _mallard(["stack", "up", str(housing_spec), "--warehouse", str(warehouse),
                       "--dir", str(state_dir)], env)  # fmt: skip
        up_s = time.monotonic() - started
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            state = json.loads((state_dir / "stack.json").read_text())
            api = f"http://127.0.0.1:{state['server_port']}/api"
            assert f"export PREFECT_API_URL={api}" in up.stdout
            assert sorted(state["deployments"]) == ["score/housing-score", "train/housing-train"]

            again = _mallard(["stack", "up", str(housing_spec), "--dir", str(state_dir)], env)
            assert again.returncode == 2
            assert "a stack is already up" in again.stderr

            status = _mallard(["stack", "status", "--dir", str(state_dir)], env)
            assert status.returncode == 0, status.stdout
            assert status.stdout.count("running (PID") == 3

            started = time.monotonic()
            (first,) = _run_deployments(api, ["train/housing-train"])
            first_s = time.monotonic() - started
            assert first == "COMPLETED"
            assert _runs(warehouse) == [("train", "succeeded")]

            # Two at once on the worker (--limit 2): both commit; one may wait on the lock.
            started = time.monotonic()
            both = _run_deployments(api, ["train/housing-train", "score/housing-score"])
            both_s = time.monotonic() - started
            assert both == ["COMPLETED", "COMPLETED"]
            assert sorted(_runs(warehouse)) == [
                ("score", "succeeded"),
                ("train", "succeeded"),
                ("train", "succeeded"),
            ]

            pids = _stack_pids(state, state_dir)
            assert pids, "the stack's processes were not found"
        finally:
            started = time.monotonic()
            down = _mallard(["stack", "down", "--dir", str(state_dir)], env)
            down_s = time.monotonic() - started
        assert down.returncode == 0, down.stdout + down.stderr
        alive = [p for p in pids if _alive(p)]
        assert not alive, f"still alive after down: {alive}"
        assert (state_dir / "pg" / "data" / "PG_VERSION").exists()  # data kept
        print(
            f"\nstack up {up_s:.1f} s, first deployed run to Completed {first_s:.1f} s, "
            f"two at once {both_s:.1f} s, down {down_s:.1f} s"
        )


def _add_schedule(spec: Path) -> None:
    new_rows("housing", rows=60).write_csv(spec.parent / "data" / "new_houses.csv")
    spec.write_text(spec.read_text(encoding="utf-8") + SCHEDULE, encoding="utf-8")


@contextlib.contextmanager
def _world_searchable_dir() -> Iterator[Path]:
    """As root, PostgreSQL runs as an unprivileged user, who cannot enter pytest's private
    tmp folders (mode 0700): the state folder goes under a searchable one instead."""
    base = Path(tempfile.mkdtemp(prefix="mallard-stack-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stack_env() -> dict[str, str]:
    """The test session's Prefect settings (in-memory SQLite, temporary server) must not reach
    the stack; a lock wait longer than conftest's 3 s lets two runs at once both commit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(MALLARD_LOCK_TIMEOUT="60", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _mallard(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MALLARD, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _run_deployments(api: str, names: list[str]) -> list[str]:
    """Create a flow run of each deployment at once; wait (bounded) until all are final."""
    from prefect.client.orchestration import PrefectClient

    async def run() -> list[str]:
        async with PrefectClient(api=api) as client:
            ids = []
            for name in names:
                deployment = await client.read_deployment_by_name(name)
                flow_run = await client.create_flow_run_from_deployment(deployment.id)
                ids.append(flow_run.id)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                runs = [await client.read_flow_run(i) for i in ids]
                states = [r.state for r in runs]
                if all(s is not None and s.is_final() for s in states):
                    return [s.type.value for s in states if s is not None]
                if time.monotonic() > deadline:
                    raise AssertionError(f"runs not final after {RUN_TIMEOUT_S:g} s: {states}")
                await asyncio.sleep(1.0)

    return asyncio.run(run())


def _runs(warehouse: Path) -> list[tuple[str, str]]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:  # closed at once: no lock held
        rows: Any = con.sql("SELECT flow, status FROM ml.runs ORDER BY started_at").fetchall()
    return [tuple(r) for r in rows]


def _stack_pids(state: dict[str, Any], state_dir: Path) -> list[int]:
    """The worker, the server, PostgreSQL and every process below them."""
    roots = [state["worker_pid"], state["server_pid"]]
    pid_file = state_dir / "pg" / "data" / "postmaster.pid"
    roots.append(int(pid_file.read_text().split()[0]))
    found = set()
    for pid in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            found.add(pid)
            found.update(child.pid for child in process.children(recursive=True))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

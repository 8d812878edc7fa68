"""`mallard --version`, help texts that keep their brackets, an unreachable PREFECT_API_URL as
one line (exit 2), and mallard's long-lived local Prefect server (start, reuse, status, stop)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mallard import __version__
from mallard.cli import app
from tests.cli import mallard_process
from tests.flows.conftest import free_port

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mallard {__version__}"


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (["serve", "--help"], "[schedule]"),
        (["demo", "--help"], "[default: per example]"),
        (["run", "--help"], "[default: ./warehouse.duckdb]"),
    ],
)
def test_help_keeps_bracketed_text(command: list[str], text: str) -> None:
    result = runner.invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert text in result.output


def test_an_unreachable_prefect_api_is_one_line_naming_it(
    housing_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    monkeypatch.setenv("PREFECT_API_URL", url)
    data = housing_spec.parent / "data" / "housing.csv"

    result = runner.invoke(app, ["validate", str(housing_spec), str(data)])

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "unreachable" in lines[0], result.output


@pytest.mark.slow
def test_the_local_server_starts_once_is_reused_and_stops(
    housing_spec: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, MALLARD_HOME=str(tmp_path / "home"))
    env["MALLARD_PREFECT_PORT"] = str(free_port())
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)  # conftest's: Prefect's temporary server
    env.pop("PREFECT_API_URL", None)

    def mallard(*args: str) -> subprocess.CompletedProcess[str]:
        return mallard_process(env, *args)

    data = housing_spec.parent / "data" / "housing.csv"
    warehouse = str(tmp_path / "w.db")
    try:
        assert mallard("server", "status").returncode == 2
        broken = tmp_path / "broken.toml"
        broken.write_text("[source\n")
        refused = mallard("validate", str(broken), str(data), "-w", warehouse)
        assert refused.returncode == 2 and "starting a local" not in refused.stderr
        assert not (tmp_path / "home" / "prefect-server.json").exists()  # a bad spec starts none
        # The first flow command starts the server (booting while the command imports).
        first = mallard("validate", str(housing_spec), str(data), "-w", warehouse)
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stderr.count("starting a local Prefect server") == 1, first.stderr
        assert env["MALLARD_PREFECT_PORT"] in first.stderr
        again = mallard("server", "start")
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout
        assert mallard("server", "status").returncode == 0

        started = time.monotonic()
        checked = mallard("validate", str(housing_spec), str(data), "-w", warehouse)
        took = time.monotonic() - started
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "starting a local Prefect server" not in checked.stderr  # reused
        assert "Starting temporary server" not in checked.stdout + checked.stderr
        print(f"validate with the local server up: {took:.1f} s")
    finally:
        stopped = mallard("server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert mallard("server", "status").returncode == 2


def test_which_api_a_flow_command_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured URL first; PREFECT_SERVER_EPHEMERAL_ENABLED=true means Prefect's temporary
    server (None); a stale record of a dead local server is no server."""
    from mallard.cli import prefect_api

    monkeypatch.setenv("MALLARD_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
    monkeypatch.setattr(prefect_api, "configured_api_url", lambda: None)
    assert prefect_api.api_url() is None
    prefect_api.start_server_early()  # Prefect's own temporary server: nothing to spawn
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    prefect_api.start_server_early()  # a configured server: nothing to spawn
    assert not prefect_api.state_file().exists()

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    prefect_api.state_file().write_text(
        f'{{"pid": {int(finished.stdout)}, "port": 1, "home": "{tmp_path}"}}'
    )
    assert prefect_api.recorded_server() is None
    assert prefect_api.stop_server() is None and not prefect_api.state_file().exists()


def test_the_api_setting_is_scoped_to_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    from mallard.cli import prefect_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(prefect_api, "api_url", lambda: "http://127.0.0.1:9/api")
    with prefect_api.prefect_api() as url:
        from prefect.settings import PREFECT_API_URL

        assert url == PREFECT_API_URL.value() == os.environ["PREFECT_API_URL"]
    assert "PREFECT_API_URL" not in os.environ


@pytest.mark.usefixtures("prefect_server")
def test_a_cli_run_is_named_tagged_and_stored_with_absolute_paths(
    housing_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    monkeypatch.chdir(housing_spec.parent)
    result = runner.invoke(app, ["validate", housing_spec.name, "data/housing.csv"])
    assert result.exit_code == 0, result.output
    run_id = next(w for w in result.output.split() if w.startswith("housing-validate-"))
    run_id = run_id.rstrip(":")

    with get_client(sync_client=True) as client:
        [flow_run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_id]))
        )
    assert {"mallard", "housing", "validate", "regression"} <= set(flow_run.tags)
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
    # Untagged task runs: a tagged one costs two API calls for tag concurrency slots.
    assert task_runs and all(not run.tags for run in task_runs), [r.tags for r in task_runs]
    assert flow_run.parameters["spec_path"] == str(housing_spec)
    assert flow_run.parameters["input_path"] == str(housing_spec.parent / "data/housing.csv")
    assert flow_run.parameters["warehouse_file"] == str(housing_spec.parent / "warehouse.duckdb")

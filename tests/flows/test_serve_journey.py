"""The data engineer's journey: `mallard serve` on a spec with [schedule] against a real
`prefect server start`, train then score triggered through the Prefect API (as
`prefect deployment run` or the UI does), both Completed, and their rows in the warehouse.

Deployment parameters arrive as JSON strings; the flows' parameter validation must turn them
into Paths (issue 10: every deployed run failed with "'str' object has no attribute 'exists'").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.flows.conftest import stop

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 420.0  # a served run imports mallard in a fresh process: slow on 2 busy cores


def test_served_deployments_run_train_then_score_to_completion(
    scheduled_spec: Path, prefect_server_process: str, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = prefect_server_process
    db = tmp_path / "served.duckdb"
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_RUNNER_POLL_FREQUENCY="1")
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    serve_log = (tmp_path / "serve.log").open("wb")
    serving = subprocess.Popen(
        [sys.executable, "-m", "mallard.cli", "serve", str(scheduled_spec), "-w", str(db)],
        cwd=tmp_path / "incoming",  # not the spec's folder: the deployments must not care
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                train = _wait_for_deployment(client, "train/housing-train", serving, tmp_path)
                score = _wait_for_deployment(client, "score/housing-score", serving, tmp_path)
                assert {"mallard", "housing", "train", "regression"} <= set(train.tags)

                trained = _run_to_completion(client, train.id, tmp_path)
                scored = _run_to_completion(client, score.id, tmp_path)
    finally:
        stop(serving)
        serve_log.close()

    with duckdb.connect(str(db), read_only=True) as con:
        runs = dict(con.execute("SELECT flow, status FROM ml.runs ORDER BY started_at").fetchall())
        assert runs == {"train": "succeeded", "score": "succeeded"}, _logs(tmp_path)
        train_id, score_id = (
            con.execute(f"SELECT run_id FROM ml.runs WHERE flow = '{flow}'").fetchone()[0]  # type: ignore[index]
            for flow in ("train", "score")
        )
        n_models = con.execute(
            "SELECT count(*) FROM ml.models WHERE run_id = ?", [train_id]
        ).fetchone()
        n_predictions = con.execute(
            "SELECT count(*) FROM ml.predictions WHERE run_id = ?", [score_id]
        ).fetchone()
    assert n_models is not None and n_models[0] >= 2  # ridge + decision tree (+ baseline)
    assert n_predictions is not None and n_predictions[0] > 0
    # findable in the UI: the flow run is named after the mallard run and tagged
    assert trained.name == train_id and scored.name == score_id
    assert {"mallard", "housing", "train", "regression"} <= set(trained.tags)
    assert {"mallard", "housing", "score"} <= set(scored.tags)


def _wait_for_deployment(
    client: Any, name: str, serving: subprocess.Popen[bytes], tmp_path: Path
) -> Any:
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if serving.poll() is not None:
            pytest.fail(f"mallard serve exited with {serving.returncode}:\n{_logs(tmp_path)}")
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            time.sleep(0.5)
    pytest.fail(f"deployment {name} not registered after 180 s:\n{_logs(tmp_path)}")


def _run_to_completion(client: Any, deployment_id: Any, tmp_path: Path) -> Any:
    flow_run = client.create_flow_run_from_deployment(deployment_id)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        flow_run = client.read_flow_run(flow_run.id)
        if flow_run.state is not None and flow_run.state.is_final():
            assert flow_run.state.is_completed(), (
                f"{flow_run.name}: {flow_run.state.type} {flow_run.state.message}\n"
                + _logs(tmp_path)
            )
            return flow_run
        time.sleep(0.5)
    pytest.fail(
        f"flow run {flow_run.name} not finished after {RUN_TIMEOUT_S} s:\n{_logs(tmp_path)}"
    )


def _logs(tmp_path: Path) -> str:
    return (tmp_path / "serve.log").read_text(errors="replace")[-4000:]

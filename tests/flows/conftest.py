"""Fixtures for the flow tests: a spec with [schedule], and a real `prefect server start`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mallard.examples import write_housing_csv

SCHEDULE = """
[schedule]
train = "0 3 1 1 *"

[schedule.score]
cron = "30 3 1 1 *"
input = "incoming/new_houses*.csv"
"""


@pytest.fixture
def scheduled_spec(housing_spec: Path) -> Path:
    """conftest's fast housing spec plus a [schedule] (crons that do not fire during a test)
    and 60 new rows to score under incoming/."""
    write_housing_csv(housing_spec.parent / "incoming" / "new_houses.csv", rows=60, seed=11)
    with housing_spec.open("a", encoding="utf-8") as spec:
        spec.write(SCHEDULE)
    return housing_spec


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout_s} s")


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGINT to the process group (Prefect's clean stop), then SIGKILL: no orphans."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its group may not be: make sure nothing of it survives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        break


@pytest.fixture
def prefect_server_process(tmp_path: Path) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port, with its own PREFECT_HOME and an
    in-memory database; yields its API URL."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    log = (tmp_path / "prefect-server.log").open("wb")
    server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_healthy(api_url, server, timeout_s=120)
        yield api_url
    finally:
        stop(server)
        log.close()

"""The analyst's journey beside live pipelines: a DuckDB 1.x client holds the read copy open for
the whole of two `mallard run`s (CLI subprocesses); both runs succeed without waiting on the
reader, and after reopening the reader sees the new runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mallard.flows.train import train
from mallard.warehouse import read_copy_path
from tests.warehouse.test_read_copy import Reader

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _mallard_run(spec: Path, db: Path) -> subprocess.CompletedProcess[str]:
    """`mallard run` as a user types it, reporting to this session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    env["MALLARD_LOCK_TIMEOUT"] = "30"
    return subprocess.run(
        [sys.executable, "-m", "mallard.cli", "run", str(spec), "--warehouse", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_1x_reader_on_the_read_copy_through_two_mallard_runs(
    housing_spec: Path, db: Path, duckdb1_python: Path
) -> None:
    train(housing_spec, db)  # the run the reader first sees
    copy = read_copy_path(db)
    assert copy.exists(), "the train run published no read copy"
    reader = Reader(duckdb1_python, copy)
    try:
        assert reader.version.startswith("version 1.")
        before = reader.ask("count")
        assert before.startswith("runs 1 ")

        runs = [_mallard_run(housing_spec, db) for _ in range(2)]

        for done in runs:
            assert done.returncode == 0, done.stdout + done.stderr
            assert "waiting for the warehouse lock" not in done.stderr
            assert "read copy for analysts" in done.stdout
        assert reader.ask("count") == before  # still the copy it opened
        after = reader.ask("reopen")
        assert after.startswith("runs 3 "), after  # the two new runs, views included
        assert reader.quit() == 0
    finally:
        reader.stop()

"""Shared fixtures: one in-memory Prefect server per session, tiny data, tmp warehouses."""

from __future__ import annotations

import os

# Prefect reads its settings at import time: these must be set before anything imports it.
os.environ.update(
    {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
            "sqlite+aiosqlite:///file::memory:?cache=shared&uri=true&check_same_thread=false"
        ),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MALLARD_LOCK_TIMEOUT": "3",
        "COLUMNS": "200",  # rich tables must not wrap the ids the CLI tests look for
    }
)
os.environ.pop("MALLARD_WAREHOUSE", None)
os.environ.pop("PREFECT_API_URL", None)

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.logging.configuration import ensure_logging_setup

from mallard.examples import spec_text, write_housing_csv

# Bind Prefect's console log handler to pytest's stream now; bound inside a CliRunner invoke, it
# would keep writing to that invoke's closed stream.
ensure_logging_setup()

# A fast variant of the shipped housing spec: same schema, small search spaces.
FAST_CANDIDATES = """
[[candidates]]
family = "ridge"
params = { alpha = [0.1, 10.0] }

[[candidates]]
family = "decision_tree"
search = "random"
n_iter = 2
params = { max_depth = [3, 6, 9], min_samples_leaf = [5] }
"""


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def housing_spec(tmp_path: Path) -> Path:
    """The shipped housing spec with fast candidates, over 400 generated rows in tmp_path."""
    write_housing_csv(tmp_path / "data" / "housing.csv", rows=400, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES + "\n[evaluate]\n"
    text += 'primary_metric = "rmse"\n'
    text = text.replace("folds = 5", "folds = 3")
    spec = tmp_path / "housing.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"

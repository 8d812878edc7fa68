"""Settings read from the environment, and defaults shared by the CLI and the flows."""

from __future__ import annotations

import os
from pathlib import Path

from mallard.core.errors import WarehouseError

WAREHOUSE_ENV = "MALLARD_WAREHOUSE"
LOCK_TIMEOUT_ENV = "MALLARD_LOCK_TIMEOUT"
HOME_ENV = "MALLARD_HOME"  # mallard's own state: the local Prefect server's home, pid and log
PREFECT_PORT_ENV = "MALLARD_PREFECT_PORT"
DEFAULT_PREFECT_PORT = 4200  # Prefect's own default: the UI where users look for it
DEFAULT_WAREHOUSE = Path("warehouse.duckdb")
DEFAULT_LOCK_TIMEOUT_S = 30.0

# Prefect reads its settings at import time, so these must be set before `import prefect`.
# setdefault keeps whatever the user configured (e.g. PREFECT_API_URL for a real server).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def warehouse_path(explicit: Path | None = None) -> Path:
    """The warehouse file: the explicit path, else $MALLARD_WAREHOUSE, else ./warehouse.duckdb."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(WAREHOUSE_ENV)
    return Path(from_env) if from_env else DEFAULT_WAREHOUSE


def lock_timeout_s() -> float:
    """How long a write waits for another process to release the warehouse file."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):  # also refuses nan and inf
        raise WarehouseError(
            f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds >= 0; set it to e.g. "
            f"{DEFAULT_LOCK_TIMEOUT_S:g}, or unset it for the default"
        )
    return seconds


def mallard_home() -> Path:
    """$MALLARD_HOME, else ~/.mallard: where mallard's local Prefect server keeps its state."""
    from_env = os.environ.get(HOME_ENV)
    return Path(from_env) if from_env else Path.home() / ".mallard"


def prefect_port() -> int:
    """The port mallard's local Prefect server prefers ($MALLARD_PREFECT_PORT, else 4200)."""
    raw = os.environ.get(PREFECT_PORT_ENV)
    return int(raw) if raw else DEFAULT_PREFECT_PORT


def configure_prefect_environment() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)

"""Runs whose process is gone are marked `interrupted`.

A run killed with -9 (or whose machine stopped) never gets to write 'failed', so its row would
say 'running' forever. Each run stores the process that owns it (pid, hostname and the
process's start time, migration 5); every connection that opens the warehouse for writing
marks this host's 'running' runs whose process has ended, or whose pid now belongs to a process
that started at another time (pid reuse), as 'interrupted', with finished_at and an error
saying why. Runs of other hosts are left alone: their processes cannot be seen from here.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import duckdb

log = logging.getLogger("mallard.warehouse")
# /proc's start times are in clock ticks since boot: the same process reads the same value,
# so a second of slack only absorbs rounding of the stored timestamp.
_SAME_START_S = 1.0


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    hostname: str
    started_at: datetime | None  # None where /proc is not available


def this_process() -> ProcessIdentity:
    return ProcessIdentity(os.getpid(), socket.gethostname(), process_started_at(os.getpid()))


def process_started_at(pid: int) -> datetime | None:
    """When process `pid` started (Linux /proc), or None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces and parentheses.
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    boot = _boot_time()
    if boot is None:
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def why_gone(pid: int, started_at: datetime | None) -> str | None:
    """Why process `pid` (started at `started_at`) no longer runs here; None while it does."""
    if not _exists(pid):
        return f"its process (PID {pid}) is gone"
    now_started = process_started_at(pid)
    if (
        started_at is not None
        and now_started is not None
        and abs((now_started - started_at).total_seconds()) > _SAME_START_S
    ):
        return f"its process (PID {pid}) is gone; PID {pid} now belongs to another process"
    return None


def mark_interrupted(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mark this host's running runs whose process is gone as interrupted; their run ids."""
    host = socket.gethostname()
    rows = con.execute(
        "SELECT run_id, pid, process_started_at FROM ml.runs "
        "WHERE status = 'running' AND hostname = ? AND pid IS NOT NULL",
        [host],
    ).fetchall()
    marked = []
    for run_id, pid, started_at in rows:
        reason = why_gone(int(pid), started_at)
        if reason is None:
            continue
        now = datetime.now(UTC)
        error = (
            f"interrupted: {reason} on {host} (killed, crashed or stopped) before the run "
            f"finished; marked at {now:%Y-%m-%d %H:%M:%S} UTC by PID {os.getpid()}"
        )
        # Only if still running: another writer may have marked it meanwhile.
        con.execute(
            "UPDATE ml.runs SET status = 'interrupted', finished_at = ?, error = ? "
            "WHERE run_id = ? AND status = 'running'",
            [now, error, run_id],
        )
        log.warning("run %s was left running; %s", run_id, error)
        marked.append(str(run_id))
    return marked


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # a zombie (exited, not yet reaped by its parent) has finished
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@cache
def _boot_time() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1])
    except OSError:
        return None
    return None

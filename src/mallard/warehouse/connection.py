"""Open the warehouse file briefly, waiting (bounded) while another process holds its lock.

A wait is announced once, on the `mallard.warehouse` logger (stderr when nothing configured
logging), naming the holder, and ends after one timeout: each `connect` waits at most
MALLARD_LOCK_TIMEOUT seconds in total, however many attempts that takes.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from mallard.core.config import lock_timeout_s
from mallard.core.errors import WarehouseError
from mallard.warehouse.migrations import migrate
from mallard.warehouse.reaper import mark_interrupted

T = TypeVar("T")
log = logging.getLogger("mallard.warehouse")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


@contextmanager
def connect(
    db: Path, *, read_only: bool = False, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `db`, closed on exit. Writers also bring the schema up to date and mark
    runs whose process is gone as interrupted (warehouse/reaper.py).

    `timeout_s` bounds the lock wait (default MALLARD_LOCK_TIMEOUT); 0 tries once, e.g. to
    record a failure after a lock wait has already timed out."""
    if read_only and not db.exists():
        raise WarehouseError(
            f"no warehouse at {db}: run a pipeline first (`mallard demo` or `mallard run SPEC`)"
        )
    con = retry_on_lock(
        db, lambda: duckdb.connect(str(db), read_only=read_only), timeout_s=timeout_s
    )
    try:
        if not read_only:
            migrate(con)
            mark_interrupted(con)  # runs whose process is gone (e.g. kill -9) stop 'running'
        yield con
    finally:
        con.close()


def retry_on_lock(db: Path, open_file: Callable[[], T], *, timeout_s: float | None = None) -> T:
    """Call `open_file` (anything that opens `db`) until the file's lock is free, for at most
    `timeout_s` (default MALLARD_LOCK_TIMEOUT) seconds, with jittered exponential backoff.
    The first lock conflict is logged once, naming the holder."""
    timeout = lock_timeout_s() if timeout_s is None else max(timeout_s, 0.0)
    deadline = time.monotonic() + timeout
    delay = 0.05
    announced = False
    while True:
        try:
            return open_file()
        except duckdb.IOException as exc:
            # Look for "lock" in the message without the path, which may contain it too.
            if "lock" not in str(exc).replace(str(db), "").lower():
                raise WarehouseError(f"cannot open warehouse {db}: {exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseError(_locked_message(db, str(exc), timeout)) from None
            if not announced:
                log.warning(
                    "waiting for the warehouse lock held by %s on %s (up to %g s)",
                    _holder(str(exc), pid_first=True),
                    db,
                    timeout,
                )
                announced = True
            # Jitter: writers must not retry in step; never sleep past the deadline.
            time.sleep(min(delay * (1 + random.random()), remaining))
            delay = min(delay * 2, 1.0)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open warehouse {db}: {exc}") from None


def _holder(error: str, *, pid_first: bool = False) -> str:
    """Who holds the lock, from DuckDB's error: '/usr/bin/python3 (PID 123)', or with
    `pid_first` 'PID 123 (/usr/bin/python3)'; 'another process' if the error does not say."""
    holder = _LOCK_HOLDER.search(error)
    if not holder:
        return "another process"
    if pid_first:
        return f"PID {holder['pid']} ({holder['program']})"
    return f"{holder['program']} (PID {holder['pid']})"


def _locked_message(db: Path, error: str, timeout: float) -> str:
    from mallard.warehouse.read_copy import read_copy_path  # read_copy imports this module

    return (
        f"warehouse {db} is locked by {_holder(error)} and stayed locked for {timeout:g} s; "
        "close that duckdb shell or connection (for long reads, open the read copy "
        f"{read_copy_path(db)} or use `mallard snapshot`) and run again"
    )

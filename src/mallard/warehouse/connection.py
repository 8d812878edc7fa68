"""Open the warehouse file briefly, waiting (bounded) while another process holds its lock."""

from __future__ import annotations

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

T = TypeVar("T")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


@contextmanager
def connect(db: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `db`, closed on exit. Writers also bring the schema up to date."""
    if read_only and not db.exists():
        raise WarehouseError(
            f"no warehouse at {db}: run a pipeline first (`mallard demo` or `mallard run SPEC`)"
        )
    con = _open_with_retry(db, read_only)
    try:
        if not read_only:
            migrate(con)
        yield con
    finally:
        con.close()


def _open_with_retry(db: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    return retry_on_lock(db, lambda: duckdb.connect(str(db), read_only=read_only))


def retry_on_lock(db: Path, open_file: Callable[[], T]) -> T:
    """Call `open_file` (anything that opens `db`) until the file's lock is free, for at most
    MALLARD_LOCK_TIMEOUT seconds, with jittered exponential backoff."""
    deadline = time.monotonic() + lock_timeout_s()
    delay = 0.05
    while True:
        try:
            return open_file()
        except duckdb.IOException as exc:
            # Look for "lock" in the message without the path, which may contain it too.
            if "lock" not in str(exc).replace(str(db), "").lower():
                raise WarehouseError(f"cannot open warehouse {db}: {exc}") from None
            if time.monotonic() >= deadline:
                raise WarehouseError(_locked_message(db, str(exc))) from None
            time.sleep(delay * (1 + random.random()))  # jitter: writers must not retry in step
            delay = min(delay * 2, 1.0)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open warehouse {db}: {exc}") from None


def _locked_message(db: Path, error: str) -> str:
    holder = _LOCK_HOLDER.search(error)
    who = f"{holder['program']} (PID {holder['pid']})" if holder else "another process"
    return (
        f"warehouse {db} is locked by {who} and stayed locked for {lock_timeout_s():g} s; "
        "close that duckdb shell or connection (for long reads, use `mallard snapshot`) "
        "and run again"
    )

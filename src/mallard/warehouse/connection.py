"""Open the warehouse file briefly, waiting (bounded) while another process holds its lock.

A wait is announced once, on the `mallard.warehouse` logger (stderr when nothing configured
logging), naming the holder, and ends after one timeout: each `connect` waits at most
MALLARD_LOCK_TIMEOUT seconds in total, however many attempts that takes.

What is opened must be a mallard warehouse this code understands: a folder, a damaged or
truncated file, a DuckDB file holding other tables but no ml.schema_migrations, a schema version
newer than this code's migrations, or a migration that does not apply (an older layout) are
WarehouseErrors in one line naming the file, never a library traceback.
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
from mallard.warehouse import migrations
from mallard.warehouse.migrations import migrate, schema_version
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
    refuse_unusable_path(db)
    con = retry_on_lock(
        db, lambda: duckdb.connect(str(db), read_only=read_only), timeout_s=timeout_s
    )
    try:
        require_mallard_schema(con, db)
        if not read_only:
            _migrate(con, db)
            mark_interrupted(con)  # runs whose process is gone (e.g. kill -9) stop 'running'
        yield con
    except (duckdb.IOException, duckdb.SerializationException) as exc:
        raise WarehouseError(_damaged(db, exc)) from None
    except duckdb.Error as exc:
        if "corrupt" in str(exc).lower():
            raise WarehouseError(_damaged(db, exc)) from None
        raise
    finally:
        con.close()


def refuse_unusable_path(db: Path) -> None:
    """A folder, or a file in a folder that does not exist, cannot be a warehouse."""
    if db.is_dir():
        raise WarehouseError(f"warehouse {db} is a folder, not a DuckDB file; name a file")
    if not db.parent.is_dir():
        raise WarehouseError(f"cannot open warehouse {db}: folder {db.parent} does not exist")


def require_mallard_schema(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """Refuse a DuckDB file that is not a mallard warehouse, or one from a newer mallard. An
    empty file is fine: a writer makes it a warehouse."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() ORDER BY ALL"
    ).fetchall()
    if ("ml", "schema_migrations") not in tables:
        if tables:
            shown = ", ".join(f"{schema}.{name}" for schema, name in tables[:3])
            raise WarehouseError(
                f"{db} is a DuckDB file but not a mallard warehouse (it holds {shown}"
                f"{', ...' if len(tables) > 3 else ''} and no ml.schema_migrations); point "
                "--warehouse or MALLARD_WAREHOUSE at a mallard warehouse or a new file"
            )
        return
    found, known = schema_version(con), latest_version()
    if found > known:
        raise WarehouseError(
            f"warehouse {db} is at schema version {found}, newer than this mallard knows "
            f"({known}): it was written by a newer mallard; upgrade mallard to use it"
        )


def _migrate(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """migrate(con), with a migration that does not apply (tables not laid out as this code's
    migrations left them) reported as an incompatible warehouse."""
    found = schema_version(con) if _has_migrations_table(con) else 0
    try:
        migrate(con)
    except (duckdb.IOException, duckdb.SerializationException):
        raise  # a damaged file: connect() says so
    except duckdb.Error as exc:
        if "corrupt" in str(exc).lower():
            raise
        raise WarehouseError(
            f"warehouse {db} (schema version {found}) cannot be migrated to version "
            f"{latest_version()}: {first_line(exc)}; its tables are not what this mallard's "
            "migrations expect (an incompatible older layout): restore a backup, or use a new "
            "warehouse file"
        ) from None


def _has_migrations_table(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ml' "
        "AND table_name = 'schema_migrations' AND table_catalog = current_database()"
    ).fetchall()
    return bool(found[0][0])


def _damaged(db: Path, exc: BaseException) -> str:
    return (
        f"warehouse {db} is damaged or truncated ({first_line(exc)}); restore it from a "
        "backup or a `mallard snapshot` copy, or use a new warehouse file"
    )


def first_line(exc: BaseException) -> str:
    """DuckDB's messages can span lines (a caret under the query, hints): keep the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _cannot_open(db: Path, exc: duckdb.Error) -> str:
    text = str(exc)
    if any(sign in text for sign in ("orrupt", "not a valid DuckDB", "read enough bytes")):
        return _damaged(db, exc)
    return f"cannot open warehouse {db}: {first_line(exc)}"


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
                raise WarehouseError(_cannot_open(db, exc)) from None
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
            raise WarehouseError(_cannot_open(db, exc)) from None


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


def latest_version() -> int:
    """The schema version this code's migrations end at."""
    return migrations.MIGRATIONS[-1][0]

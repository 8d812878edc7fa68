"""A `dask worker --preload` for the Dask journey: each candidate search waits, before it
starts, until searches have started in two worker processes; after 120 s it fails the search.

Without it, whether both workers get work depends on timing: the test's candidates take ~0.2 s,
and on a loaded machine the first could finish before the flow has submitted the second, so one
worker would run them all. With it, a flow that submits its candidates together keeps the first
worker busy while the others arrive, and the scheduler must give the next one to the idle worker;
a flow that waited for each search before submitting the next would stall here and fail."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mallard.tasks.tune as tune
from mallard.tasks.threads import search_running as _search_running

FOLDER = Path(os.environ["MALLARD_TEST_BARRIER"])
WORKERS = 2
WAIT_SECONDS = 120.0


@contextmanager
def search_running() -> Iterator[None]:
    (FOLDER / str(os.getpid())).touch()
    deadline = time.monotonic() + WAIT_SECONDS
    while len(list(FOLDER.iterdir())) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"dask_barrier: no search started on a second worker in {WAIT_SECONDS} s"
            )
        time.sleep(0.05)
    with _search_running():
        yield


# tune_candidate looks this name up when it runs; the task itself (pickled by name) is unchanged.
# Dask may run a preload twice in one process, so the original comes from its own module.
tune.search_running = search_running

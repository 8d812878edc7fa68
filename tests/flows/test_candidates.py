"""The train flow's candidate searches are logged as each finishes, and come back in spec order."""

from __future__ import annotations

import threading

import polars as pl
import pytest
from prefect import flow, task

from mallard.flows.candidates import resolved
from mallard.tasks.tune import Tuned

FINISHED = threading.Event()  # set once the fast search's line has been logged
WAIT_SECONDS = 60.0


def _tuned(name: str) -> Tuned:
    return Tuned(name, "ridge", {}, pl.DataFrame(), {"rmse": 1.0}, None, 0.1)


@task
def slow_search() -> Tuned:
    # Finishes only once the fast search has been logged: logging in submission order would
    # wait here for the whole timeout, and log the fast search second.
    FINISHED.wait(WAIT_SECONDS)
    return _tuned("slow")


@task
def fast_search() -> Tuned:
    return _tuned("fast")


@pytest.mark.usefixtures("prefect_server")
def test_searches_are_logged_as_they_finish_and_returned_in_submission_order() -> None:
    lines: list[str] = []

    def log(message: str, *args: object) -> None:
        lines.append(message % args)
        if "fast" in lines[-1]:
            FINISHED.set()

    @flow
    def searches() -> list[Tuned]:
        futures = [slow_search.submit(), fast_search.submit()]
        return resolved(futures, 3, "rmse", log, done_before=1)

    FINISHED.clear()
    results = searches()

    assert [r.name for r in results] == ["slow", "fast"]  # the spec's order, for the run's rows
    assert [line.split(" = ")[0] for line in lines] == [
        "tune 2/3: fast rmse",
        "tune 3/3: slow rmse",
    ]

"""Boosting's OpenMP threads: shared among the running searches, widened per search round, and
never a cause of different model bytes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV
from threadpoolctl import threadpool_info, threadpool_limits

from mallard.core.spec import FeaturesSection
from mallard.tasks import threads
from mallard.tasks.families import family
from mallard.tasks.features import model_pipeline, prepare_features
from mallard.tasks.model_files import save_model
from mallard.tasks.threads import (
    WIDE_FIT_ROWS,
    fit_threads,
    recorded_single_threaded,
    search_running,
)
from mallard.tasks.tune import _widen_each_round

BOOSTING = "hist_gradient_boosting"


def openmp_threads() -> int:
    """What an OpenMP parallel region started by this thread would use."""
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")


def busy_elsewhere(monkeypatch: pytest.MonkeyPatch, cores: float | None) -> None:
    """Pin what the sampled CPU counters say other processes keep busy."""
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: cores)


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of 4 cores that nothing outside the test keeps busy."""
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    busy_elsewhere(monkeypatch, 0.0)


def test_boosting_takes_the_budget_shared_by_the_running_searches(four_cores: None) -> None:
    big = WIDE_FIT_ROWS
    assert fit_threads(BOOSTING, big) == 4  # nothing else runs (e.g. the final refit)
    with search_running():
        assert fit_threads(BOOSTING, big) == 4
        with search_running():
            assert fit_threads(BOOSTING, big) == 2
            with search_running(), search_running():
                assert fit_threads(BOOSTING, big) == 1
        assert fit_threads(BOOSTING, big) == 4  # the others finished
    assert fit_threads(BOOSTING, big - 1) == 1  # too small to gain from threads
    assert fit_threads("ridge", big) == 1  # BLAS pools are process-wide: never widened
    assert fit_threads("mlp", big) == 1


def test_cores_other_processes_keep_busy_are_not_taken(
    four_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with search_running():
        busy_elsewhere(monkeypatch, 0.3)  # a little noise: all 4 cores
        assert fit_threads(BOOSTING, WIDE_FIT_ROWS) == 4
        busy_elsewhere(monkeypatch, 2.0)  # two cores busy elsewhere
        assert fit_threads(BOOSTING, WIDE_FIT_ROWS) == 2
        busy_elsewhere(monkeypatch, 7.5)  # an overloaded machine: one thread, as before
        assert fit_threads(BOOSTING, WIDE_FIT_ROWS) == 1
        busy_elsewhere(monkeypatch, None)  # no CPU counters here: the share alone
        assert fit_threads(BOOSTING, WIDE_FIT_ROWS) == 4


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat CPU counters")
def test_a_busy_process_elsewhere_is_counted_and_this_one_is_not() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        seen = threads.busy_elsewhere()
    finally:
        spinner.kill()
        spinner.wait()
    assert seen is not None and seen >= 0.3  # most of a core, however loaded the machine is


def test_omp_num_threads_bounds_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Dask's nanny gives each worker process

    def never() -> float:
        raise AssertionError("sampled the CPU counters with nothing to widen onto")

    monkeypatch.setattr(threads, "busy_elsewhere", never)
    assert fit_threads(BOOSTING, 10 * WIDE_FIT_ROWS) == 1


class ThreadRecorder(RegressorMixin, BaseEstimator):
    """Records, per fit, the rows it got and the OpenMP threads a fit would use; its first fit
    ends the `other` search, as a finished candidate would. (Class attributes: the search
    clones its estimator, parameters included.)"""

    seen: ClassVar[list[tuple[int, int]]] = []
    other: ClassVar[OtherSearch | None] = None

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> ThreadRecorder:
        ThreadRecorder.seen.append((len(X), openmp_threads()))
        if ThreadRecorder.other is not None and ThreadRecorder.other.running:
            ThreadRecorder.other.finish()
        self.mean_ = float(np.mean(y)) + self.alpha * 1e-9
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), self.mean_)


class OtherSearch:
    def __init__(self) -> None:
        self.block = search_running()
        self.block.__enter__()
        self.running = True

    def finish(self) -> None:
        self.running = False
        self.block.__exit__(None, None, None)


def test_each_halving_round_takes_the_threads_free_when_it_starts(four_cores: None) -> None:
    rng = np.random.default_rng(0)
    n = 9 * WIDE_FIT_ROWS
    X, y = rng.normal(size=(n, 2)), rng.normal(size=n)
    ThreadRecorder.seen = seen = []
    ThreadRecorder.other = OtherSearch()
    search = HalvingRandomSearchCV(
        ThreadRecorder(),
        {"alpha": [0.1, 1.0, 10.0]},
        n_candidates=3,
        min_resources="exhaust",
        cv=2,
        random_state=0,
    )
    _widen_each_round(search, BOOSTING, n)

    with search_running(), threadpool_limits(limits=1):
        search.fit(X, y)
        after = openmp_threads()

    rounds = sorted({rows for rows, _ in seen})
    first_round = {threads for rows, threads in seen if rows == rounds[0]}
    later = {threads for rows, threads in seen if rows != rounds[0]}
    assert len(rounds) >= 2
    assert first_round == {2}  # started while the other search still ran: half the budget
    assert later == {4}  # the other one had finished: the whole budget, refit included
    assert after == 4  # until the block ends


def test_boosting_models_are_the_same_bytes_for_any_thread_count() -> None:
    rng = np.random.default_rng(1)
    n = 30_000
    frame = pl.DataFrame(
        {
            "price": rng.normal(100, 10, n),
            "lotsize": rng.normal(5000, 900, n),
            "rooms": rng.integers(1, 6, n).astype(float),
            "area": rng.choice(["north", "south", "east"], n),
        }
    )
    features = prepare_features(frame, FeaturesSection(), "price")
    hashes = []
    for count in (1, 2, 3):
        estimator = family("regression", BOOSTING).make(0).set_params(max_iter=30)
        pipeline = model_pipeline(features, estimator)
        with threadpool_limits(limits=count, user_api="openmp"):
            pipeline.fit(features.X, features.y)
        hashes.append(save_model(recorded_single_threaded(pipeline)).sha256)
    assert len(set(hashes)) == 1

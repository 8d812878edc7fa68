"""How many OpenMP threads a boosting fit may use.

The candidate searches of a run share the machine's cores, one thread each while several run.
Once fewer remain, the rest take the idle cores (those other processes do not keep busy either)
for their next successive-halving round and their refit: at 1M rows boosting's search ran alone
on one thread for 6.5 of its 7.5 minutes while the second core idled. Only hist gradient
boosting is widened: its fitted model is the same for any thread count once
`recorded_single_threaded` has reset the one attribute that records the count (the tests check
the bytes), while BLAS pools are process-wide and other families' results may depend on them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import threadpool_limits

# Below this many rows a fit is over before extra threads pay for their start-up.
WIDE_FIT_ROWS = 20_000
WIDENED_FAMILIES = frozenset({"hist_gradient_boosting"})

_lock = threading.Lock()
_running = 0
# Busy cores are sampled over this long before a widened round (the search waits for it; at
# the kernel's 100 ticks a second it still resolves a twentieth of a core): the 1-minute load
# average reacted too slowly (after a 2-core job ended, boosting stayed on one thread).
SAMPLE_SECONDS = 0.2


def core_budget() -> int:
    """The cores this process may use: OMP_NUM_THREADS when set (Dask's nanny sets it to 1 for
    each worker process, so workers on one machine do not oversubscribe it), else all."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


@contextmanager
def search_running() -> Iterator[None]:
    """Count a candidate search as running in this process while the block runs."""
    global _running
    with _lock:
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1


def fit_threads(family: str, n_rows: int) -> int:
    """Threads for the next fit of `family` on `n_rows` rows: the budget shared by the searches
    running now, and no more than the cores other processes leave idle (1 for families whose
    results could depend on it, and for small fits)."""
    if family not in WIDENED_FAMILIES or n_rows < WIDE_FIT_ROWS:
        return 1
    with _lock:
        share = core_budget() // max(1, _running)
    if share <= 1:
        return 1  # nothing to widen onto: no need to sample the CPU counters
    elsewhere = busy_elsewhere()
    if elsewhere is None:
        return share
    # OpenMP threads that share a core with another process wait at every barrier for a
    # descheduled partner: under a load of 5 on 2 cores a 100k-row boosting fit took 2.9-18 s
    # on two threads against 2.2 s on one.
    return max(1, min(share, core_budget() - round(elsewhere)))


def busy_elsewhere() -> float | None:
    """Cores other processes kept busy over the last SAMPLE_SECONDS: the system's busy CPU time
    (/proc/stat) minus this process's own; None where the system does not count it."""
    before, own_before = _system_busy_seconds(), _own_seconds()
    if before is None:
        return None
    time.sleep(SAMPLE_SECONDS)
    after, own_after = _system_busy_seconds(), _own_seconds()
    if after is None:
        return None
    return max(0.0, ((after - before) - (own_after - own_before)) / SAMPLE_SECONDS)


def _system_busy_seconds() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle + iowait; user, nice, system, irq, softirq, steal busy
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def use_openmp_threads(n: int) -> None:
    """Set this thread's OpenMP thread count for the fits that follow, until the enclosing
    `threadpool_limits` block restores it (OpenMP's setting is per calling thread)."""
    threadpool_limits(limits=n, user_api="openmp")


def recorded_single_threaded(model: Any) -> Any:
    """`model` with every hist gradient boosting bin mapper's `n_threads` set to 1, as if fitted
    on one thread: the mapper keeps the count it was fitted with (so the model file's bytes
    would depend on how many searches happened to run), although the bins, the trees and every
    prediction are the same for any count, and predict counts its threads afresh."""
    seen: set[int] = set()

    def visit(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif hasattr(value, "get_params") and hasattr(value, "__dict__"):  # an estimator
            if type(value).__name__ == "_BinMapper" and getattr(value, "n_threads", 1) != 1:
                value.n_threads = 1
            for item in vars(value).values():
                visit(item)

    visit(model)
    return model

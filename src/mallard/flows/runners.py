"""Where a flow's submitted tasks run: threads in the flow process (the flows' own default), or
a Dask cluster that is already running (`mallard run --dask tcp://HOST:PORT`,
MALLARD_DASK_ADDRESS, or the spec's `[train] dask`). The train flow chooses when it runs, not
when it is defined, so a deployed run (its worker's environment, the spec) can use Dask too.

Only submitted tasks go to the cluster: in the train flow that is one task per candidate search
(tune_candidate, tune_clusterer, build_ensemble), never a fold (Prefect's cost per task on a
worker is ~110 ms). Everything else, and the one warehouse write, stays in the flow process.

What every machine of the cluster needs (measured with prefect-dask 0.3.7, distributed
2026.8.0, prefect 3.9.1):
- the same environment with `mallard[dask]`: the scheduler unpickles task graphs, so it imports
  mallard too;
- PREFECT_API_URL pointing at the Prefect server the flow uses (a worker reports its task runs
  there; without it each worker would start a temporary server of its own);
- nothing else: each search limits OpenMP/BLAS to one thread itself (tasks/tune.py, cluster.py,
  ensembles.py), and the frames travel as task parameters.
Distributed workers are daemonic processes by default, so joblib runs a search's folds one
after another there (one core per worker thread: start one worker thread per core). Started with
DASK_DISTRIBUTED__WORKER__DAEMON=False, a worker lets joblib fan the folds out over its cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mallard.core.errors import InputError
from mallard.core.spec import Spec

ADDRESS_VARIABLE = "MALLARD_DASK_ADDRESS"
CONNECT_SECONDS = 5.0
PRELOAD = "mallard.flows.train"  # `dask worker --preload` this: see local_dask


def candidate_address(parameter: str | None, spec: Spec) -> str | None:
    """Where the train flow runs its candidate searches: the flow's `dask_address` parameter
    (`mallard run --dask`), else MALLARD_DASK_ADDRESS in the flow's process (a deployment's
    worker), else the spec's `[train] dask`; None: threads in the flow process."""
    return parameter or os.environ.get(ADDRESS_VARIABLE) or spec.train.dask or None


def dask_runner(address: str) -> Any:
    """A DaskTaskRunner on an existing scheduler (prefect-dask is the optional `dask` extra)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise InputError(
            "running candidates on Dask needs the dask extra in this environment: "
            "pip install 'mallard[dask]' "
            "(the scheduler and every worker need it too)"
        ) from None
    check_reachable(address)
    return DaskTaskRunner(address=address)


def check_reachable(address: str) -> None:
    """Refuse an address no scheduler answers at (Dask itself would wait 30 s, then fail inside
    the flow run with a long traceback)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in {"tcp", "tls"}:
        raise InputError(f"Dask address '{address}' must look like tcp://HOST:PORT")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise InputError(f"Dask address '{address}' must look like tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        raise InputError(
            f"no Dask scheduler answers at {address} ({exc.strerror or exc}); start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS` in mallard's environment"
        ) from None


@dataclass(frozen=True)
class LocalDask:
    """A scheduler and workers started as processes on this machine (tests, benchmarks, trying
    --dask out): the address to pass to --dask, and the scheduler file Dask clients can read."""

    address: str
    scheduler_file: Path


@contextmanager
def local_dask(
    folder: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    start_seconds: float = 120.0,
    preload: Sequence[str] = (),
) -> Iterator[LocalDask]:
    """Start `dask scheduler` on a free port of 127.0.0.1 and `workers` times `dask worker
    --nthreads 1` in this Python environment; stop exactly those processes on exit. Their output
    goes to dask-*.log files in `folder`. `preload`: more modules or .py files each worker runs
    before it joins (after mallard's flow code)."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    dask = [sys.executable, "-m", "dask"]
    local = ["--host", "127.0.0.1", "--no-dashboard"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(
            _start(
                [
                    *dask,
                    "scheduler",
                    *local,
                    "--port",
                    "0",
                    # The scheduler unpickles task graphs: it imports the flow's code too.
                    "--preload",
                    PRELOAD,
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                folder / "dask-scheduler.log",
                env,
            )
        )
        deadline = time.monotonic() + start_seconds
        while not scheduler_file.exists():
            if started[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start; see {folder}/dask-scheduler.log")
            time.sleep(0.2)
        for i in range(workers):
            # Preloading imports the flow's code before the worker joins: unpickling the
            # first task would otherwise import it in the worker's event loop (~12 CPU-s).
            command = [*dask, "worker", *local, "--nthreads", "1", "--name", f"mallard-{i}"]
            for module in (PRELOAD, *preload):
                command += ["--preload", module]
            command += ["--scheduler-file", str(scheduler_file)]
            started.append(_start(command, folder / f"dask-worker-{i}.log", env))
        from distributed import Client

        with Client(scheduler_file=str(scheduler_file), timeout=start_seconds) as client:
            client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
            address = str(client.scheduler.address)
        yield LocalDask(address=address, scheduler_file=scheduler_file)
    finally:
        workers_started, scheduler = started[1:], started[:1]
        for group in (workers_started, scheduler):  # workers first, while the scheduler runs
            for process in group:
                process.terminate()
            for process in group:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _start(command: list[str], log: Path, env: Mapping[str, str] | None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=None if env is None else dict(env)
        )

"""The train flow on a Dask cluster of this machine (a scheduler and two one-thread workers)
beside the same spec in-process, for `make bench`.

    python benchmarks/dask_bench.py [--rows 20000] [--keep DIR]

`dask_row(rows)` generates seeded housing data (seed 42) with the shipped housing spec (its forest
at a quarter of the trees, as benchmarks/run.py does), runs `train` in this process on one
temporary Prefect server, first locally (ThreadPoolTaskRunner), then with `--dask`'s runner on the
cluster, and returns a markdown row: both wall times, the overhead, the cluster's start-up (not
in the Dask wall time) and whether every model's sha256 is equal. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Prefect reads its settings at import time.
os.environ.update(
    {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
            "sqlite+aiosqlite:///file::memory:?cache=shared&uri=true&check_same_thread=false"
        ),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
)

import duckdb
import psutil

SEED = 42
SHIPPED_FOREST = "n_estimators = [100, 200]"
BENCH_FOREST = "n_estimators = [25, 50]"
HEADER = (
    "| rows | candidates | local run (s) | Dask run, 2 workers (s) | overhead | cluster start (s) "
    "| features, pickled (MB; sent once to each worker) | sha256 equal | other load |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class DaskBench:
    rows: int
    candidates: int
    local_s: float
    dask_s: float
    start_s: float
    frame_mb: float  # pickled feature frame: what travels with every candidate task
    same_sha256: bool
    other_load: float  # mean busy cores of other processes while the runs went on

    def markdown_row(self) -> str:
        overhead = self.dask_s - self.local_s
        return (
            f"| {self.rows:,} | {self.candidates} | {self.local_s:.1f} | {self.dask_s:.1f} "
            f"| {overhead:+.1f} s ({self.dask_s / self.local_s:.2f}x) | {self.start_s:.1f} "
            f"| {self.frame_mb:.1f} | {'yes' if self.same_sha256 else '**no**'} "
            f"| {self.other_load:.1f} cores |"
        )


def bench_spec() -> str:
    from mallard.examples import HOUSING_SPEC, spec_text

    shipped = spec_text(HOUSING_SPEC)
    if shipped.count(SHIPPED_FOREST) != 1:
        raise SystemExit(f"the shipped spec no longer has '{SHIPPED_FOREST}': update dask_bench")
    return shipped.replace(SHIPPED_FOREST, BENCH_FOREST)


def dask_row(rows: int = 20_000, folder: Path | None = None, workers: int = 2) -> DaskBench:
    """Time a local and a Dask run of the same spec (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="mallard-dask-bench-") as scratch:
        return _bench(rows, folder or Path(scratch), workers)


def _bench(rows: int, folder: Path, workers: int) -> DaskBench:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from mallard.examples import write_housing_csv
    from mallard.flows.runners import local_dask
    from mallard.flows.train import train

    folder.mkdir(parents=True, exist_ok=True)
    write_housing_csv(folder / "data" / "housing.csv", rows=rows, seed=SEED)
    spec = folder / "housing.toml"
    spec.write_text(bench_spec(), encoding="utf-8")
    local_db, dask_db = folder / "local.duckdb", folder / "dask.duckdb"
    for db in (local_db, dask_db):
        db.unlink(missing_ok=True)
    load = _OtherLoad()
    with prefect_test_harness(server_startup_timeout=90):
        started = time.perf_counter()
        train(spec, local_db)
        local_s = time.perf_counter() - started
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        started = time.perf_counter()
        with local_dask(folder / "dask", workers=workers, env=env) as cluster:
            start_s = time.perf_counter() - started
            started = time.perf_counter()
            train(spec, dask_db, dask_address=cluster.address)
            dask_s = time.perf_counter() - started
    local_models, dask_models = _models(local_db), _models(dask_db)
    return DaskBench(
        rows=rows,
        candidates=len(local_models),
        local_s=local_s,
        dask_s=dask_s,
        start_s=start_s,
        frame_mb=_frame_mb(folder / "data" / "housing.csv"),
        same_sha256=local_models == dask_models,
        other_load=load.cores(),
    )


def _models(db: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql("SELECT candidate, sha256 FROM ml.models ORDER BY candidate").fetchall()


def _frame_mb(data: Path) -> float:
    """Pickled size of the input rows: about what travels with every candidate task (the
    feature frame has the same rows and about as many columns)."""
    import polars as pl

    return len(pickle.dumps(pl.read_csv(data), protocol=pickle.HIGHEST_PROTOCOL)) / 1e6


class _OtherLoad:
    """Busy cores of processes other than this one and its children, from now until cores()."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.started = time.perf_counter()
        self.busy = self._busy()

    def _busy(self) -> float:
        times = psutil.cpu_times()
        total = times.user + times.system + getattr(times, "nice", 0.0)
        own = self.me.cpu_times()
        mine = own.user + own.system + own.children_user + own.children_system
        return total - mine

    def cores(self) -> float:
        return (self._busy() - self.busy) / max(time.perf_counter() - self.started, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="keep data, warehouses and Dask logs here")
    args = parser.parse_args()
    result = dask_row(args.rows, args.keep)
    print(HEADER)
    print(result.markdown_row())


if __name__ == "__main__":
    main()

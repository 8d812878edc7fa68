"""The train flow on a Dask cluster of real processes (a scheduler and two one-thread workers on
127.0.0.1) writes the same rows and the same model bytes as an in-process run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from prefect.settings import PREFECT_API_URL

from mallard.core.errors import InputError
from mallard.core.spec import load_spec
from mallard.flows.runners import (
    ADDRESS_VARIABLE,
    LocalDask,
    candidate_address,
    check_reachable,
    local_dask,
)
from mallard.flows.train import train

# Every row a run writes that must not depend on where the candidates ran (run ids aside).
COMPARED = {
    "cv_results": "SELECT * EXCLUDE (run_id) FROM ml.cv_results ORDER BY ALL",
    "metrics": (
        "SELECT * EXCLUDE (run_id, model_id), split_part(model_id, ':', -1) AS candidate "
        "FROM ml.metrics ORDER BY ALL"
    ),
    "models": (
        "SELECT candidate, family, params, size_bytes, sha256, trusted_types "
        "FROM ml.models ORDER BY candidate"
    ),
}


BARRIER = Path(__file__).with_name("dask_barrier.py")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalDask]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {
        **os.environ,
        # Workers report their task runs to the test's Prefect server, not servers of their own.
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "MALLARD_TEST_BARRIER": str(barrier),
    }
    with local_dask(tmp_path / "dask", workers=2, env=env, preload=[str(BARRIER)]) as started:
        yield started


def rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {table: con.sql(query).fetchall() for table, query in COMPARED.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_dask_run_equals_local_run_and_uses_both_workers(
    housing_spec: Path, tmp_path: Path, cluster: LocalDask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client
    from prefect_dask.client import PrefectDaskClient

    scattered: list[tuple[object, bool]] = []
    real_scatter = PrefectDaskClient.scatter

    def scatter(self: PrefectDaskClient, data: object, **kwargs: object) -> object:
        scattered.append((data, bool(kwargs.get("broadcast"))))
        return real_scatter(self, data, **kwargs)

    monkeypatch.setattr(PrefectDaskClient, "scatter", scatter)
    local = train(housing_spec, tmp_path / "local.duckdb")
    with Client(cluster.address) as client:
        client.get_task_stream()  # installs the scheduler's task-stream recorder
        pids = client.run(os.getpid)  # worker address -> pid
        # The spec's [train] dask, as a deployed run (no CLI option) would find it.
        with housing_spec.open("a", encoding="utf-8") as spec:
            spec.write(f'\n[train]\ndask = "{cluster.address}"\n')
        remote = train(housing_spec, tmp_path / "dask.duckdb")
        stream = client.get_task_stream()

    assert remote.best_model_id.split(":")[1] == local.best_model_id.split(":")[1]
    expected, actual = rows(tmp_path / "local.duckdb"), rows(tmp_path / "dask.duckdb")
    assert expected["models"] and expected["cv_results"] and expected["metrics"]
    for table in COMPARED:
        assert actual[table] == expected[table], table
    # The feature frame went to the workers once, broadcast, not inside every task.
    assert [(type(data).__name__, broadcast) for data, broadcast in scattered] == [
        ("Features", True)
    ]
    worked = {pids[record["worker"]] for record in stream if record["worker"] in pids}
    assert worked == set(pids.values()) and len(worked) == 2
    assert os.getpid() not in worked
    # Both workers passed dask_barrier.py: their searches overlapped, none ran in this process.
    assert {int(p.name) for p in (tmp_path / "barrier").iterdir()} == worked


def test_an_address_nobody_answers_at_fails_in_one_line() -> None:
    with pytest.raises(InputError, match=r"no Dask scheduler answers at tcp://127\.0\.0\.1:9 "):
        check_reachable("tcp://127.0.0.1:9")
    with pytest.raises(InputError, match="must look like tcp://HOST:PORT"):
        check_reachable("inproc://nothing")


def test_the_flow_parameter_wins_then_the_environment_then_the_spec(
    housing_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADDRESS_VARIABLE, raising=False)
    plain = load_spec(housing_spec)
    assert candidate_address(None, plain) is None  # threads in the flow process
    with housing_spec.open("a", encoding="utf-8") as spec:
        spec.write('\n[train]\ndask = "tcp://spec:1"\n')
    keyed = load_spec(housing_spec)
    assert candidate_address(None, keyed) == "tcp://spec:1"
    monkeypatch.setenv(ADDRESS_VARIABLE, "tcp://worker-env:2")
    assert candidate_address(None, keyed) == "tcp://worker-env:2"
    assert candidate_address("tcp://option:3", keyed) == "tcp://option:3"


@pytest.mark.usefixtures("prefect_server")
def test_a_spec_naming_a_dead_scheduler_fails_in_one_line_before_any_run_row(
    housing_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADDRESS_VARIABLE, raising=False)
    with housing_spec.open("a", encoding="utf-8") as spec:
        spec.write('\n[train]\ndask = "tcp://127.0.0.1:9"\n')
    db = tmp_path / "w.duckdb"

    with pytest.raises(InputError, match=r"^no Dask scheduler answers at tcp://127\.0\.0\.1:9 "):
        train(housing_spec, db)

    assert not db.exists()  # nothing recorded: the address is checked before the run row

"""Concurrent candidate searches share no process-wide worker pool (one failing search used to
shut joblib's loky executor down under the others), and two `mallard run`s on one warehouse
both succeed, one waiting for the other's commit; nothing of either is half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from mallard.core.spec import Candidate
from mallard.tasks.families import FAMILIES, Family
from mallard.tasks.metrics import Target
from mallard.tasks.tune import SearchPlan, tune_candidate
from tests.hostile.test_user_errors import cli, regression_rows, spec_text, write_case
from tests.tasks.test_tune import FEATURES, TRAIN_ROWS

FOUR_CANDIDATES = """
[[candidates]]
family = "ridge"
params = { alpha = [0.1, 1.0, 10.0] }

[[candidates]]
family = "decision_tree"
params = { max_depth = [2, 4], min_samples_leaf = [2] }

[[candidates]]
family = "knn"
params = { n_neighbors = [3, 5] }

[[candidates]]
family = "lasso"
params = { alpha = [0.1, 1.0] }
"""


class FailsToFit(RegressorMixin, BaseEstimator):
    def fit(self, X: object, y: object) -> FailsToFit:
        raise ValueError("this candidate cannot fit")


def test_a_failing_search_does_not_break_concurrent_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES["regression"], "fails", Family(lambda seed: FailsToFit()))
    plan = SearchPlan(target=Target("regression"), primary="rmse", folds=4, seed=0)
    names = ["ridge", "decision_tree", "fails", "knn", "lasso", "fails"]
    start = threading.Barrier(len(names))

    def tune(family: str) -> str:
        start.wait()  # all searches fit at the same moment
        try:
            tune_candidate(family, Candidate(family=family), FEATURES, TRAIN_ROWS, plan)
        except ValueError as exc:
            return str(exc)
        return "ok"

    with ThreadPoolExecutor(len(names)) as pool:
        outcomes = list(pool.map(tune, names))

    assert outcomes == [
        "ok",
        "ok",
        "this candidate cannot fit",
        "ok",
        "ok",
        "this candidate cannot fit",
    ]


def test_searches_start_no_worker_processes() -> None:
    psutil = pytest.importorskip("psutil")
    plan = SearchPlan(target=Target("regression"), primary="rmse", folds=3, seed=0)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    tune_candidate("ridge", Candidate(family="ridge"), FEATURES, TRAIN_ROWS, plan)

    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after - before == set()  # nothing a kill -9 of mallard could orphan


def _four_candidate_spec(folder: Path, name: str = "stress") -> Path:
    text = spec_text().replace('name = "hostile"', f'name = "{name}"')
    text = text[: text.index("[[candidates]]")] + FOUR_CANDIDATES
    return write_case(folder, text, regression_rows(60))


@pytest.mark.slow
def test_twenty_runs_of_four_concurrent_candidates_all_succeed(
    prefect_server: None, tmp_path: Path
) -> None:
    spec = _four_candidate_spec(tmp_path / "spec")
    db = tmp_path / "warehouse.duckdb"
    outcomes = [cli("run", str(spec), "--warehouse", str(db)) for _ in range(20)]

    assert [code for code, _ in outcomes] == [0] * 20, [line for _, line in outcomes]
    with duckdb.connect(str(db), read_only=True) as con:
        statuses = con.execute("SELECT status, count(*) FROM ml.runs GROUP BY ALL").fetchall()
        models = con.execute(
            "SELECT count(DISTINCT model_id) FROM ml.models WHERE candidate <> 'baseline'"
        ).fetchone()
    assert statuses == [("succeeded", 20)]
    assert models is not None and models[0] >= 20 * 4


def _api_env(tmp: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    env["MALLARD_LOCK_TIMEOUT"] = "120"
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    return env


def run_state(db: Path) -> dict[str, tuple[str, int, int, int]]:
    """run id -> (status, metrics rows, models rows, cv rows): what 'not half-written' means."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            """
            SELECT r.run_id, r.status,
                   (SELECT count(*) FROM ml.metrics m WHERE m.model_id LIKE r.run_id || ':%'),
                   (SELECT count(*) FROM ml.models m WHERE m.model_id LIKE r.run_id || ':%'),
                   (SELECT count(*) FROM ml.cv_results c WHERE c.run_id = r.run_id)
            FROM ml.runs r
            """
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


@pytest.mark.slow
def test_two_runs_on_one_warehouse_at_once_both_commit_whole(
    prefect_server: None, tmp_path: Path
) -> None:
    db = tmp_path / "warehouse.duckdb"
    specs = [_four_candidate_spec(tmp_path / f"s{i}", f"pipe{i}") for i in range(2)]
    env = _api_env(tmp_path)
    mallard = [sys.executable, "-m", "mallard.cli"]
    procs = [
        subprocess.Popen(
            [*mallard, "run", str(spec), "--warehouse", str(db)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]

    for code, _, err in results:
        errors = [line for line in err.splitlines() if line.startswith(("error:", "internal"))]
        assert code in (0, 2), err[-2000:]
        assert "internal error" not in err and "Traceback" not in err
        if code == 2:  # a clean refusal: one line, the lock named
            assert len(errors) == 1 and "locked" in errors[0]
    state = run_state(db)
    for status, metrics, models, cv in state.values():
        assert status in ("succeeded", "failed")
        if status == "succeeded":
            assert metrics > 0 and models >= 5 and cv > 0
        else:
            assert (metrics, models, cv) == (0, 0, 0)
    assert sum(code == 0 for code, _, _ in results) == sum(
        s[0] == "succeeded" for s in state.values()
    )
    assert [code for code, _, _ in results] == [0, 0]  # MALLARD_LOCK_TIMEOUT=120: both wait

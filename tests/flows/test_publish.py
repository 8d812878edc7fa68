"""Publishing happens after the commit and can only warn: a report that fails to render or to
be written never touches the committed run, its promotion or its champion alias."""

from __future__ import annotations

from pathlib import Path

import pytest

from mallard import warehouse
from tests.cli import mallard

pytestmark = pytest.mark.usefixtures("prefect_server")


def _broken_report(db: Path, run_id: str) -> str:
    raise RuntimeError("plotting backend exploded")


def test_a_report_failure_after_the_commit_keeps_the_run_and_its_champion(
    housing_spec: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mallard.report.render_report", _broken_report)

    code, output = mallard("run", str(housing_spec), "-w", str(db))

    assert code == 0, output
    assert "warning" in output and "report" in output and "plotting backend exploded" in output
    [run] = warehouse.query(db, "SELECT run_id, status, error FROM ml.runs").to_dicts()
    assert run["status"] == "succeeded" and run["error"] is None
    counts = warehouse.table_counts(db, str(run["run_id"]))
    assert counts["metrics"] > 0 and counts["models"] > 0 and counts["cv_results"] > 0
    assert counts["promotions"] == 1 and counts["aliases"] == 1
    assert counts["reports"] == 0
    champion = warehouse.champion(db, "housing")
    assert champion is not None and str(champion["run_id"]) == run["run_id"]


def test_the_report_can_be_rendered_again_after_a_failed_publish(
    housing_spec: Path, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr("mallard.report.render_report", _broken_report)
        assert mallard("run", str(housing_spec), "-w", str(db))[0] == 0
    run_id = str(warehouse.query(db, "SELECT run_id FROM ml.runs").item())

    code, output = mallard("report", run_id, "-w", str(db), "-o", str(tmp_path / "r.html"))

    assert code == 0, output
    assert "<html" in (tmp_path / "r.html").read_text(encoding="utf-8").lower()

"""Schedules: the spec's [schedule] crons become Prefect deployments of the train and score
flows, with absolute paths, readable back from the Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mallard.cli import app
from mallard.core.errors import SpecError
from mallard.core.spec import load_spec, parse_spec
from mallard.examples import spec_text, write_housing_csv
from mallard.flows.serve import deployments

runner = CliRunner()
SCHEDULE = """
[schedule]
train = "0 3 * * *"

[schedule.score]
cron = "*/15 * * * *"
input = "incoming/*.csv"
"""


def write_spec(folder: Path, schedule: str = SCHEDULE, name: str = "housing") -> Path:
    write_housing_csv(folder / "data" / "housing.csv", rows=120, seed=1)
    text = spec_text().replace('name = "housing"', f'name = "{name}"')
    spec = folder / "housing.toml"
    spec.write_text(text + schedule, encoding="utf-8")
    return spec


def mallard(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output, output
    return result.exit_code, " ".join(output.split())


def test_two_deployments_with_absolute_parameters(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    db = tmp_path / "wh" / "warehouse.duckdb"

    train, score = deployments(spec, db)

    assert (train.flow_name, train.name) == ("train", "housing-train")
    assert (score.flow_name, score.name) == ("score", "housing-score")
    assert [s.schedule.cron for s in train.schedules or []] == ["0 3 * * *"]  # type: ignore[union-attr]
    assert [s.schedule.cron for s in score.schedules or []] == ["*/15 * * * *"]  # type: ignore[union-attr]
    assert train.parameters == {
        "spec_path": str(tmp_path / "housing.toml"),
        "warehouse_file": str(db),
    }
    assert score.parameters == {
        "spec_path": str(tmp_path / "housing.toml"),
        "input_path": str(tmp_path / "incoming" / "*.csv"),
        "warehouse_file": str(db),
    }


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served runs start in whatever directory the runner uses: nothing may stay relative."""
    write_spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    spec = load_spec(Path("housing.toml"))

    planned = deployments(spec, Path("warehouse.duckdb"))

    for deployment in planned:
        for key in ("spec_path", "warehouse_file", "input_path"):
            if key in deployment.parameters:
                assert Path(deployment.parameters[key]).is_absolute(), (key, deployment.parameters)
    assert planned[0].parameters["warehouse_file"] == str(tmp_path / "warehouse.duckdb")


def test_only_the_crons_given(tmp_path: Path) -> None:
    only_train = load_spec(write_spec(tmp_path, '\n[schedule]\ntrain = "30 4 * * 1-5"\n'))
    assert [d.flow_name for d in deployments(only_train, tmp_path / "w.duckdb")] == ["train"]
    nothing = load_spec(write_spec(tmp_path, ""))
    assert deployments(nothing, tmp_path / "w.duckdb") == []


@pytest.mark.parametrize(
    ("schedule", "key"),
    [
        ('\n[schedule]\ntrain = "61 * * * *"\n', "[schedule.train]"),
        ('\n[schedule]\ntrain = "every day"\n', "[schedule.train]"),
        ('\n[schedule.score]\ncron = "* * *"\ninput = "x.csv"\n', "[schedule.score.cron]"),
        ('\n[schedule.score]\ncron = "0 * * * *"\n', "[schedule.score.input]"),
        ('\n[schedule]\nretrain = "0 3 * * *"\n', "[schedule.retrain]"),
    ],
)
def test_bad_schedule_is_a_spec_error_naming_the_key(
    tmp_path: Path, schedule: str, key: str
) -> None:
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, schedule))
    assert key in str(error.value)


def test_invalid_cron_through_the_cli_is_exit_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, '\n[schedule]\ntrain = "0 25 * * *"\n')
    code, output = mallard("serve", str(spec), "-w", str(tmp_path / "w.duckdb"))
    assert code == 2 and "[schedule.train]" in output and "0 25 * * *" in output


def test_serve_without_schedule_is_exit_2(tmp_path: Path) -> None:
    code, output = mallard("serve", str(write_spec(tmp_path, "")), "-w", str(tmp_path / "w"))
    assert code == 2 and "no train or score cron" in output


def test_serve_command_hands_absolute_deployments_to_prefect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[list[object]] = []
    monkeypatch.setattr("mallard.flows.serve.serve_deployments", served.append)
    write_spec(tmp_path)
    monkeypatch.chdir(tmp_path)

    code, output = mallard("serve", "housing.toml", "-w", "warehouse.duckdb")

    assert code == 0, output
    assert "serving 2 deployment(s)" in output
    assert "train/housing-train: 0 3 * * *" in output
    assert "score/housing-score: */15 * * * *" in output
    [planned] = served
    assert {d.parameters["warehouse_file"] for d in planned} == {  # type: ignore[attr-defined]
        str(tmp_path / "warehouse.duckdb")
    }


@pytest.mark.usefixtures("prefect_server")
def test_applied_deployments_read_back_from_prefect(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    spec = load_spec(write_spec(tmp_path, name="served-housing"))
    db = tmp_path / "warehouse.duckdb"
    for deployment in deployments(spec, db):
        deployment.apply()

    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name("train/served-housing-train")
        score = client.read_deployment_by_name("score/served-housing-score")

    assert [s.schedule.cron for s in train.schedules] == ["0 3 * * *"]  # type: ignore[union-attr]
    assert [s.schedule.cron for s in score.schedules] == ["*/15 * * * *"]  # type: ignore[union-attr]
    assert all(s.active for s in [*train.schedules, *score.schedules])
    assert train.parameters == {
        "spec_path": str(tmp_path / "housing.toml"),
        "warehouse_file": str(db),
    }
    assert score.parameters["input_path"] == str(tmp_path / "incoming" / "*.csv")
    assert Path(score.parameters["spec_path"]).is_absolute()
    assert {"mallard", "served-housing", "train", "regression"} <= set(train.tags)
    assert {"mallard", "served-housing", "score", "regression"} <= set(score.tags)
    # module paths, so a served run imports the installed package from any directory
    assert train.entrypoint == "mallard.flows.train.train"
    assert score.entrypoint == "mallard.flows.score.score"


def test_cron_nicknames_prefect_accepts_are_accepted(tmp_path: Path) -> None:
    write_housing_csv(tmp_path / "data" / "housing.csv", rows=100)
    text = spec_text() + '\n[schedule]\ntrain = "@daily"\n'
    spec = parse_spec(text, tmp_path / "housing.toml")
    assert spec.schedule.train == "@daily"


def test_deployment_parameters_given_as_json_strings_become_paths(tmp_path: Path) -> None:
    """A deployment's parameters arrive as JSON strings; the flows' parameter validation must
    coerce them (issue 10: served runs failed with "'str' object has no attribute 'exists'")."""
    from mallard.flows.score import score
    from mallard.flows.train import train
    from mallard.flows.validate import validate_data

    given = {"spec_path": str(tmp_path / "s.toml"), "warehouse_file": str(tmp_path / "w.db")}
    for flow, extra in ((train, {}), (score, {"input_path": "in/*.csv"}), (validate_data, {})):
        checked = flow.validate_parameters({**given, **extra})
        assert checked["spec_path"] == tmp_path / "s.toml", flow.name
        assert checked["warehouse_file"] == tmp_path / "w.db", flow.name
        assert isinstance(checked["warehouse_file"], Path), flow.name

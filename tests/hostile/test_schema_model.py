"""`schema.model` names a DataFrameModel; importing runs a module's code, so only mallard.schemas
and .py files beside the spec are imported, never another module a spec names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mallard.core.errors import SpecError
from mallard.core.spec import SchemaSection
from mallard.schemas.inline import build_schema, pii_policies
from tests.cli import mallard_process

PLANTED = """
from pathlib import Path
Path({trace!r}).write_text("imported")
"""

MODEL = """
import pandera.polars as pa


class Houses(pa.DataFrameModel):
    price: float = pa.Field(ge=0)
    lotsize: float = pa.Field(ge=0)
    owner: str = pa.Field(metadata={{"pii": "hash"}})
{extra}
"""

SPEC = """
[pipeline]
name = "houses"
task = "regression"
target = "price"

[source]
path = "houses.csv"

[schema]
model = "{model}"

[[candidates]]
family = "ridge"
"""


def write_pipeline(folder: Path, model: str) -> Path:
    (folder / "houses.csv").write_text("price,lotsize,owner\n1.0,2.0,ann\n3.0,4.0,bob\n")
    spec = folder / "spec.toml"
    spec.write_text(SPEC.format(model=model), encoding="utf-8")
    return spec


def mallard(folder: Path, *args: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(pythonpath),
        "MALLARD_PII_SALT": "test-salt-0123456789",
        # Nothing here reaches a flow: a refused spec fails before any server is needed.
        "MALLARD_HOME": str(folder / "home"),
    }
    return mallard_process(env, *args, cwd=folder, timeout=120)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_spec_naming_another_installed_module_never_imports_it(
    tmp_path: Path, command: str
) -> None:
    planted_dir = tmp_path / "site"
    planted_dir.mkdir()
    trace = tmp_path / "planted-was-imported"
    (planted_dir / "planted.py").write_text(PLANTED.format(trace=str(trace)))
    spec = write_pipeline(tmp_path, "planted:Houses")

    done = mallard(tmp_path, command, str(spec), pythonpath=planted_dir)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "[schema.model] 'planted:Houses'" in lines[0]
    assert "other modules are not imported" in lines[0]
    assert not trace.exists()  # the module never ran
    assert not (tmp_path / "warehouse.duckdb").exists()  # nothing written
    assert not (tmp_path / "home" / "prefect-server.json").exists()  # no server started


def test_a_model_file_beside_the_spec_is_used(tmp_path: Path) -> None:
    (tmp_path / "houses_schema.py").write_text(MODEL.format(extra=""), encoding="utf-8")

    schema = build_schema(
        SchemaSection(model="houses_schema.py:Houses"), "price", spec_folder=tmp_path
    )

    assert set(schema.columns) == {"price", "lotsize", "owner"}
    assert pii_policies(schema) == {"owner": "hash"}


def test_shipped_schemas_still_load() -> None:
    schema = build_schema(SchemaSection(model="mallard.schemas.housing:Housing"), "price")
    assert "price" in schema.columns


@pytest.mark.parametrize(
    ("files", "model", "phrase"),
    [
        ({}, "missing.py:Houses", "no file missing.py beside the spec"),
        (
            {"broken.py": "raise RuntimeError('half-written schema')\n"},
            "broken.py:Houses",
            "failed to load: RuntimeError: half-written schema",
        ),
        ({"plain.py": "Houses = 3\n"}, "plain.py:Houses", "is not a pandera polars DataFrameModel"),
        ({"plain.py": "x = 1\n"}, "plain.py:Houses", "is not a pandera polars DataFrameModel"),
        ({}, "os:system", "other modules are not imported"),
        ({}, "mallard.schemas.nothing_here:Houses", "cannot import"),
    ],
)
def test_refused_schema_models_say_why_in_one_line(
    tmp_path: Path, files: dict[str, str], model: str, phrase: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")

    with pytest.raises(SpecError) as caught:
        build_schema(SchemaSection(model=model), "price", spec_folder=tmp_path)

    message = str(caught.value)
    assert phrase in message and "\n" not in message, message


def test_a_path_outside_the_spec_folder_is_refused_by_the_spec() -> None:
    for model in ["../evil.py:Houses", "/tmp/evil.py:Houses", "sub/dir.py:Houses"]:
        with pytest.raises(ValueError, match="should match pattern"):
            SchemaSection(model=model)

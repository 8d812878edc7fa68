"""The install-time migrated Prefect database (cli/server_template.py): copied into a new local
server's home only when it matches the installed Prefect and its bytes; a stale, mismatched or
corrupt template never breaks the server's start (Prefect then migrates its own database)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mallard.cli import server_template
from tests.cli import mallard_process
from tests.flows.conftest import free_port


def fake_template(directory: Path, **changes: object) -> Path:
    """A template whose manifest matches the installed Prefect (bytes are not a database)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = b"SQLite format 3\x00 pretend"
    (directory / "prefect.db").write_bytes(data)
    key = server_template.installed_key()
    assert key is not None
    manifest = {
        "format": server_template.FORMAT,
        "prefect": key.prefect,
        "migrations": key.migrations,
        "alembic_head": "0",
        "sha256": hashlib.sha256(data).hexdigest(),
        **changes,
    }
    (directory / "template.json").write_text(json.dumps(manifest))
    return directory


def test_a_matching_template_seeds_a_new_home_once(tmp_path: Path) -> None:
    template = fake_template(tmp_path / "template")
    home = tmp_path / "home" / "prefect"

    assert server_template.usable_template(template) == template / "prefect.db"
    assert server_template.seed(home, template)
    assert (home / "prefect.db").read_bytes() == (template / "prefect.db").read_bytes()
    (home / "prefect.db").write_bytes(b"the user's runs")
    assert not server_template.seed(home, template)  # an existing database is never replaced
    assert (home / "prefect.db").read_bytes() == b"the user's runs"
    assert sorted(p.name for p in home.iterdir()) == ["prefect.db"]  # no partial file left


@pytest.mark.parametrize(
    "changes",
    [
        {"prefect": "0.0.1"},  # built by another Prefect version
        {"migrations": "0" * 64},  # other migration scripts under the same version
        {"format": 0},
        {"sha256": "0" * 64},  # the database changed (corrupt) after its manifest
        {"sha256": None},
    ],
)
def test_a_stale_or_corrupt_template_is_not_used(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    template = fake_template(tmp_path / "template", **changes)
    home = tmp_path / "home" / "prefect"

    assert server_template.usable_template(template) is None
    assert not server_template.seed(home, template)
    assert not (home / "prefect.db").exists()


@pytest.mark.parametrize("damage", ["no manifest", "garbage manifest", "no database", "flipped"])
def test_a_damaged_template_is_not_used(tmp_path: Path, damage: str) -> None:
    template = fake_template(tmp_path / "template")
    if damage == "no manifest":
        (template / "template.json").unlink()
    elif damage == "garbage manifest":
        (template / "template.json").write_text("{not json")
    elif damage == "no database":
        (template / "prefect.db").unlink()
    else:
        data = bytearray((template / "prefect.db").read_bytes())
        data[-1] ^= 0xFF
        (template / "prefect.db").write_bytes(bytes(data))

    assert server_template.usable_template(template) is None
    assert not server_template.seed(tmp_path / "home", template)


def test_only_a_server_on_its_home_database_is_seeded() -> None:
    assert server_template.uses_home_database({"PREFECT_HOME": "/x"})
    assert not server_template.uses_home_database({"PREFECT_SERVER_DATABASE_CONNECTION_URL": "x"})
    assert not server_template.uses_home_database({"prefect_api_database_connection_url": "x"})
    assert not server_template.uses_home_database({"PREFECT_SERVER_DATABASE_DRIVER": "x"})


def test_the_template_lives_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(server_template.TEMPLATE_ENV, raising=False)
    assert server_template.template_dir().is_relative_to(sys.prefix)


@pytest.fixture(scope="module")
def built_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real template, built as `make env` builds it (in its own process)."""
    directory = tmp_path_factory.mktemp("template")
    env = dict(os.environ, MALLARD_SERVER_TEMPLATE=str(directory))
    done = subprocess.run(
        [sys.executable, "-m", "mallard.cli.server_template"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "built" in done.stderr
    again = subprocess.run(
        [sys.executable, "-m", "mallard.cli.server_template"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr
    return directory


@pytest.mark.slow
def test_the_built_template_is_prefect_at_head(built_template: Path) -> None:
    manifest = json.loads((built_template / "template.json").read_text())
    assert server_template.usable_template(built_template) == built_template / "prefect.db"
    with sqlite3.connect(built_template / "prefect.db") as con:
        [(revision,)] = con.execute("SELECT version_num FROM alembic_version").fetchall()
        block_types = con.execute("SELECT count(*) FROM block_type").fetchone()[0]
    con.close()
    assert revision == manifest["alembic_head"]
    assert block_types > 0  # Prefect's start-up block registration is in it too
    assert sorted(p.name for p in built_template.iterdir()) == ["prefect.db", "template.json"]


def local_server_env(tmp_path: Path, template: Path) -> dict[str, str]:
    env = dict(os.environ, MALLARD_HOME=str(tmp_path / "home"))
    env["MALLARD_PREFECT_PORT"] = str(free_port())
    env["MALLARD_SERVER_TEMPLATE"] = str(template)
    for name in (  # conftest's: Prefect's temporary server on an in-memory database
        "PREFECT_SERVER_EPHEMERAL_ENABLED",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
        "PREFECT_API_URL",
    ):
        env.pop(name, None)
    return env


mallard = mallard_process


def flow_runs(api_url: str) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        runs: list[dict[str, object]] = json.loads(reply.read())
    return runs


@pytest.mark.slow
def test_a_seeded_server_records_the_first_flow_run(
    built_template: Path, housing_spec: Path, tmp_path: Path
) -> None:
    env = local_server_env(tmp_path, built_template)
    data = housing_spec.parent / "data" / "housing.csv"
    try:
        first = mallard(env, "validate", str(housing_spec), str(data), "-w", str(tmp_path / "w"))
        assert first.returncode == 0, first.stdout + first.stderr
        log = (tmp_path / "home" / "prefect-server.log").read_text()
        assert f"database copied from {built_template}" in log
        api_url = f"http://127.0.0.1:{env['MALLARD_PREFECT_PORT']}/api"
        [run] = flow_runs(api_url)
        assert run["state_type"] == "COMPLETED" and "validate" in run["tags"]  # type: ignore[operator]
    finally:
        stopped = mallard(env, "server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout


@pytest.mark.slow
def test_a_corrupt_template_still_starts_the_server(built_template: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("prefect.db", "template.json"):
        (corrupt / name).write_bytes((built_template / name).read_bytes())
    with (corrupt / "prefect.db").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff" * 4096)  # scribbled over, manifest unchanged
    env = local_server_env(tmp_path, corrupt)
    try:
        started = mallard(env, "server", "start")
        assert started.returncode == 0 and "started" in started.stdout, started.stderr
        log = (tmp_path / "home" / "prefect-server.log").read_text()
        assert "database copied" not in log  # Prefect migrated a new database itself
        assert mallard(env, "server", "status").returncode == 0
    finally:
        stopped = mallard(env, "server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout

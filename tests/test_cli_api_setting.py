"""cli/api_setting.py says "no PREFECT_API_URL" without importing Prefect only where Prefect's
own settings agree: each case runs in a fresh process with its own HOME, PREFECT_HOME and
working directory, and compares against `prefect.settings.PREFECT_API_URL.value()`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

URL = "http://127.0.0.1:9/api"
PROBE = """
import json, sys
from mallard.cli.api_setting import api_url_surely_unset, unset_in_sources
fast, imported_by_fast = api_url_surely_unset(), "prefect" in sys.modules
print(json.dumps([fast, imported_by_fast, unset_in_sources()]), flush=True)
from mallard.cli.prefect_api import configured_api_url
configured = configured_api_url()
from prefect.settings import PREFECT_API_URL
print(json.dumps([configured, PREFECT_API_URL.value()]))
"""
# Prefect itself fails on import with these (mallard then asks it, and fails as before).
PREFECT_FAILS = {"an unreadable profiles file"}

# name: (files relative to the case folder, environment); "~" is HOME, "@" is PREFECT_HOME.
CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "nothing configured": ({}, {}),
    "a pyproject.toml without [tool.prefect]": ({"cwd/pyproject.toml": "[project]\n"}, {}),
    "a profiles file without a URL": (
        {"@/profiles.toml": 'active = "mine"\n[profiles.mine]\nPREFECT_LOGGING_LEVEL = "INFO"\n'},
        {},
    ),
    "PREFECT_PROFILE=local, no profiles file under PREFECT_HOME": (
        {},
        {"PREFECT_PROFILE": "local"},
    ),
    "active profile with a URL": (
        {"@/profiles.toml": f'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "{URL}"\n'},
        {},
    ),
    "PREFECT_PROFILE naming a profile with a URL": (
        {"@/profiles.toml": f'active = "a"\n[profiles.a]\n[profiles.b]\nPREFECT_API_URL = "{URL}"'},
        {"PREFECT_PROFILE": "b"},
    ),
    "PREFECT_PROFILE=local and ~/.prefect holds no profiles (the shipped file's local)": (
        {},
        {"PREFECT_PROFILE": "local", "PREFECT_HOME": ""},
    ),
    "~/.prefect/profiles.toml with a URL": (
        {"~/.prefect/profiles.toml": f'active = "x"\n[profiles.x]\nPREFECT_API_URL = "{URL}"\n'},
        {"PREFECT_HOME": ""},
    ),
    "a lowercase environment name": ({}, {"prefect_api_url": URL}),
    "a .env file": ({"cwd/.env": f"PREFECT_API_URL={URL}\n"}, {}),
    "a prefect.toml": ({"cwd/prefect.toml": f'[api]\nurl = "{URL}"\n'}, {}),
    "pyproject [tool.prefect]": (
        {"cwd/pyproject.toml": f'[tool.prefect.api]\nurl = "{URL}"\n'},
        {},
    ),
    "PREFECT_PROFILES_PATH": (
        {"cwd/p.toml": f'active = "x"\n[profiles.x]\nPREFECT_API_URL = "{URL}"\n'},
        {"PREFECT_PROFILES_PATH": "p.toml"},
    ),
    "an unreadable profiles file": ({"@/profiles.toml": "active = [\n"}, {}),
}
SHORTCUT = {
    "nothing configured",
    "a pyproject.toml without [tool.prefect]",
    "a profiles file without a URL",
    "PREFECT_PROFILE=local, no profiles file under PREFECT_HOME",
}


@pytest.mark.parametrize("name", CASES)
def test_no_api_url_is_said_only_where_prefect_agrees(name: str, tmp_path: Path) -> None:
    files, extra_env = CASES[name]
    roots = {"~": tmp_path / "user", "@": tmp_path / "prefect-home", "cwd": tmp_path / "cwd"}
    for root in roots.values():
        root.mkdir()
    for relative, text in files.items():
        head, _, rest = relative.partition("/")
        path = roots[head] / rest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PREFECT_")}
    env.update(HOME=str(roots["~"]), PREFECT_HOME=str(roots["@"]))
    env.update(extra_env)
    if not env["PREFECT_HOME"]:
        del env["PREFECT_HOME"]

    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=roots["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    lines = done.stdout.splitlines()
    fast, imported_by_fast, unset = json.loads(lines[0])
    assert not imported_by_fast
    assert unset == fast  # prefect was not imported yet when fast was asked
    if name in PREFECT_FAILS:
        assert done.returncode != 0 and not fast, done.stderr
        return
    assert done.returncode == 0, done.stderr
    configured, prefect_says = json.loads(lines[1])
    assert configured == (prefect_says or None)  # the same answer as before, either way
    if fast:
        assert prefect_says is None
    if name in SHORTCUT:
        assert fast  # no API anywhere: the shortcut is taken


def test_once_prefect_is_imported_it_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test harness's temporary_settings may hold a URL no file shows."""
    import prefect.settings  # noqa: F401

    from mallard.cli.api_setting import api_url_surely_unset

    assert not api_url_surely_unset()

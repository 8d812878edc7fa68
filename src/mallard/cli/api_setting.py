"""Whether Prefect would read no PREFECT_API_URL, decided without importing Prefect.

`import prefect.settings` costs ~1 CPU-s (it loads the whole package). A flow command asks
"is a Prefect API configured?" before spawning mallard's local server, so that import used to
delay the server's boot. This module answers "no URL" only where it can follow every place
Prefect 3.9's settings look (prefect/settings/base.py, sources.py): the environment (names
read case-insensitively), ./.env, ./prefect.toml, ./pyproject.toml's [tool.prefect], and the
active profile of the profiles file (PREFECT_PROFILE or the file's `active`, else the shipped
default profile). Whenever one of them might name an API (a .env or prefect.toml at all, a
[tool.prefect] table, any PREFECT_API* key, an unreadable file, a test mode), it says "ask
Prefect", and the caller imports it. tests/test_cli_api_setting.py checks the answer against
Prefect's own in fresh processes.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

# Any of these in the environment changes which sources Prefect reads, or what they hold.
_ASK_PREFECT_ENV = {
    "PREFECT_PROFILES_PATH",
    "PREFECT_TEST_MODE",
    "PREFECT_UNIT_TEST_MODE",
    "PREFECT_TESTING_UNIT_TEST_MODE",
    "PREFECT_TESTING_TEST_MODE",
}


def api_url_surely_unset() -> bool:
    """True only if Prefect, imported now, would find no PREFECT_API_URL anywhere.

    Once Prefect is imported its answer is free, and a `temporary_settings` block (a test
    harness) may hold a URL no file shows: then always False (ask Prefect)."""
    if "prefect.settings" in sys.modules:
        return False
    return unset_in_sources()


def unset_in_sources() -> bool:
    """The file and environment check itself (see the module docstring)."""
    names = {name.upper() for name in os.environ}
    if names & _ASK_PREFECT_ENV or any(name.startswith("PREFECT_API") for name in names):
        return False
    if Path(".env").exists() or Path("prefect.toml").exists():
        return False
    pyproject = Path("pyproject.toml")
    if pyproject.exists():
        data = _toml(pyproject)
        tool = data.get("tool", {}) if data is not None else None
        if not isinstance(tool, dict) or "prefect" in tool:
            return False
    profile = _active_profile()
    return profile is not None and not any(
        str(key).upper().startswith("PREFECT_API") for key in profile
    )


def _active_profile() -> dict[str, Any] | None:
    """The profile Prefect's ProfileSettingsTomlLoader would apply (None: cannot tell)."""
    path = _profiles_path()
    if path is None:
        return None
    if not path.exists():
        return _shipped_default_profile()
    data = _toml(path)
    if data is None:
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active")
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        return None
    if not active or active not in profiles:
        return _shipped_default_profile()
    profile = profiles[active]
    return profile if isinstance(profile, dict) else None


def _profiles_path() -> Path | None:
    """prefect.settings.sources._get_profiles_path, for the case without PREFECT_PROFILES_PATH,
    .env, prefect.toml or [tool.prefect] (those make the caller ask Prefect)."""
    if os.environ.get("PREFECT_HOME"):
        return Path(os.environ["PREFECT_HOME"]) / "profiles.toml"
    user = Path.home() / ".prefect" / "profiles.toml"
    return user if user.exists() else _shipped_profiles()


def _shipped_profiles() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("prefect")  # a top-level spec: prefect is not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "settings" / "profiles.toml"


def _shipped_default_profile() -> dict[str, Any] | None:
    path = _shipped_profiles()
    data = _toml(path) if path is not None else None
    if data is None:
        return None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        return None
    profile = profiles.get(data.get("active", "ephemeral"), {})
    return profile if isinstance(profile, dict) else None


def _toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None

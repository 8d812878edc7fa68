"""A migrated Prefect database made at install time, copied into a new local server's home.

A Prefect server on a fresh PREFECT_HOME runs all of its ~115 SQLite migrations (alembic)
before its API answers. Measured on this 2-core machine (loaded, medians of 4 starts): to
healthy 11.6 s wall / 6.9 CPU-s on a fresh home, 4.7 s / 3.5 CPU-s on a copy of a migrated
prefect.db. Prefect still runs `alembic upgrade head` on start (PREFECT_SERVER_DATABASE_MIGRATE_ON
_START stays on): on a database already at head that loads the scripts and changes nothing
(~0.2 CPU-s), and on an older database it applies the missing migrations, as it would anyway.

`make env` builds the template once (`python -m mallard.cli.server_template`) inside the
environment, under `sys.prefix`/share/mallard, not in the user's home: a fresh MALLARD_HOME
is still a cold start, as bytecode compiled at install is. The manifest keys it on Prefect's
version and its SQLite migration scripts, and holds the file's sha256. `seed` copies it only
when all three match the installed Prefect and the home has no database yet; anything else
(absent, stale, corrupt, unreadable) means Prefect migrates a new database itself, as before.
Checking costs ~40 ms and imports no Prefect.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATABASE = "prefect.db"
MANIFEST = "template.json"
FORMAT = 1
TEMPLATE_ENV = "MALLARD_SERVER_TEMPLATE"


@dataclass(frozen=True)
class Key:
    """What a template must match: the installed Prefect and its migration scripts."""

    prefect: str
    migrations: str  # sha256 over the names of Prefect's SQLite migration scripts


def template_dir() -> Path:
    """Where the environment keeps the template (inside the environment, not the home);
    $MALLARD_SERVER_TEMPLATE names another directory (tests)."""
    from_env = os.environ.get(TEMPLATE_ENV)
    return Path(from_env) if from_env else Path(sys.prefix) / "share" / "mallard" / "prefect-server"


def installed_key() -> Key | None:
    """The installed Prefect's key, found without importing Prefect (None: no Prefect)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    spec = importlib.util.find_spec("prefect")  # a top-level spec: prefect is not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    scripts = Path(spec.submodule_search_locations[0]) / "server/database/_migrations/versions"
    try:
        names = sorted(p.name for p in (scripts / "sqlite").glob("*.py"))
        prefect_version = version("prefect")
    except (OSError, PackageNotFoundError):
        return None
    if not names:
        return None
    return Key(prefect_version, hashlib.sha256("\n".join(names).encode()).hexdigest())


def usable_template(directory: Path | None = None) -> Path | None:
    """The template database if its manifest matches the installed Prefect and its bytes."""
    directory = template_dir() if directory is None else directory
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        expected = (manifest["format"], manifest["prefect"], manifest["migrations"])
        digest = manifest["sha256"]
        data = (directory / DATABASE).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    key = installed_key()
    if key is None or expected != (FORMAT, key.prefect, key.migrations):
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        return None
    return directory / DATABASE


def uses_home_database(env: Mapping[str, str]) -> bool:
    """Whether a server with this environment keeps its database in PREFECT_HOME/prefect.db
    (no database setting: Prefect reads environment names case-insensitively)."""
    prefixes = ("PREFECT_SERVER_DATABASE_", "PREFECT_API_DATABASE_")
    return not any(name.upper().startswith(prefixes) for name in env)


def seed(prefect_home: Path, directory: Path | None = None) -> bool:
    """Copy the template into a server home that has no database yet; whether it did.

    Never replaces an existing database (it holds the user's runs) and never raises for a
    bad template: the server then migrates a new database itself."""
    target = prefect_home / DATABASE
    if target.exists():
        return False
    template = usable_template(directory)
    if template is None:
        return False
    prefect_home.mkdir(parents=True, exist_ok=True)
    partial = prefect_home / f".{DATABASE}.{os.getpid()}.partial"
    try:
        shutil.copyfile(template, partial)
        os.replace(partial, target)  # atomic: a server never sees half a file
    except OSError:
        partial.unlink(missing_ok=True)
        return False
    return True


def build(directory: Path | None = None) -> Path:
    """Migrate a new SQLite database with the installed Prefect and store it as the template.

    Runs in its own process (`python -m mallard.cli.server_template`): Prefect reads its
    settings when first imported, so the database URL must be in the environment before."""
    directory = template_dir() if directory is None else directory
    key = installed_key()
    if key is None:
        raise SystemExit("mallard: Prefect is not installed; no server template to build")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mallard-template-") as scratch:
        built = Path(scratch) / DATABASE
        _migrate(built, Path(scratch))
        head = _alembic_head()
        candidate = directory / f".{DATABASE}.{os.getpid()}.partial"
        _single_file_copy(built, candidate)
    with sqlite3.connect(candidate) as con:
        revisions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    if revisions != [head] or check != "ok":
        candidate.unlink(missing_ok=True)
        raise SystemExit(f"mallard: the migrated template is at {revisions}, not {head}")
    digest = hashlib.sha256(candidate.read_bytes()).hexdigest()
    # The manifest goes last: a database without its matching manifest is never used.
    (directory / MANIFEST).unlink(missing_ok=True)
    os.replace(candidate, directory / DATABASE)
    manifest = {
        "format": FORMAT,
        "prefect": key.prefect,
        "migrations": key.migrations,
        "alembic_head": head,
        "sha256": digest,
    }
    partial_manifest = directory / f".{MANIFEST}.{os.getpid()}.partial"
    partial_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(partial_manifest, directory / MANIFEST)
    return directory / DATABASE


def _migrate(database: Path, prefect_home: Path) -> None:
    """Prefect's own start-up database work: migrations to head, then its block types."""
    for name in [k for k in os.environ if k.upper().startswith("PREFECT_")]:
        del os.environ[name]  # the user's settings (a test's in-memory URL) must not apply
    os.environ.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{database}",
    )
    import asyncio

    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    async def migrate() -> None:
        db = provide_database_interface()
        await db.create_db()
        async with await db.session() as session:
            await run_block_auto_registration(session=session)
            await session.commit()
        await (await db.engine()).dispose()

    asyncio.run(migrate())


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory
    from prefect.server.database import provide_database_interface
    from prefect.server.database.alembic_commands import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    scripts.version_locations = [str(provide_database_interface().orm.versions_dir)]  # as env.py
    heads = scripts.get_heads()
    if len(heads) != 1:
        raise SystemExit(f"mallard: Prefect's migrations have {len(heads)} heads: {heads}")
    return str(heads[0])


def _single_file_copy(source: Path, target: Path) -> None:
    """A consistent one-file copy (SQLite's backup API: no -wal/-shm files left behind)."""
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def main() -> None:
    path = usable_template()
    verb = "up to date"
    if path is None:
        path, verb = build(), "built"
    print(f"mallard: Prefect server template {verb}: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

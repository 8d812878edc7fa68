"""The PostgreSQL cluster behind `mallard stack`: find the server binaries, create the cluster
in the state folder (`pg/data`, socket in `pg/run`, log `pg/postgres.log`), start and stop it,
and create Prefect's database.

PostgreSQL refuses to run as root (initdb, pg_ctl and postgres all check). When mallard runs
as root, the cluster is owned by and runs as an unprivileged user: `postgres` (Debian's
package creates it) if it exists, else `nobody`, or MALLARD_PG_USER. That user must be able to
reach the state folder (every parent directory searchable by it).
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mallard.cli.prefect_api import _alive
from mallard.core.errors import StackError

DB_USER = "mallard"
DB_NAME = "prefect"
PG_BIN_ENV = "MALLARD_PG_BIN"
PG_USER_ENV = "MALLARD_PG_USER"
PG_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "apt-get install postgresql"
PG_TIMEOUT_S = 60


def pg_data(folder: Path) -> Path:
    return folder / "pg" / "data"


def find_pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: $MALLARD_PG_BIN, else where pg_ctl on
    PATH really lives, else Debian's /usr/lib/postgresql/<newest>/bin (not on PATH there)."""
    if os.environ.get(PG_BIN_ENV):  # the user's choice: no fallback behind their back
        chosen = Path(os.environ[PG_BIN_ENV])
        return chosen if all(os.access(chosen / n, os.X_OK) for n in PG_BINARIES) else None
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PG_BINARIES):
            return folder
    return None


def require_pg_bin() -> Path:
    found = find_pg_bin()
    if found is None:
        raise StackError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
            f"/usr/lib/postgresql/*/bin: install them with `{INSTALL_HINT}` (Debian/Ubuntu), "
            f"or set {PG_BIN_ENV} to the folder that holds them"
        )
    return found


def pg_user() -> str | None:
    """Who runs PostgreSQL: None (this user) unless we are root, who PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    chosen = os.environ.get(PG_USER_ENV)
    for name in filter(None, (chosen, "postgres", "nobody")):
        try:
            pwd.getpwnam(name)
        except KeyError:
            if name == chosen:
                raise StackError(f"{PG_USER_ENV}={chosen}: no such user") from None
            continue
        return name
    raise StackError(
        f"running as root, and no unprivileged user to run PostgreSQL: set {PG_USER_ENV}"
    )


def postmaster_pid(folder: Path) -> int | None:
    """PostgreSQL's main process, from postmaster.pid, if it is alive."""
    try:
        pid = int((pg_data(folder) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _as_pg_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a command as `user` (root only)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run_pg(command: list[str], user: str | None, cwd: Path, what: str) -> str:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        start_new_session=True,  # postgres outlives this command and its terminal
        check=False,
        **_as_pg_user(user),
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise StackError(f"{what} failed: {lines[-1]}")
    return done.stdout


def init_cluster(folder: Path, pg_bin: Path, user: str | None, password: str) -> None:
    pg = folder / "pg"
    for sub in (pg, pg / "run"):
        sub.mkdir(parents=True, exist_ok=True)
        sub.chmod(0o700)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(sub, entry.pw_uid, entry.pw_gid)
    if user is not None:
        reach = subprocess.run(["test", "-w", str(pg)], check=False, **_as_pg_user(user))
        if reach.returncode != 0:
            raise StackError(
                f"running as root, PostgreSQL runs as user {user}, who cannot reach {pg}: "
                "use a --dir whose parent folders it can search (e.g. under /srv or /tmp), "
                f"or set {PG_USER_ENV}"
            )
    if (pg_data(folder) / "PG_VERSION").exists():
        return
    pwfile = pg / "initdb-password"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        _run_pg(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(pg_data(folder)),
                "-U",
                DB_USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            user,
            pg,
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _socket_dir(folder: Path) -> str:
    """The unix socket folder, or '' (TCP only) when the path is too long for a socket."""
    run = (folder / "pg" / "run").resolve()
    return str(run) if len(str(run)) + len("/.s.PGSQL.65535") < 100 else ""


def start_postgres(folder: Path, pg_bin: Path, user: str | None, port: int) -> None:
    options = f"-p {port} -h 127.0.0.1 -k {shlex.quote(_socket_dir(folder))}"
    _run_pg(
        [
            str(pg_bin / "pg_ctl"),
            "-D",
            str(pg_data(folder)),
            "-l",
            str(folder / "pg" / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_TIMEOUT_S),
            "start",
        ],
        user,
        folder / "pg",
        f"starting PostgreSQL (see {folder / 'pg' / 'postgres.log'})",
    )


def stop_postgres(folder: Path, pg_bin: Path, user: str | None) -> None:
    if postmaster_pid(folder) is None:
        return
    _run_pg(
        [str(pg_bin / "pg_ctl"), "-D", str(pg_data(folder)), "-m", "fast", "-w", "stop"],
        user,
        folder / "pg",
        "pg_ctl stop",
    )


def create_database(port: int, password: str) -> None:
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user=DB_USER, password=password, database="postgres"
        )
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
                await conn.execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            await conn.close()

    asyncio.run(create())


def database_url(port: int, password: str) -> str:
    return f"postgresql+asyncpg://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"

"""The processes behind `mallard stack`: PostgreSQL, a Prefect server on it, a process worker.

Everything lives in one state folder (default `.mallard-stack/` in the current directory):

    stack.json          pids, ports, URLs and the database password (mode 0600)
    pg/data/            the PostgreSQL cluster (kept by `down`; `down --purge` removes it)
    pg/run/             its unix socket
    pg/postgres.log     its log
    prefect/            PREFECT_HOME of the server and the worker
    server.log, worker.log

PostgreSQL itself (binaries, cluster, the root case): cli/postgres.py.

Stopping: the worker gets SIGINT (measured: `prefect worker` ignores SIGTERM for minutes and
stops on SIGINT), then SIGKILL if it lingers; the server likewise; PostgreSQL
`pg_ctl stop -m fast`. Process helpers are prefect_api's, shared with `mallard server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mallard.cli import postgres
from mallard.cli.prefect_api import LocalServer, _alive, _stop_process, _wait_healthy
from mallard.core.errors import StackError

DEFAULT_DIR = Path(".mallard-stack")
POOL = "mallard"
WORKER_LIMIT = 2
SERVER_TIMEOUT_S = 180.0  # a fresh database runs all of Prefect's migrations first
WORKER_TIMEOUT_S = 90.0
HOSTS = ("127.0.0.1", "0.0.0.0")  # the worker and the health checks use 127.0.0.1 either way
# Settings of the calling environment that would point the server or the worker elsewhere.
_PREFECT_OVERRIDES = (
    "PREFECT_API_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_EPHEMERAL_ENABLED",
    "PREFECT_HOME",
    "PREFECT_PROFILE",
)


@dataclass
class StackState:
    dir: str
    pg_bin: str
    pg_user: str | None  # None: PostgreSQL runs as the calling user
    pg_port: int
    pg_password: str
    server_pid: int
    server_port: int
    server_host: str
    worker_pid: int
    pool: str = POOL
    deployments: list[str] = field(default_factory=list)
    started_at: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


# ---------------------------------------------------------------- where things are


def state_path(folder: Path) -> Path:
    return folder / "stack.json"


def read_state(folder: Path) -> StackState | None:
    try:
        data = json.loads(state_path(folder).read_text(encoding="utf-8"))
        return StackState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: StackState) -> None:
    path = state_path(Path(state.dir))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the db password
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(state), handle, indent=2)
    tmp.replace(path)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn and postgres bind: a port in TIME_WAIT after a `down` is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(explicit: int | None, what: str, preferred: int = 0, host: str = "127.0.0.1") -> int:
    if explicit is not None:
        if not port_free(explicit, host):
            raise StackError(f"port {explicit} on {host} ({what}) is busy: choose another one")
        return explicit
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise StackError(f"no free port on {host} for {what}")


def running_parts(state: StackState) -> dict[str, int]:
    """Name -> pid of the stack's processes that are alive."""
    parts = {
        "worker": state.worker_pid,
        "server": state.server_pid,
        "postgres": postgres.postmaster_pid(Path(state.dir)) or 0,
    }
    return {name: pid for name, pid in parts.items() if pid and _alive(pid)}


# ---------------------------------------------------------------- Prefect server and worker


def _prefect_command() -> list[str]:
    prefect = Path(sys.executable).with_name("prefect")
    return [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]


def _clean_env(**updates: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PREFECT_OVERRIDES}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", **updates)
    return env


def _spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> int:
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # detached, own process group (the SIGINT goes to it)
        )
    return process.pid


def _start_server(folder: Path, host: str, port: int, db_url: str) -> int:
    env = _clean_env(
        PREFECT_HOME=str(folder / "prefect"),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=db_url,
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
    )
    if host != "127.0.0.1" and "PREFECT_UI_API_URL" not in env:
        # Else the UI would ask browsers on other machines for http://0.0.0.0:PORT/api.
        env["PREFECT_UI_API_URL"] = f"{public_url(port)}/api"
    command = [*_prefect_command(), "server", "start", "--host", host, "--port", str(port)]
    return _spawn(command, folder / "server.log", env, folder)


def public_url(port: int) -> str:
    """The server's address for other machines (when it listens on 0.0.0.0)."""
    return f"http://{socket.gethostname()}:{port}"


def _create_pool(api_url: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as c,
        contextlib.suppress(ObjectAlreadyExists),
    ):
        c.create_work_pool(WorkPoolCreate(name=POOL, type="process", base_job_template=template))


def _start_worker(folder: Path, api_url: str) -> int:
    env = _clean_env(PREFECT_HOME=str(folder / "prefect"), PREFECT_API_URL=api_url)
    command = [
        *_prefect_command(),
        "worker",
        "start",
        "--pool",
        POOL,
        "--type",
        "process",
        "--limit",
        str(WORKER_LIMIT),
        "--name",
        f"{POOL}-{socket.gethostname()}-{os.getpid()}",
    ]
    return _spawn(command, folder / "worker.log", env, folder)


def _wait_worker(api_url: str, pid: int, name_prefix: str, timeout_s: float) -> bool:
    """Until the worker has sent its first heartbeat to the pool (then it polls for runs)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout_s
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        while time.monotonic() < deadline:
            if not _alive(pid):
                return False
            workers = c.read_workers_for_work_pool(POOL)
            if any(w.name.startswith(name_prefix) for w in workers):
                return True
            time.sleep(0.5)
    return False


def register(planned: list[Any], api_url: str) -> list[str]:
    """Apply the spec's deployments (serve.deployments) to the stack's process pool."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    names = []
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        for deployment in planned:
            deployment.apply(work_pool_name=POOL)
            names.append(f"{deployment.flow_name}/{deployment.name}")
    return names


# ---------------------------------------------------------------- up, down


def up(
    folder: Path,
    planned: list[Any],
    host: str = "127.0.0.1",
    port: int | None = None,
    pg_port: int | None = None,
    preferred_port: int = 4200,
    say: Any = print,
) -> StackState:
    """Start PostgreSQL, the Prefect server and a worker; register `planned` on the pool."""
    folder = folder.resolve()
    pg_bin = postgres.require_pg_bin()
    previous = read_state(folder)
    if previous is not None and running_parts(previous):
        alive = ", ".join(f"{k} PID {v}" for k, v in running_parts(previous).items())
        raise StackError(
            f"a stack is already up in {folder} ({alive}): "
            f"`mallard stack down --dir {folder}` first"
        )
    if postgres.postmaster_pid(folder) is not None:
        data = postgres.pg_data(folder)
        raise StackError(f"a PostgreSQL server already runs on {data}: stop it first")
    if host not in HOSTS:
        raise StackError(f"--host {host}: use 127.0.0.1 (this machine) or 0.0.0.0 (all machines)")
    user = postgres.pg_user()
    server_port = pick_port(port, "the Prefect server", preferred_port, host)
    db_port = pick_port(pg_port, "PostgreSQL")
    if db_port == server_port:
        raise StackError(f"--port and --pg-port are both {db_port}: choose two ports")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prefect").mkdir(exist_ok=True)
    password = previous.pg_password if previous is not None else secrets.token_urlsafe(24)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    started: list[tuple[str, int]] = []
    try:
        postgres.init_cluster(folder, pg_bin, user, password)
        postgres.start_postgres(folder, pg_bin, user, db_port)
        postgres.create_database(db_port, password)
        timings["postgres"] = time.monotonic() - t0
        say(f"PostgreSQL up on 127.0.0.1:{db_port} ({timings['postgres']:.1f} s)")

        t = time.monotonic()
        db_url = postgres.database_url(db_port, password)
        server_pid = _start_server(folder, host, server_port, db_url)
        started.append(("server", server_pid))
        server = LocalServer(server_pid, server_port, folder / "prefect")
        if not _wait_healthy(server, timeout_s=SERVER_TIMEOUT_S):
            raise StackError(
                f"the Prefect server on port {server_port} did not answer within "
                f"{SERVER_TIMEOUT_S:g} s: see {folder / 'server.log'}"
            )
        timings["server"] = time.monotonic() - t
        say(f"Prefect server up on {server.ui_url} ({timings['server']:.1f} s)")

        t = time.monotonic()
        _create_pool(server.api_url)
        worker_pid = _start_worker(folder, server.api_url)
        started.append(("worker", worker_pid))
        prefix = f"{POOL}-{socket.gethostname()}-{os.getpid()}"
        if not _wait_worker(server.api_url, worker_pid, prefix, WORKER_TIMEOUT_S):
            raise StackError(
                f"the worker did not report to pool {POOL} within {WORKER_TIMEOUT_S:g} s: "
                f"see {folder / 'worker.log'}"
            )
        names = register(planned, server.api_url)
        timings["worker_and_deployments"] = time.monotonic() - t
        say(
            f"worker up on pool {POOL}, {len(names)} deployment(s) registered "
            f"({timings['worker_and_deployments']:.1f} s)"
        )
    except BaseException:
        for _, pid in reversed(started):
            _stop_process(pid)
        with contextlib.suppress(StackError):
            postgres.stop_postgres(folder, pg_bin, user)
        raise
    timings["total"] = time.monotonic() - t0
    state = StackState(
        dir=str(folder),
        pg_bin=str(pg_bin),
        pg_user=user,
        pg_port=db_port,
        pg_password=password,
        server_pid=server_pid,
        server_port=server_port,
        server_host=host,
        worker_pid=worker_pid,
        deployments=names,
        started_at=time.time(),
        timings_s={k: round(v, 2) for k, v in timings.items()},
    )
    _write_state(state)
    return state


def _descendants(pids: list[int]) -> set[int]:
    """Every process below `pids` (flow runs the worker started, the server's children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def down(folder: Path, purge: bool = False) -> tuple[StackState | None, list[str]]:
    """Stop what `up` started; (its state, what was stopped). Data stays unless `purge`."""
    folder = folder.resolve()
    state = read_state(folder)
    parts = running_parts(state) if state is not None else {}
    pg_alive = postgres.postmaster_pid(folder)
    if not parts and pg_alive is None:
        if purge and folder.exists():
            _purge(folder)
            return state, []
        where = "no stack state" if state is None else "nothing of the stack is running"
        raise StackError(f"nothing to stop in {folder}: {where}")
    stopped: list[str] = []
    below = _descendants([p for p in (state.worker_pid, state.server_pid) if p]) if state else set()
    if state is not None:
        for name in ("worker", "server"):  # worker first: it reports its runs to the server
            pid = parts.get(name)
            if pid:
                _stop_process(pid)  # SIGINT to its group, SIGKILL after 15 s
                stopped.append(f"{name} (PID {pid})")
    for pid in below:  # flow runs in their own session would escape the group signal
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    if pg_alive is not None:
        pg_bin = Path(state.pg_bin) if state is not None else postgres.require_pg_bin()
        user = state.pg_user if state is not None else postgres.pg_user()
        postgres.stop_postgres(folder, pg_bin, user)
        stopped.append(f"postgres (PID {pg_alive})")
    if purge:
        _purge(folder)
    return state, stopped


def _purge(folder: Path) -> None:
    if not state_path(folder).exists() and not postgres.pg_data(folder).exists():
        raise StackError(f"{folder} holds no mallard stack: not removing it")
    shutil.rmtree(folder)

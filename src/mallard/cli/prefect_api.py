"""Which Prefect API a command's flow runs report to, and mallard's long-lived local server.

Prefect 3 runs no flow without an API. Left alone, it starts a temporary server per command:
measured on this 2-core machine, 7-37 s from command start to the first flow step (a fresh
PREFECT_HOME also migrates its database), for a 1 s flow. `PREFECT_SERVER_EPHEMERAL_ENABLED`
is that same subprocess server, not an in-process API. A server that is already up costs one
health check (~10 ms). So, in this order:

1. PREFECT_API_URL set (environment or Prefect profile): that server. Unreachable: one line
   naming it, exit 2 (PrefectApiError). Where no file or profile can name one, this is known
   without importing Prefect (api_setting.py), so the local server is spawned ~1 s sooner.
2. PREFECT_SERVER_EPHEMERAL_ENABLED=true in the environment: Prefect's temporary server per
   command, as Prefect does it (the test suite's subprocesses, one-off CI jobs).
3. Otherwise mallard's local server: `prefect server start` on 127.0.0.1 with its own
   PREFECT_HOME under MALLARD_HOME (~/.mallard), started detached on first use and reused by
   every later command, so every run stays in one UI. `mallard server stop` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mallard.core.config import mallard_home, prefect_port
from mallard.core.errors import PrefectApiError

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LocalServer:
    pid: int
    port: int
    home: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_file() -> Path:
    return mallard_home() / "prefect-server.json"


def log_file() -> Path:
    return mallard_home() / "prefect-server.log"


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check."""
    import urllib.request  # ~60 ms: not on the path of `mallard --help`

    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError):
        return False


def recorded_server() -> LocalServer | None:
    """The local server mallard started, if its record exists and its process is alive."""
    try:
        data = json.loads(state_file().read_text(encoding="utf-8"))
        server = LocalServer(int(data["pid"]), int(data["port"]), Path(data["home"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return server if _alive(server.pid) else None


def running_server() -> LocalServer | None:
    """The local server, if it is up and answering."""
    server = recorded_server()
    return server if server is not None and healthy(server.api_url) else None


def start_server(announce: bool = True) -> tuple[LocalServer, bool]:
    """The local server, started detached if it is not up; (server, whether it was started)."""
    for _attempt in range(2):  # an old server alive but never answering is replaced once
        server, started = _spawned_server(announce)
        if _wait_healthy(server, timeout_s=START_TIMEOUT_S):
            return server, started
        _stop_process(server.pid)
        if started:
            break
    raise PrefectApiError(
        f"the local Prefect server on port {server.port} did not start within "
        f"{START_TIMEOUT_S:g} s; see {log_file()}"
    )


def start_server_early() -> None:
    """Spawn the local server, without waiting for it, if a flow run will need it.

    A command calls this before its heavy imports: the server boots (~3.5 CPU-s of imports
    and start-up on a new home seeded with the install-time migrated database, see
    server_template.py; ~7 CPU-s when Prefect must migrate a new one) on one core while the
    command imports the flow modules (~2.5 s) on the other, instead of one after the other."""
    if temporary_server_requested() or configured_api_url():  # environment, then profile
        return
    _spawned_server(announce=True)


def _spawned_server(announce: bool) -> tuple[LocalServer, bool]:
    """The recorded live server, or a new one spawned and recorded (it may still be booting:
    whoever needs it waits for its health check)."""
    home = mallard_home()
    home.mkdir(parents=True, exist_ok=True)
    with _start_lock(home / "prefect-server.lock"):
        server = recorded_server()
        if server is not None:
            return server, False
        port = _free_port(prefect_port())
        if announce:
            print(
                f"mallard: starting a local Prefect server on http://127.0.0.1:{port} "
                "(once; later commands reuse it; `mallard server stop` ends it)",
                file=sys.stderr,
            )
        server = _spawn(home, port)
        state_file().write_text(
            json.dumps({"pid": server.pid, "port": port, "home": str(server.home)}),
            encoding="utf-8",
        )
        return server, True


def stop_server() -> LocalServer | None:
    """Stop the local server (SIGINT, then SIGKILL); the server that was stopped, if any."""
    server = recorded_server()
    if server is not None:
        _stop_process(server.pid)
    with contextlib.suppress(FileNotFoundError):
        state_file().unlink()
    return server


def configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect sees it (environment, profile or a test harness)."""
    from_env = os.environ.get("PREFECT_API_URL")
    if from_env:
        return from_env
    from mallard.cli.api_setting import api_url_surely_unset

    if api_url_surely_unset():  # no profile or file names one: skip importing Prefect (~1 s)
        return None
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def temporary_server_requested() -> bool:
    value = os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def api_url() -> str | None:
    """The API the next flow run reports to (None: Prefect's own temporary server), starting
    mallard's local server if that is the choice and it is not up."""
    configured = configured_api_url()
    if configured:
        if not healthy(configured):
            raise PrefectApiError(
                f"the Prefect API at PREFECT_API_URL={configured} is unreachable: start that "
                "server, or unset PREFECT_API_URL to use mallard's local server"
            )
        return configured
    if temporary_server_requested():
        return None
    return start_server()[0].api_url


@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """Flow runs inside report to `api_url()`; also set in the environment for subprocesses."""
    url = api_url()
    if url is None:
        yield None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # workers and served runs' subprocesses inherit it
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def _spawn(home: Path, port: int) -> LocalServer:
    import subprocess

    from mallard.cli import server_template

    prefect_home = home / "prefect"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    # A new home's database: the install-time migrated template (saves ~3.5 CPU-s).
    seeded = server_template.uses_home_database(env) and server_template.seed(prefect_home)
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]
    with log_file().open("ab") as log:
        if seeded:
            log.write(f"mallard: database copied from {server_template.template_dir()}\n".encode())
            log.flush()
        process = subprocess.Popen(
            [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # detached: outlives this command, own process group
            cwd=home,
        )
    return LocalServer(process.pid, port, prefect_home)


def _wait_healthy(server: LocalServer, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(server.api_url, timeout_s=2.0):
            return True
        if not _alive(server.pid):
            return False
        time.sleep(0.05)  # a refused connection costs the booting server nothing
    return False


def _free_port(preferred: int) -> int:
    import socket

    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise PrefectApiError("no free port on 127.0.0.1 for the local Prefect server")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _stop_process(pid: int) -> None:
    """SIGINT to the server's process group (uvicorn's clean stop), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


@contextlib.contextmanager
def _start_lock(path: Path) -> Iterator[None]:
    """One starter at a time: two first commands at once must not start two servers."""
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Measuring one child process: wall, CPU, peak RSS of its process tree, and the other load.

One implementation for every figure of the bench (anchors and mallard alike). The peak RSS sums
the child and all its descendants, polled every 0.1 s, like the anchors' `benchutil` sampler;
CPU is the kernel's rusage of the child and every process it waited for (loky workers, a
temporary Prefect server).

A Prefect server that a mallard command starts and leaves running (mallard's long-lived local
server instead of a temporary one) is no longer a descendant once it detaches. It is found by
its environment: a `PREFECT_HOME` or `MALLARD_HOME` under the side's own fresh home folder
(`home`). Its RSS is added to the peak of every command it runs beside, its CPU to the command
during which it was spent, and it is listed in `Measured.servers` so the report can say that a
server was left running.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# CPU seconds of adopted (detached) server processes already charged to an earlier command.
_CHARGED_CPU: dict[int, float] = {}


@dataclass
class Measured:
    name: str
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and every process it waited for (+ adopted)
    peak_tree_mb: float  # largest summed RSS of the child, its descendants and adopted servers
    others_cores: float  # mean CPU cores busy with other processes meanwhile
    started_epoch: float
    stdout: str
    stderr: str
    servers: list[str] = field(default_factory=list)  # detached processes left running

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """One line: the exit code and the last non-empty line of the child's output."""
        tail = [line for line in (self.stderr + self.stdout).splitlines() if line.strip()]
        return f"{self.name} exited {self.returncode}: {tail[-1].strip() if tail else ''}"[:300]


def measure(
    cmd: list[str], cwd: Path, env: dict[str, str], name: str, home: Path | None = None
) -> Measured:
    """Run cmd to completion (stdout/stderr kept in cwd/name.stdout|stderr) and measure it;
    processes whose PREFECT_HOME / MALLARD_HOME lie under `home` count as its own."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        busy_before = _busy_cpu_s()
        started_epoch = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        sampler = _TreeSampler(child.pid, str(home) if home else None)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        busy = _busy_cpu_s() - busy_before
        sampler.stop()
    cpu_s = usage.ru_utime + usage.ru_stime
    adopted_cpu, servers = _charge_adopted(sampler.adopted)
    cpu_s += adopted_cpu
    return Measured(
        name=name,
        returncode=os.waitstatus_to_exitcode(status),
        wall_s=wall,
        cpu_s=cpu_s,
        peak_tree_mb=sampler.peak_bytes / 2**20,
        others_cores=max(0.0, busy - cpu_s) / wall,
        started_epoch=started_epoch,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        servers=servers,
    )


def stop_adopted(pids: list[int]) -> None:
    """Terminate server processes the bench's own children left running (by pid only)."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _charge_adopted(adopted: dict[int, psutil.Process]) -> tuple[float, list[str]]:
    """CPU spent by the adopted processes still running after the command (detached servers)
    since they were last charged, and a description of each."""
    cpu, alive = 0.0, []
    for pid, proc in adopted.items():
        # a process that ended with the command was its descendant: its CPU is in the rusage
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            t = proc.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            alive.append(f"{pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            continue
        cpu += total - _CHARGED_CPU.get(pid, 0.0)
        _CHARGED_CPU[pid] = total
    return cpu, alive


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()._asdict()
    not_busy = ("idle", "iowait", "steal", "guest", "guest_nice")  # guest is already in user
    return sum(v for k, v in times.items() if k not in not_busy)


class _TreeSampler:
    """Polls the summed RSS of a process, its descendants, and the processes outside its tree
    whose PREFECT_HOME / MALLARD_HOME lie under `home` (a detached server); remembers the latter
    in `adopted`."""

    def __init__(self, pid: int, home: str | None, interval_s: float = 0.1) -> None:
        self.pid, self.home, self.interval_s = pid, home, interval_s
        self.peak_bytes = 0
        self.adopted: dict[int, psutil.Process] = {}
        self._seen = set(psutil.pids())  # processes older than the child cannot be its server
        self._seen.discard(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _adopt_new(self) -> None:
        for pid in psutil.pids():
            if pid in self._seen:
                continue
            self._seen.add(pid)
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if self._ours(proc):
                    self.adopted[pid] = proc

    def _ours(self, proc: psutil.Process) -> bool:
        if not self.home:
            return False
        env = proc.environ()
        homes = (env.get("PREFECT_HOME", ""), env.get("MALLARD_HOME", ""))
        return any(h == self.home or h.startswith(self.home + os.sep) for h in homes)

    def _run(self) -> None:
        # servers already adopted by an earlier command of the same side keep counting
        for pid in list(_CHARGED_CPU):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if self._ours(proc):
                    self.adopted[pid] = proc
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            self._adopt_new()
            tree: dict[int, psutil.Process] = {}
            for top in (root, *self.adopted.values()):
                with contextlib.suppress(psutil.Error):
                    for proc in (top, *top.children(recursive=True)):
                        tree[proc.pid] = proc
            total = 0
            for proc in tree.values():
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            self._done.wait(self.interval_s)

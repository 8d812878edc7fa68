"""The README's tour runs as written: every `mallard` line of the sh blocks between the README's
`<!-- tour -->` and `<!-- /tour -->` markers, in order, as subprocesses in a fresh folder that
holds what a clone has (pipelines/) after `make demo`.

Two placeholders stand for what only the run can know: RUN_ID (the tour's latest train run)
and MODEL_ID (a model of that run other than the champion, for the rollback example).
`mallard serve` runs until stopped: it is stopped once it lists its deployments."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
MALLARD = Path(sys.executable).parent / "mallard"
TIMEOUT = 600  # seconds per command; a whole train run on 2,000 rows takes under a minute
PLACEHOLDERS = ("RUN_ID", "MODEL_ID")

# What a command's output must say, by subcommand, beyond exit code 0 and no traceback.
EXPECTED = {
    "demo": "new rows to score",
    "run": "leaderboard: housing",
    "runs": "succeeded",
    "leaderboard": "housing",
    "score": "rows scored",
    "promote": "champion",
    "validate": "quarantined",
    "repro": "reproduced",
    "serve": "score/housing-score",
}


def tour_commands(readme: str) -> list[str]:
    """The `mallard ...` lines of the ```sh blocks between the tour markers, comments cut."""
    start, end = readme.find("<!-- tour -->"), readme.find("<!-- /tour -->")
    assert 0 <= start < end, "README.md lost its <!-- tour --> ... <!-- /tour --> markers"
    blocks = re.findall(r"```sh\n(.*?)```", readme[start:end], flags=re.DOTALL)
    commands = []
    for line in "\n".join(blocks).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "mallard":
            commands.append(shlex.join(words))
    return commands


def test_the_tour_is_read_from_the_readme() -> None:
    """Fast: the markers are there and hold the tour's journey, so the slow test has work."""
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    subcommands = [shlex.split(c)[1] for c in commands]
    assert {"run", "score", "validate", "serve"} <= set(subcommands), commands
    assert subcommands.index("run") < subcommands.index("score")  # a champion first
    # `make demo` is the tour's first step: the test runs what the Makefile runs
    demo = r"^demo:.*\n(\t@\$\(BYTECODE\)\n)?\t\$\(RUN\) mallard demo$"  # after the bytecode step
    assert re.search(demo, (REPO / "Makefile").read_text(), re.M)


def tour_env(home: Path) -> dict[str, str]:
    """The user's shell as a configured Prefect server makes it (PREFECT_API_URL: this
    session's test server, so no command pays for a server start), with a Prefect home of the
    test's own and no warehouse from the caller's shell."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_HOME": str(home), "MALLARD_LOCK_TIMEOUT": "30"}
    for name in ("MALLARD_WAREHOUSE", "MALLARD_DEBUG", "PREFECT_SERVER_EPHEMERAL_ENABLED"):
        env.pop(name, None)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


def run(command: str, cwd: Path, env: dict[str, str]) -> str:
    words = shlex.split(command)
    started = time.monotonic()
    if words[1] == "serve":
        return serve_until_listed(words, cwd, env)
    done = subprocess.run(
        [str(MALLARD), *words[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = done.stdout + done.stderr
    seconds = time.monotonic() - started
    assert done.returncode == 0, (
        f"`{command}` exit {done.returncode} after {seconds:.0f}s:\n{output}"
    )
    return output


def serve_until_listed(words: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Start `mallard serve`, wait until it lists the score deployment, stop it (SIGINT, as
    Ctrl-C would) and return what it printed."""
    process = subprocess.Popen(
        [str(MALLARD), *words[1:]],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopping it stops its server too
    )
    lines: list[str] = []
    listed = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if EXPECTED["serve"] in line:
                listed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        listed.wait(timeout=TIMEOUT)
        assert process.poll() is None, f"`{shlex.join(words)}` exited {process.returncode}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        reader.join(timeout=30)
    output = "".join(lines)
    assert listed.is_set(), f"`{shlex.join(words)}` never listed its deployments:\n{output}"
    return output


def placeholders(db: Path) -> dict[str, str]:
    from mallard import warehouse

    run_id = warehouse.query(
        db,
        "SELECT run_id FROM ml.runs WHERE flow = 'train' AND status = 'succeeded' "
        "ORDER BY started_at DESC LIMIT 1",
    ).item()
    model_id = warehouse.query_params(
        db,
        "SELECT model_id FROM ml.models WHERE run_id = ? AND model_id NOT IN "
        "(SELECT model_id FROM ml.champions) ORDER BY model_id LIMIT 1",
        [run_id],
    ).item()
    return {"RUN_ID": str(run_id), "MODEL_ID": str(model_id)}


@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path: Path, prefect_server: None) -> None:
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "pipelines", clone / "pipelines", ignore=shutil.ignore_patterns("__*"))
    env = tour_env(tmp_path / "prefect-home")

    outputs = {"mallard demo": run("mallard demo", clone, env)}  # what `make demo` runs
    assert EXPECTED["demo"] in outputs["mallard demo"]
    for command in commands:
        if any(name in shlex.split(command) for name in PLACEHOLDERS):
            values = placeholders(clone / "warehouse.duckdb")
            command = shlex.join(values.get(word, word) for word in shlex.split(command))
        output = run(command, clone, env)
        outputs[command] = output
        assert "Traceback" not in output, f"`{command}`:\n{output}"
        expected = EXPECTED.get(shlex.split(command)[1])
        assert expected is None or expected in output, f"`{command}` lacks {expected!r}:\n{output}"

    scored = [c for c in commands if shlex.split(c)[1] == "score" and "-o" in shlex.split(c)]
    for command in scored:
        words = shlex.split(command)
        path = clone / words[words.index("-o") + 1]
        written = pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)
        assert written.columns == ["row_index", "prediction"] and written.height > 250

"""Where a mallard command's time goes, from the timestamps of its Prefect log lines.

Prefect prints `HH:MM:SS.fff | LEVEL | <source> - message` to stderr whatever server it talks to,
so the log is the robust source (the Prefect API's task runs depend on which server the command
used and whether it is still up). At INFO a task logs only its end (`Task run 'NAME-abc' -
Finished in state ...`), so a step's time is the time since the previous step ended: it also
holds whatever the flow did between the two steps (said in the table's `ends with` column).
The steps are the tasks of src/mallard/flows/steps.py; names the bench does not know keep their
own name, so a new step shows up rather than vanishing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) \| \w+\s*\| (.*)$")
_TASK_END = re.compile(r"^Task run '(.+?)(?:-[0-9a-f]{3})?' - Finished in state (\w+)")
_TASK_ANY = re.compile(r"^Task run '")
_FLOW_START = re.compile(r"^Flow run '.*' - Beginning flow run")
_FLOW_END = re.compile(r"^Flow run '.*' - Finished in state (\w+)")
_SERVER = re.compile(r"server", re.IGNORECASE)
_TUNED = re.compile(r"tune \d+/\d+: (\S+) .* in ([\d.]+) s")

# task name -> the step category (names not listed keep their own)
CATEGORY = {
    "read_source": "ingest",
    "quarantine_invalid": "validate",
    "protect_pii": "validate",
    "prepare_features": "features",
    "make_split": "features",
    "evaluation_table": "evaluate",
    "register_models": "register",
    "champion_decision": "champion",
    "audit_run": "audit",
    "publish_report": "report",
}


@dataclass
class Event:
    at_s: float  # seconds since the command started
    message: str


def events(stderr: str, started_epoch: float) -> list[Event]:
    """(seconds since the child started, message) for each Prefect log line (local time)."""
    start = time.localtime(started_epoch)
    start_s = start.tm_hour * 3600 + start.tm_min * 60 + start.tm_sec + started_epoch % 1
    found = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            h, m, s, message = match.groups()
            at = int(h) * 3600 + int(m) * 60 + float(s) - start_s
            found.append(Event(at + 86_400 if at < -3_600 else at, message))  # past midnight
    return found


def first_step_s(stderr: str, started_epoch: float) -> tuple[float | None, float | None]:
    """Seconds from command start to the flow's first log line, and to its first step's
    (task run's) first log line; None where the log has no such line."""
    evs = events(stderr, started_epoch)
    flow = next((e.at_s for e in evs if _FLOW_START.search(e.message)), None)
    task = next((e.at_s for e in evs if _TASK_ANY.search(e.message)), None)
    return flow, task


@dataclass
class Step:
    label: str  # the category (imports, server, ingest, ...) or the task's own name
    seconds: float
    ends_with: str  # the log line that ends it


def steps(
    stderr: str,
    started_epoch: float,
    wall_s: float,
    server_window: tuple[float, float] | None = None,
) -> tuple[list[Step], dict[str, float]]:
    """Sequential steps of one mallard command, and seconds per tuned candidate.

    Candidates are tuned as concurrent tasks: their span is one `tuning` step (from the end of
    the step before the first of them to the end of the last), and each candidate's own time is
    its `tune i/n: NAME ... in X s` line (else its end minus the tuning start).

    server_window: (spawned, recorded) seconds of a server this command started, when the log
    cannot tell (mallard announces its local server without a timestamp)."""
    evs = events(stderr, started_epoch)
    out: list[Step] = []
    candidates: dict[str, float] = {}
    previous = 0.0
    flow_started = False
    tuning_start: float | None = None

    def close(label: str, at: float, ends_with: str) -> None:
        nonlocal previous
        out.append(Step(label, at - previous, ends_with))
        previous = at

    for e in evs:
        tuned = _TUNED.search(e.message)
        if tuned:
            candidates[tuned.group(1)] = float(tuned.group(2))
            continue
        if not flow_started:
            if _FLOW_START.search(e.message):
                if not out and server_window:
                    # The server is spawned once the spec parses and boots while the command
                    # imports the flow modules; the flow run begins once it answers.
                    close("spec check", server_window[0], "server process created")
                    close("server boot ‖ imports", e.at_s, "Beginning flow run")
                else:
                    close("server" if out else "imports + server", e.at_s, "Beginning flow run")
                flow_started = True
            elif not out and _SERVER.search(e.message):
                close("imports", e.at_s, e.message[:70])
            continue
        end = _TASK_END.search(e.message)
        if end:
            name = end.group(1)
            if name.startswith("tune-"):
                if tuning_start is None:
                    tuning_start = previous
                candidates.setdefault(name.removeprefix("tune-"), e.at_s - tuning_start)
                close("tuning", e.at_s, f"last tune task ({name})")  # merged into one span
            else:
                close(CATEGORY.get(name, name), e.at_s, f"task {name}")
        elif _FLOW_END.search(e.message):
            close("write (flow body after the last step)", e.at_s, "flow Finished")
    if out:
        close("shutdown + exit", wall_s, "process exit")
    return _merge(out), candidates


def _merge(found: list[Step]) -> list[Step]:
    """Consecutive steps of one category become one row (validate = quarantine + pii)."""
    merged: list[Step] = []
    for s in found:
        if merged and merged[-1].label == s.label:
            merged[-1] = Step(s.label, merged[-1].seconds + s.seconds, s.ends_with)
        else:
            merged.append(s)
    return merged

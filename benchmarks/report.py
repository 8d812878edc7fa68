"""benchmarks/results.md from the figures of one bench run: every figure beside its anchor and
the issue-11 target it answers (met / missed)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from measure import Measured
    from run import SizeResult, Startup

HERE = Path(__file__).resolve().parent
IMPORT = "import mallard.flows.train, mallard.flows.score, mallard.flows.validate"
LIBRARIES = ("prefect", "polars", "duckdb", "pandera", "scikit-learn", "numpy", "pandas", "skops")
TIMES, MINUS = "\u00d7", "\u2212"  # the signs, as escapes (ruff's RUF001)


@dataclass
class Inputs:
    quick: bool
    startup: Startup | None
    sizes: list[SizeResult]
    load: tuple[float, float]
    total_s: float
    quality_md: Path
    argv: str


def json_line(line: str) -> dict[str, Any]:
    return json.loads(line.removeprefix("RESULT "))


# --- verdict rows --------------------------------------------------------------------------


class Targets:
    def __init__(self) -> None:
        self.rows: list[str] = []

    def add(
        self,
        target: str,
        figure: float | None,
        limit: float | None,
        unit: str = "s",
        higher_is_better: bool = False,
        anchor: str = "",
        note: str = "",
    ) -> None:
        shown = "—" if figure is None else f"{figure:.3g} {unit}".strip()
        if unit == "R²" and figure is not None:
            shown = f"{figure:.4f}"
        if limit is None:
            self.rows.append(f"| {target} | {shown} | {anchor or '—'} | — | — | {note} |")
            return
        if figure is None:
            verdict, ratio = "not measured", "—"
        else:
            met = figure >= limit if higher_is_better else figure <= limit
            verdict = "**met**" if met else "**missed**"
            ratio = f"{figure - limit:+.4f}" if unit == "R²" else f"{figure / limit:.2f}"
        limit_text = f"{'≥' if higher_is_better else '≤'} {limit:g} {unit if unit != 'R²' else ''}"
        self.rows.append(
            f"| {target} | {shown} | {anchor or '—'} | {limit_text.strip()} | {ratio} "
            f"| {verdict} {note} |"
        )

    def lines(self) -> list[str]:
        return [
            "| target | measured | anchor | target | measured / target (R²: minus) | verdict |",
            "|---|---:|---|---:|---:|---|",
            *self.rows,
        ]


def _median(ms: list[Measured], attr: str = "wall_s") -> float | None:
    values = [getattr(m, attr) for m in ms if m.ok]
    return statistics.median(values) if values else None


def targets(inputs: Inputs) -> list[str]:
    t = Targets()
    s = inputs.startup
    if s:
        t.add("1 `mallard --help` wall (median of 5)", _median(s.help), 0.2)
        t.add("1 import the flow modules, wall (median of 3)", _median(s.imports), 2)
        cold = s.first_step.get("validate (cold)", (None, None))[1]
        t.add("1 command start → first flow step (`validate`, cold)", cold, 2)
        for key in ("validate (cold)", "score (cold)"):
            m = s.commands.get(key)
            t.add(f"2 `mallard {key}` of 1,000 rows, wall", m.wall_s if m and m.ok else None, 3)
        job = s.small
        init_run = (
            sum(m.wall_s for k, m in job.commands.items() if k != "score")
            if job and job.ok
            else None
        )
        t.add("2 `init` + `run` of a 500-row table, wall", init_run, 8)
        if job and s.small_ridge_r2 is not None:
            t.add(
                f"2 …its holdout R² (vs RidgeCV on the same rows {MINUS} 0.01)",
                job.r2,
                round(s.small_ridge_r2 - 0.01, 4),
                unit="R²",
                higher_is_better=True,
                anchor=f"RidgeCV {s.small_ridge_r2:.4f}",
            )
    for size in inputs.sizes:
        job, rows = size.mallard, f"{size.rows:,}"
        wall = job.wall_s if job.ok else None
        tb, fast = size.anchors["textbook"], size.anchors["fast"]
        if tb.measured and tb.measured.ok and wall:
            limit = {20_000: 3, 200_000: 10}.get(size.rows)
            t.add(
                f"3 speed-up vs textbook at {rows} rows (textbook wall / mallard wall)",
                tb.measured.wall_s / wall,
                limit,
                unit=TIMES,
                higher_is_better=True,
                anchor=f"textbook {tb.measured.wall_s:.1f} s",
                note="" if limit else "no target at this size (set at 20k and 200k)",
            )
        if fast.measured and fast.measured.ok and wall and size.rows >= 200_000:
            t.add(
                f"3 mallard wall / fast path wall at {rows} rows",
                wall / fast.measured.wall_s,
                1.15,
                unit=TIMES,
                anchor=f"fast {fast.measured.wall_s:.1f} s",
            )
        if fast.r2 is not None:
            t.add(
                f"3 holdout R² ≥ fast path's at {rows} rows",
                job.r2,
                fast.r2,
                unit="R²",
                higher_is_better=True,
                anchor=f"fast {fast.r2:.4f}",
            )
        if size.rows >= 1_000_000 and size.rows < 10_000_000:
            t.add(f"3 mallard wall at {rows} rows", wall, 300)
            t.add(f"3 mallard peak RSS at {rows} rows", job.peak_mb if job.ok else None, 2048, "MB")
        if size.rows >= 10_000_000:
            run = job.commands.get("run")
            t.add(f"4 `mallard run` at {rows} rows", run.wall_s if run and run.ok else None, 1800)
            t.add(f"4 peak RSS at {rows} rows", run.peak_tree_mb if run else None, 12 * 1024, "MB")
    return t.lines()


# --- tables --------------------------------------------------------------------------------


def _row(label: str, m: Measured | None, r2: float | None = None, extra: str = "") -> str:
    if m is None:
        return f"| {label} | not run | | | | | {extra} |"
    status = "" if m.ok else f" **failed** (exit {m.returncode})"
    r2_text = f"{r2:.4f}" if r2 is not None else "—"
    return (
        f"| {label}{status} | {m.wall_s:.2f} | {m.cpu_s:.2f} | {m.peak_tree_mb:.0f} | {r2_text} "
        f"| {m.others_cores:.2f} | {extra} |"
    )


HEAD = [
    "| | wall s | CPU s | peak RSS MB (tree) | holdout R² | other load | note |",
    "|---|---:|---:|---:|---:|---:|---|",
]


def startup_section(s: Startup) -> list[str]:
    lines = ["## Start-up (targets 1 and 2)", "", *HEAD]
    for i, m in enumerate(s.help, 1):
        lines.append(_row(f"`mallard --help` #{i}", m))
    for i, m in enumerate(s.imports, 1):
        lines.append(_row(f'`python -c "{IMPORT}"` #{i}', m))
    for key, m in s.commands.items():
        flow, task = s.first_step[key]
        lines.append(_row(f"`mallard {key}` 1,000 rows", m, extra=_first(flow, task)))
    lines += ["", "### 500-row table (the anchors' 80 % of 500 generated rows)", "", *HEAD]
    if s.small:
        for name, m in s.small.commands.items():
            lines.append(_row(f"mallard {name}", m, s.small.r2 if name == "score" else None))
    for a in s.small_anchors:
        lines.append(_row(f"{a.name} anchor (whole script)", a.measured, a.r2, a.note))
    if s.small_ridge_r2 is not None:
        lines.append(f"| RidgeCV (in-process reference) | | | | {s.small_ridge_r2:.4f} | | |")
    if s.small:
        lines += ["", *_steps(s.small)]
    notes = s.notes + (s.small.notes if s.small else [])
    lines += ["", *(f"- {n}" for n in notes), ""] if notes else [""]
    return lines


def _first(flow: float | None, task: float | None) -> str:
    f = f"{flow:.2f} s" if flow is not None else "no log line"
    t = f"{task:.2f} s" if task is not None else "no log line"
    return f"flow's first log line at {f}; first step's (task run's) first log line at {t}"


def size_section(size: SizeResult) -> list[str]:
    job = size.mallard
    lines = [
        f"## {size.rows:,} generated rows ({size.n_valid:,} valid; mallard trains on the "
        f"anchors' 80 %, scores their 20 %)",
        "",
        *HEAD,
    ]
    for a in size.anchors.values():
        lines.append(_row(f"{a.name} anchor (whole script)", a.measured, a.r2, a.note))
    for name, m in job.commands.items():
        lines.append(_row(f"mallard {name}", m, job.r2 if name == "score" else None))
    if job.commands:
        lines.append(
            f"| **mallard init + run + score** | {job.wall_s:.2f} | {job.cpu_s:.2f} "
            f"| {job.peak_mb:.0f} | {job.r2:.4f} | | max RSS of the three |"
            if job.r2 is not None
            else f"| **mallard init + run + score** | {job.wall_s:.2f} | {job.cpu_s:.2f} "
            f"| {job.peak_mb:.0f} | — | | |"
        )
    lines += ["", *_ratios(size), "", *_steps(job)]
    if job.notes:
        lines += ["", *(f"- {n}" for n in job.notes)]
    return [*lines, ""]


def _ratios(size: SizeResult) -> list[str]:
    job = size.mallard
    out = [
        f"| mallard (init + run + score) / anchor | wall | CPU | peak RSS | R² {MINUS} anchor's |",
        "|---|---:|---:|---:|---:|",
    ]
    for a in size.anchors.values():
        m = a.measured
        if not (m and m.ok and job.ok):
            out.append(f"| / {a.name} | — | — | — | — |")
            continue
        dr2 = f"{job.r2 - a.r2:+.4f}" if job.r2 is not None and a.r2 is not None else "—"
        out.append(
            f"| / {a.name} | {job.wall_s / m.wall_s:.2f} | {job.cpu_s / m.cpu_s:.2f} "
            f"| {job.peak_mb / max(m.peak_tree_mb, 1):.2f} | {dr2} |"
        )
    return out


def _steps(job: Any) -> list[str]:
    if not job.steps:
        return ["(no per-step table: the `run` command's log had no Prefect lines)"]
    run = job.commands["run"]
    lines = [
        f"Where `mallard run`'s {run.wall_s:.1f} s go (from its Prefect log timestamps):",
        "",
        "| step | s | share | ends with |",
        "|---|---:|---:|---|",
    ]
    for s in job.steps:
        share = s.seconds / run.wall_s
        lines.append(f"| {s.label} | {s.seconds:.2f} | {share:.0%} | {s.ends_with} |")
    if job.candidates:
        lines += ["", "| tuned candidate (concurrent tasks) | s |", "|---|---:|"]
        lines += [f"| {name} | {sec:.2f} |" for name, sec in job.candidates.items()]
    return lines


# --- the page ------------------------------------------------------------------------------


def machine(load: tuple[float, float]) -> list[str]:
    memory = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    libraries = ", ".join(f"{name} {v(name)}" for name in LIBRARIES)
    return [
        f"- CPU: {os.cpu_count()} cores ({cpu}), RAM {memory:.1f} GiB, {platform.platform()}",
        f"- Python {platform.python_version()}; {libraries}",
        f"- Load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}. **other load** in "
        "the tables: mean cores busy with other processes during that command (system busy CPU "
        "minus the command's own, over its wall time); above ~0.2 its wall time is inflated by "
        "competition for the 2 cores: read wall as an upper bound, CPU as the steadier figure.",
    ]


def git_version() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def dask_section(path: Path) -> list[str]:
    """The Dask row (benchmarks/dask_bench.py, written by `make bench` before this script)."""
    title = [
        "## Dask: the same run on a local scheduler + 2 workers (benchmarks/dask_bench.py)",
        "",
    ]
    if not path.exists():
        return [
            *title,
            f"`{path}` not found: `make bench` writes it with benchmarks/dask_bench.py.",
        ]
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        *title,
        f"Included from `{path.name}` (written {written}).",
        "",
        *path.read_text().strip().splitlines(),
    ]


def quality_section(path: Path) -> list[str]:
    if not path.exists():
        return [
            "## Quality (benchmarks/quality.py)",
            "",
            f"`{path}` not found: `make bench` runs `benchmarks/quality.py` before this script.",
        ]
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = path.read_text().strip().splitlines()
    body = [("##" + line if line.startswith("#") else line) for line in body]  # below ours
    return [
        "## Quality (benchmarks/quality.py)",
        "",
        f"Included from `{path.name}` (written {written} by `benchmarks/quality.py`).",
        "",
        *body,
    ]


def render(inputs: Inputs) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sizes = ", ".join(f"{s.rows:,}" for s in inputs.sizes) or "none"
    lines = ["# mallard vs. the performance anchors (issue 11)", ""]
    if inputs.quick:
        lines += [
            "> **QUICK RUN (`--quick`, 2,000 rows): a smoke test of the harness on a shared, "
            "loaded machine, not the benchmark.** The 20k / 200k / 1M figures come from "
            "`make bench` (or `--rows 20000 200000 1000000`) on an idle machine.",
            "",
        ]
    lines += [
        f"Written by `benchmarks/run.py {inputs.argv}` on {date} (code {git_version()}); sizes "
        f"{sizes}; whole bench {inputs.total_s / 60:.1f} min. One run per cell: read differences "
        "under ~10 % as noise. Anchors: /work/shared/anchors (textbook.py, fast.py, "
        "gen_housing.py), run as they are.",
        "",
        "## Machine",
        "",
        *machine(inputs.load),
        "",
        "## Targets",
        "",
        *targets(inputs),
        "",
        "The whole mallard job is `init` (defaults) + `run` + `score` of the holdout, what one "
        "anchor script does (read, train, evaluate the holdout, save). Ratios: start-up figures "
        "against the target itself; speed-up = textbook wall / mallard wall.",
        "",
    ]
    if inputs.startup:
        lines += startup_section(inputs.startup)
    for size in inputs.sizes:
        lines += size_section(size)
    lines += [*how_measured(), "", *quality_section(inputs.quality_md), ""]
    lines += [*dask_section(inputs.quality_md.with_name("dask.md")), ""]
    return "\n".join(lines)


def how_measured() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- Each figure is one child process: **wall** from start to exit; **CPU** user + system "
        "of the child and every process it waited for (loky workers, a temporary Prefect "
        "server); **peak RSS** the largest sum of resident memory over the child and all its "
        "descendants, polled every 0.1 s (shared pages count again in every process).",
        "- Cold start: every mallard side gets a fresh `PREFECT_HOME` and `MALLARD_HOME` (where "
        "mallard keeps its long-lived local server) and the bench removes other `PREFECT_*` / "
        "`MALLARD_*` variables, so no Prefect server is configured or running for it. A server a "
        "mallard command starts and leaves running is found by those homes in its "
        "environment: its start is in the wall of the command that started it, its CPU and RSS "
        "count with the commands it serves, the notes name it, and the bench stops it after "
        "the side (`mallard server stop`, then by pid).",
        "- Same rows: the bench applies the anchors' invalid-row rule (lotsize ≥ 0 or missing, "
        "bedrooms 0 to 20, price present) and `train_test_split(test_size=0.2, random_state=42)`, "
        "writes the 80 % to `train.csv` and the 20 % without `price` to `holdout.csv`; mallard's "
        "holdout R² is its scored file's `prediction` (matched by `row_index`) against the true "
        "prices. mallard then splits its 80 % itself (its spec's train / validation / test).",
        "- Per-step times come from the `run` command's Prefect log: at INFO a task logs only "
        "its end, so a step's time is the time since the previous step ended (flow-body work "
        "in between included: see `ends with`). Candidates are tuned as concurrent tasks: "
        "`tuning` is their joint span, each candidate's own seconds are mallard's `tune i/n` line.",
        "- `validate` / `score` of 1,000 rows use the 500-row table's pipeline on 1,000 new "
        "generated rows (seed 7): cold = fresh homes (the command starts the server), warm = "
        "the same command again with those homes (the server it left is up).",
    ]

"""`make bench` (issue 11): mallard against the performance anchors, side by side in one run.

    python benchmarks/run.py [--rows 20000 200000 1000000] [--quick] [--keep DIR] [--parquet]

Start-up figures first (`mallard --help`, importing the flow modules, command start to the first
flow step, `validate` / `score` of 1,000 rows, `init` + `run` of a 500-row table), then for each
row count: generate data with the anchors' generator (/work/shared/anchors/gen_housing.py, seed
42), run the textbook and fast anchors on it as child processes, and give mallard the same 80 %
of the valid rows the anchors train on (their invalid-row rule and
`train_test_split(test_size=0.2, random_state=42)`): `mallard init train.csv --target price`
(defaults), `mallard run`, `mallard score` of the other 20 % (without the target), holdout R²
against the true prices. Every mallard command starts cold: a fresh PREFECT_HOME per side and no
Prefect server configured. Writes benchmarks/results.md; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mallard_log
import report
from measure import Measured, measure, stop_adopted

HERE = Path(__file__).resolve().parent
ANCHORS = Path(os.environ.get("MALLARD_BENCH_ANCHORS", "/work/shared/anchors"))
PYTHON = sys.executable
MALLARD = str(Path(sys.executable).with_name("mallard"))
DEFAULT_ROWS = (20_000, 200_000)
QUICK_ROWS = (2_000,)


# --- data: the anchors' generator, their invalid-row rule and split ---------------------------


def generate(rows: int, path: Path, seed: int = 42) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        done = measure(
            [PYTHON, str(ANCHORS / "gen_housing.py"), str(rows), str(path), "--seed", str(seed)],
            path.parent,
            dict(os.environ),
            f"gen-{path.stem}",
        )
        if not done.ok:
            sys.exit(done.failure())
    return path


@dataclass
class Split:
    train: Path  # the anchors' 80 %, every column
    holdout: Path  # the anchors' 20 %, without the target
    y_true: np.ndarray  # holdout prices, in holdout-file order
    n_valid: int


def split_like_anchors(data: Path, folder: Path, suffix: str) -> Split:
    """The rows textbook.py and fast.py train and test on (same rule, same split call)."""
    lf = pl.scan_parquet(data) if data.suffix == ".parquet" else pl.scan_csv(data)
    df = lf.filter(
        (pl.col("lotsize").is_null() | (pl.col("lotsize") >= 0))
        & (pl.col("bedrooms").is_null() | pl.col("bedrooms").is_between(0, 20))
        & pl.col("price").is_not_null()
    ).collect()
    tr, te = train_test_split(np.arange(df.height), test_size=0.2, random_state=42)
    folder.mkdir(parents=True, exist_ok=True)
    train, holdout = folder / f"train{suffix}", folder / f"holdout{suffix}"
    write = pl.DataFrame.write_parquet if suffix == ".parquet" else pl.DataFrame.write_csv
    write(df[tr], train)
    write(df[te].drop("price"), holdout)
    return Split(train, holdout, df["price"].to_numpy()[te], df.height)


# --- the anchors ---------------------------------------------------------------------------


@dataclass
class Anchor:
    name: str
    measured: Measured | None
    r2: float | None = None
    n_valid: int | None = None
    note: str = ""


def run_anchor(name: str, data: Path, folder: Path) -> Anchor:
    cmd = [PYTHON, str(ANCHORS / f"{name}.py"), str(data), str(folder / f"out-{name}")]
    m = measure(cmd, folder, dict(os.environ), name)
    if not m.ok:
        return Anchor(name, m, note=m.failure())
    result = next(
        (line for line in reversed(m.stdout.splitlines()) if line.startswith("RESULT ")), None
    )
    if result is None:
        return Anchor(name, m, note=f"{name}: no RESULT line in its output")
    values = report.json_line(result)
    return Anchor(name, m, r2=values.get("r2"), n_valid=values.get("n_rows"))


# --- mallard -------------------------------------------------------------------------------


def mallard_env(home: Path) -> dict[str, str]:
    """A cold start: no Prefect server or warehouse configured, a fresh PREFECT_HOME and a
    fresh MALLARD_HOME (where mallard keeps its long-lived local server: without it the bench
    would reuse, and stop, the user's ~/.mallard server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MALLARD_"))}
    return {
        **env,
        "PREFECT_HOME": str(home / "prefect"),
        "MALLARD_HOME": str(home / "mallard"),
        "COLUMNS": "1000",
        "NO_COLOR": "1",
    }


def run_mallard(cmd: list[str], cwd: Path, home: Path, name: str) -> Measured:
    return measure([MALLARD, *cmd], cwd, mallard_env(home), name, home=home)


@dataclass
class MallardJob:
    commands: dict[str, Measured] = field(default_factory=dict)  # init, run, score
    r2: float | None = None
    n_scored: int | None = None
    steps: list[mallard_log.Step] = field(default_factory=list)
    candidates: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return set(self.commands) == {"init", "run", "score"} and all(
            m.ok for m in self.commands.values()
        )

    @property
    def wall_s(self) -> float:
        return sum(m.wall_s for m in self.commands.values())

    @property
    def cpu_s(self) -> float:
        return sum(m.cpu_s for m in self.commands.values())

    @property
    def peak_mb(self) -> float:
        return max((m.peak_tree_mb for m in self.commands.values()), default=0.0)


def mallard_job(split: Split, folder: Path, home: Path) -> MallardJob:
    """init (defaults) + run + score of the holdout, in folder, all with one fresh home."""
    job = MallardJob()
    spec = folder / "spec.toml"
    scored = folder / "scored.parquet"
    for name, cmd in (
        ("init", ["init", split.train.name, "--target", "price", "-o", spec.name, "--force"]),
        ("run", ["run", spec.name]),
        ("score", ["score", spec.name, split.holdout.name, "-o", scored.name]),
    ):
        m = run_mallard(cmd, folder, home, f"mallard-{name}")
        job.commands[name] = m
        job.servers += [s for s in m.servers if s not in job.servers]
        if not m.ok:
            job.notes.append(m.failure())
            break
        if name == "run":
            window = server_window(home, m)
            job.steps, job.candidates = mallard_log.steps(
                m.stderr, m.started_epoch, m.wall_s, window
            )
    if job.ok:
        job.r2, job.n_scored, note = holdout_r2(scored, split.y_true)
        if note:
            job.notes.append(note)
    if not job.servers and server_state(home).exists():
        job.notes.append(
            f"{server_state(home)} records a server the bench did not find by its environment: "
            "its CPU and RSS are not in the figures"
        )
    if job.servers:
        job.notes.append(
            "a Prefect server started by mallard was still running after the command that "
            "started it (included in that command's wall, and in CPU and peak RSS while it ran "
            "beside later commands): " + "; ".join(job.servers)
        )
    return job


def holdout_r2(scored: Path, y_true: np.ndarray) -> tuple[float | None, int | None, str]:
    """R² of the scored file's `prediction` column against the true holdout prices, matched by
    its `row_index` (0-based row of the input file)."""
    from sklearn.metrics import r2_score

    frame = pl.read_parquet(scored)
    if "prediction" not in frame.columns:
        return None, None, f"{scored.name} has no 'prediction' column (columns: {frame.columns})"
    note = ""
    if "row_index" in frame.columns:
        index = frame["row_index"].to_numpy()
        if index.min() < 0 or index.max() >= len(y_true):
            return None, None, f"{scored.name}: row_index outside 0..{len(y_true) - 1}"
    elif frame.height == len(y_true):
        index, note = np.arange(len(y_true)), "no row_index column: rows taken in file order"
    else:
        return None, None, f"{scored.name}: no row_index and {frame.height} of {len(y_true)} rows"
    if frame.height < len(y_true):
        note = f"only {frame.height:,} of {len(y_true):,} holdout rows scored; R² over those"
    return float(r2_score(y_true[index], frame["prediction"].to_numpy())), frame.height, note


def server_state(home: Path) -> Path:
    """Where mallard records the long-lived local server it started for this home."""
    return home / "mallard" / "prefect-server.json"


def server_window(home: Path, m: Measured) -> tuple[float, float] | None:
    """(server process created, server recorded) in seconds since the command started, if this
    command started mallard's local server (recorded at spawn, before it answers)."""
    import json

    import psutil

    state = server_state(home)
    try:
        created = psutil.Process(int(json.loads(state.read_text())["pid"])).create_time()
        recorded = state.stat().st_mtime
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    spawned, ready = created - m.started_epoch, recorded - m.started_epoch
    return (spawned, ready) if 0 <= spawned <= ready <= m.wall_s else None


def stop_servers(home: Path, servers: list[str]) -> None:
    """Stop the long-lived server mallard started for this home: `mallard server stop`, then
    by pid whatever the bench found still up."""
    if not servers and not server_state(home).exists():
        return
    run_mallard(["server", "stop"], home, home, "mallard-server-stop")
    stop_adopted([int(s.split()[0]) for s in servers])


# --- start-up figures ----------------------------------------------------------------------


@dataclass
class Startup:
    help: list[Measured] = field(default_factory=list)
    imports: list[Measured] = field(default_factory=list)
    commands: dict[str, Measured] = field(default_factory=dict)  # validate/score cold/warm
    first_step: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    small: MallardJob | None = None
    small_anchors: list[Anchor] = field(default_factory=list)
    small_ridge_r2: float | None = None
    notes: list[str] = field(default_factory=list)


def startup(folder: Path) -> Startup:
    out = Startup()
    for i in range(5):
        m = run_mallard(["--help"], folder, folder / f"home-help-{i}", f"help-{i}")
        out.help.append(m)
    for i in range(3):
        cmd = [PYTHON, "-c", report.IMPORT]
        out.imports.append(
            measure(cmd, folder, mallard_env(folder / f"home-imp-{i}"), f"import-{i}")
        )

    # init + run on a 500-row table (the anchors' 80 % of it), holdout R² vs the same rows
    data = generate(500, folder / "small" / "data.csv")
    split = split_like_anchors(data, folder / "small" / "mallard", ".csv")
    home = folder / "small" / "home"
    out.small = mallard_job(split, split.train.parent, home)
    out.small_anchors = [run_anchor(n, data, folder / "small") for n in ("textbook", "fast")]
    out.small_ridge_r2 = ridge_reference(split)

    # validate / score of 1,000 new rows with the 500-row pipeline: cold (fresh home), then warm
    if out.small.ok:
        new = generate(1000, folder / "small" / "mallard" / "new1000.csv", seed=7)
        spec = "spec.toml"
        for cmd_name, extra in (("validate", []), ("score", ["-o", "new-scored.parquet"])):
            cmd_home, servers = folder / f"home-{cmd_name}", []
            for state in ("cold", "warm"):  # warm: the same home again, a server may be up
                key = f"{cmd_name} ({state})"
                cmd = [cmd_name, spec, new.name, *extra]
                m = run_mallard(cmd, new.parent, cmd_home, f"mallard-{cmd_name}-{state}")
                out.commands[key] = m
                out.first_step[key] = mallard_log.first_step_s(m.stderr, m.started_epoch)
                servers += [s for s in m.servers if s not in servers]
                if not m.ok:
                    out.notes.append(m.failure())
            stop_servers(cmd_home, servers)
    stop_servers(home, out.small.servers)
    return out


def ridge_reference(split: Split) -> float:
    """RidgeCV in the textbook's preprocessing, fitted on the same 80 %, R² on the same 20 %."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = pl.read_csv(split.train).to_pandas()
    holdout = pl.read_csv(split.holdout).to_pandas()
    schema = pl.read_csv(split.holdout).schema
    cat = [c for c, dtype in schema.items() if dtype == pl.String]
    num = [c for c in holdout.columns if c not in cat]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                cat,
            ),
        ]
    )
    model = Pipeline([("pre", pre), ("ridge", RidgeCV(alphas=np.logspace(-3, 3, 13)))])
    model.fit(train[num + cat], train["price"])
    return float(r2_score(split.y_true, model.predict(holdout[num + cat])))


# --- one row count -------------------------------------------------------------------------


@dataclass
class SizeResult:
    rows: int
    n_valid: int
    anchors: dict[str, Anchor]
    mallard: MallardJob


def run_size(rows: int, folder: Path, args: argparse.Namespace) -> SizeResult:
    suffix = ".parquet" if args.parquet else ".csv"
    data = generate(rows, folder / f"data{suffix}")
    split = split_like_anchors(data, folder / "mallard", suffix)
    anchors = {}
    for name, limit in (("textbook", args.textbook_max_rows), ("fast", args.fast_max_rows)):
        if rows > limit or (name == "textbook" and args.parquet):
            why = "Parquet input (textbook.py reads CSV)" if args.parquet else f"--{name}-max-rows"
            anchors[name] = Anchor(name, None, note=f"not run ({why} {limit:,})")
        else:
            anchors[name] = run_anchor(name, data, folder)
        _progress(rows, name, anchors[name].measured, anchors[name].r2)
    home = folder / "prefect-home"
    job = mallard_job(split, split.train.parent, home)
    stop_servers(home, job.servers)
    for name, m in job.commands.items():
        _progress(rows, f"mallard {name}", m, job.r2 if name == "score" else None)
    for name, a in anchors.items():
        if a.n_valid is not None and a.n_valid != split.n_valid:
            job.notes.append(
                f"{name} kept {a.n_valid:,} valid rows, the bench {split.n_valid:,}: "
                "the holdout rows may differ"
            )
    return SizeResult(rows, split.n_valid, anchors, job)


def _progress(rows: int, name: str, m: Measured | None, r2: float | None) -> None:
    if m is None:
        print(f"{rows:>10,} {name:<16} not run", flush=True)
        return
    r2_text = f"R2 {r2:.4f}" if r2 is not None else ""
    status = "" if m.ok else f"FAILED ({m.returncode})"
    print(
        f"{rows:>10,} {name:<16} {m.wall_s:8.1f} s {m.cpu_s:8.1f} CPU-s "
        f"{m.peak_tree_mb:7.0f} MB {r2_text} {status}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--quick", action="store_true", help="2,000 rows only (a smoke run)")
    parser.add_argument("--parquet", action="store_true", help="generated data as Parquet")
    parser.add_argument("--textbook-max-rows", type=int, default=200_000)
    parser.add_argument("--fast-max-rows", type=int, default=1_000_000)
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    parser.add_argument("--keep", type=Path, help="keep data, specs and logs in this folder")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--quality-md", type=Path, default=HERE / "quality.md")
    parser.add_argument("--render", type=Path, help="only rewrite --out from a figures.pickle")
    args = parser.parse_args()
    if args.render:
        inputs = pickle.loads(args.render.read_bytes())
        inputs.quality_md = args.quality_md
        args.out.write_text(report.render(inputs))
        print(f"wrote {args.out}")
        return
    rows = list(QUICK_ROWS) if args.quick else args.rows

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mallard-bench-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        start_figures = None if args.no_startup else startup(root / "startup")
        if start_figures:
            _startup_progress(start_figures)
        sizes = [run_size(n, root / f"rows-{n}", args) for n in rows]
        inputs = report.Inputs(
            quick=args.quick,
            startup=start_figures,
            sizes=sizes,
            load=(load_start, os.getloadavg()[0]),
            total_s=time.perf_counter() - started,
            quality_md=args.quality_md,
            argv=" ".join(sys.argv[1:]),
        )
        (root / "figures.pickle").write_bytes(pickle.dumps(inputs))  # for --render
    args.out.write_text(report.render(inputs))
    print(f"wrote {args.out}")


def _startup_progress(s: Startup) -> None:
    print(f"mallard --help median {statistics.median(m.wall_s for m in s.help):.2f} s", flush=True)
    print(f"import flows median {statistics.median(m.wall_s for m in s.imports):.2f} s", flush=True)
    if s.small:
        init_run = sum(m.wall_s for k, m in s.small.commands.items() if k != "score")
        print(f"500 rows init+run {init_run:.1f} s, R2 {s.small.r2}", flush=True)
    for key, m in s.commands.items():
        print(f"{key}: {m.wall_s:.1f} s, first step at {s.first_step[key]}", flush=True)


if __name__ == "__main__":
    main()

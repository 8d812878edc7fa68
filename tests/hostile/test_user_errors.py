"""User errors are never reported as bugs: each case exits 2 (3 for data), says so in ONE line
that names the spec key, file or value (no wrapped second line from a library), and leaves every
earlier run's rows byte-identical. Non-finite numbers are quarantined with the check named."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mallard.cli import app
from mallard.core.errors import SpecError
from mallard.core.spec import SchemaSection, parse_spec
from mallard.schemas.inline import build_schema
from mallard.tasks.families import check_candidates
from mallard.tasks.validate import FINITE_CHECK, quarantine_invalid
from tests.hostile.conftest import RUN_ID, dump

runner = CliRunner()

SPEC = """
[pipeline]
name = "hostile"
task = "{task}"
target = "{target}"
seed = 1

[source]
path = "data.csv"

[schema]
max_invalid_fraction = {max_invalid}

[schema.columns]
{columns}

[split]
test = 0.2
validation = 0.2

[cv]
folds = 2

{extra}

[[candidates]]
family = "{family}"
params = {{ {params} }}
"""
REGRESSION_COLUMNS = 'price = { dtype = "float", ge = 0 }\nlotsize = { dtype = "float", ge = 0 }'
CLASS_COLUMNS = 'label = { dtype = "str", isin = ["yes", "no"] }\nx1 = { dtype = "float" }'


def spec_text(
    *,
    task: str = "regression",
    family: str = "ridge",
    params: str = "alpha = [1.0]",
    columns: str | None = None,
    extra: str = "",
    max_invalid: float = 0.5,
) -> str:
    target = {"regression": "price", "classification": "label", "clustering": ""}[task]
    if columns is None:
        columns = REGRESSION_COLUMNS if task == "regression" else CLASS_COLUMNS
    text = SPEC.format(
        task=task,
        target=target,
        family=family,
        params=params,
        columns=columns,
        extra=extra,
        max_invalid=max_invalid,
    )
    return text.replace('target = ""\n', "") if task == "clustering" else text


def regression_rows(n: int = 80, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    lotsize = rng.uniform(1_000, 9_000, n).round(0)
    return pl.DataFrame(
        {
            "price": (20 * lotsize + rng.normal(0, 5_000, n)).round(0).astype(str),
            "lotsize": lotsize.astype(str),
            "garagepl": rng.integers(0, 3, n).astype(float).astype(str),  # not declared
        }
    )


def class_rows(n: int = 80, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    return pl.DataFrame({"label": np.where(x1 > 0, "yes", "no"), "x1": x1.astype(str)})


def write_case(folder: Path, text: str, rows: pl.DataFrame | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (rows if rows is not None else regression_rows()).write_csv(folder / "data.csv")
    spec = folder / "spec.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `mallard ARGS` in-process; returns the exit code and the error line (stderr's lines
    from the first `error:` on, which must be exactly one)."""
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        result = runner.invoke(app, list(args))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    err = result.stderr
    assert "Traceback" not in err + result.output, err
    assert "internal error" not in err and "This is a bug" not in err, err
    lines = err.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), len(lines))
    message = [line for line in lines[start:] if line.strip()]
    if result.exit_code:
        assert len(message) == 1, f"not one line: {message}"
        return result.exit_code, message[0]
    return 0, ""


def refused(code: int, line: str, expected_code: int, *phrases: str) -> None:
    assert code == expected_code, line
    for phrase in phrases:
        assert phrase in line, line


def rows_except(db: Path, new_runs: list[str]) -> dict[str, list[str]]:
    """Every ml table's rows that belong to no run of `new_runs` (by any text cell equal to the
    run id or starting with `run_id:`), as sorted reprs: what a later run must leave alone."""
    out: dict[str, list[str]] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ml'"
            ).fetchall()
        ]
        for name in sorted(names):
            rows = con.execute(f"SELECT * FROM ml.{name}").fetchall()
            out[name] = sorted(
                repr(row)
                for row in rows
                if not any(
                    isinstance(v, str) and (v in new_runs or v.split(":")[0] in new_runs)
                    for v in row
                )
            )
    return out


def new_run_ids(db: Path, before: set[str]) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        ids = {r[0] for r in con.execute("SELECT run_id FROM ml.runs").fetchall()}
    return sorted(ids - before)


# --- candidate parameters: checked against the estimator before any work -------------------

# (id, task, family, params, the key and words the message must name)
BAD_PARAMS: list[tuple[str, str, str, str, str]] = [
    ("ridge-negative-alpha", "regression", "ridge", "alpha = [-1.0]", "alpha"),
    ("ridge-alpha-text", "regression", "ridge", 'alpha = ["x"]', "alpha"),
    ("ridge-one-bad-of-three", "regression", "ridge", "alpha = [0.1, 1.0, -3.0]", "alpha"),
    ("lasso-negative-alpha", "regression", "lasso", "alpha = [-0.1]", "alpha"),
    ("elastic-l1-ratio-2", "regression", "elastic_net", "l1_ratio = [2.0]", "l1_ratio"),
    ("forest-n-estimators-text", "regression", "random_forest", 'n_estimators = ["x"]', "n_est"),
    ("forest-n-estimators-0", "regression", "random_forest", "n_estimators = [0]", "n_est"),
    ("forest-max-depth-0", "regression", "random_forest", "max_depth = [0]", "max_depth"),
    ("tree-max-depth-float", "regression", "decision_tree", "max_depth = [3.5]", "max_depth"),
    ("tree-leaf-0", "regression", "decision_tree", "min_samples_leaf = [0]", "min_samples"),
    ("tree-criterion-typo", "regression", "decision_tree", 'criterion = ["squared"]', "crit"),
    ("hgb-learning-rate-0", "regression", "hist_gradient_boosting", "learning_rate = [0]", "lea"),
    ("hgb-leaves-1", "regression", "hist_gradient_boosting", "max_leaf_nodes = [1]", "max_leaf"),
    ("gb-subsample-0", "regression", "gradient_boosting", "subsample = [0.0]", "subsample"),
    ("gb-loss-typo", "regression", "gradient_boosting", 'loss = ["squared"]', "loss"),
    ("ada-negative-rate", "regression", "adaboost", "learning_rate = [-1.0]", "learning_rate"),
    ("bagging-negative", "regression", "bagging", "n_estimators = [-1]", "n_estimators"),
    ("knn-neighbors-0", "regression", "knn", "n_neighbors = [0]", "n_neighbors"),
    ("knn-weights-typo", "regression", "knn", 'weights = ["uniformm"]', "weights"),
    ("svr-negative-c", "regression", "svm", "C = [-1.0]", "C"),
    ("mlp-negative-alpha", "regression", "mlp", "alpha = [-1.0]", "alpha"),
    ("mlp-activation-typo", "regression", "mlp", 'activation = ["rellu"]', "activation"),
    ("logistic-c-0", "classification", "logistic_regression", "C = [0.0]", "C"),
    (
        "logistic-class-weight",
        "classification",
        "logistic_regression",
        'class_weight = ["x"]',
        "cl",
    ),
    ("svc-kernel-typo", "classification", "svm", 'kernel = ["rbff"]', "kernel"),
    ("tree-gini-typo", "classification", "decision_tree", 'criterion = ["ginix"]', "criterion"),
    ("kmeans-0-clusters", "clustering", "kmeans", "n_clusters = [0]", "n_clusters"),
    ("agglomerative-linkage", "clustering", "agglomerative", 'linkage = ["wardd"]', "linkage"),
]


@pytest.mark.parametrize(
    ("task", "family", "params", "word"),
    [c[1:] for c in BAD_PARAMS],
    ids=[c[0] for c in BAD_PARAMS],
)
def test_out_of_range_candidate_parameter_fails_before_any_fit_naming_the_key(
    wh: Path, tmp_path: Path, task: str, family: str, params: str, word: str
) -> None:
    rows = class_rows() if task == "classification" else regression_rows()
    spec = write_case(tmp_path / "case", spec_text(task=task, family=family, params=params), rows)
    param = params.split(" = ")[0]
    before = dump(wh)

    # The spec alone is enough to refuse it: no data is read and nothing is fitted.
    with pytest.raises(SpecError) as caught:
        check_candidates(parse_spec(spec.read_text(), spec))
    code, line = cli("run", str(spec), "--warehouse", str(wh))

    assert f"[candidates[0].params.{param}]" in str(caught.value)
    refused(code, line, 2, f"[candidates[0].params.{param}]", word, "Change or remove")
    assert dump(wh) == before


def test_good_parameters_still_pass(tmp_path: Path) -> None:
    spec = write_case(tmp_path, spec_text(family="ridge", params="alpha = [0.001, 1.0, 1e3]"))
    check_candidates(parse_spec(spec.read_text(), spec))  # no error


# --- invalid regex in a schema column --------------------------------------------------------

BAD_REGEX = ["(yes", "[a-", "a{2,1}", "*", "(?<=a)b", "(?P<x>a)(?P=x)"]


@pytest.mark.parametrize("pattern", BAD_REGEX)
def test_invalid_regex_names_the_column_key(wh: Path, tmp_path: Path, pattern: str) -> None:
    columns = REGRESSION_COLUMNS + '\nstories = { dtype = "str", regex = ' + repr(pattern) + " }"
    columns = columns.replace("'", '"') if "'" not in pattern else columns
    spec = write_case(tmp_path, spec_text(columns=columns.replace("\\", "\\\\")))
    before = dump(wh)

    code, line = cli("run", str(spec), "--warehouse", str(wh))

    refused(code, line, 2, "[schema.columns.stories.regex]", "not a valid regular expression")
    assert dump(wh) == before


def test_a_valid_regex_builds() -> None:
    section = SchemaSection.model_validate({"columns": {"s": {"dtype": "str", "regex": "^y|n$"}}})
    assert "s" in build_schema(section, None).columns


# --- warehouse files that are not usable -----------------------------------------------------


def _truncated(wh: Path) -> None:
    wh.write_bytes(wh.read_bytes()[:100])


def _empty(wh: Path) -> None:
    wh.write_bytes(b"")


def _text(wh: Path) -> None:
    wh.write_text("run_id,status\nrun-1,succeeded\n")


def _bad_header(wh: Path) -> None:
    data = bytearray(wh.read_bytes())
    data[0:4096] = bytes(range(256)) * 16
    wh.write_bytes(bytes(data))


def _bad_block(wh: Path) -> None:
    data = bytearray(wh.read_bytes())
    data[5000:9000] = b"\xff" * 4000
    wh.write_bytes(bytes(data))


def _other_duckdb(wh: Path) -> None:
    wh.unlink()
    with duckdb.connect(str(wh)) as con:
        con.execute("CREATE TABLE sales AS SELECT 1 AS amount")


def _legacy(wh: Path) -> None:
    wh.unlink()
    with duckdb.connect(str(wh)) as con:
        con.execute("CREATE SCHEMA ml; CREATE TABLE ml.runs (run_id VARCHAR)")


def _newer(wh: Path) -> None:
    with duckdb.connect(str(wh)) as con:
        con.execute("INSERT INTO ml.schema_migrations (version, name) VALUES (999, 'future')")


def _folder(wh: Path) -> None:
    wh.unlink()
    wh.mkdir()


# (id, how to spoil the warehouse copy, phrase the read AND the write message must contain)
SPOILED: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated", _truncated, "damaged or truncated"),
    ("empty-file", _empty, "damaged or truncated"),
    ("text-file", _text, "damaged or truncated"),
    ("bad-header", _bad_header, "damaged or truncated"),
    ("bad-block", _bad_block, "damaged or truncated"),
    ("other-duckdb", _other_duckdb, "not a mallard warehouse (it holds main.sales"),
    ("legacy-layout", _legacy, "not a mallard warehouse"),
    ("newer-schema", _newer, "schema version 999, newer than this mallard knows"),
    ("folder", _folder, "is a folder"),
]


@pytest.mark.parametrize("command", ["runs", "leaderboard", "sql"])
@pytest.mark.parametrize(("spoil", "phrase"), [s[1:] for s in SPOILED], ids=[s[0] for s in SPOILED])
def test_unusable_warehouse_is_one_line_naming_the_file(
    wh: Path, command: str, spoil: Callable[[Path], None], phrase: str
) -> None:
    spoil(wh)
    before = sorted(p.name for p in wh.parent.iterdir())
    args = {"runs": ["runs"], "leaderboard": ["leaderboard", "housing"], "sql": ["sql", "SELECT 1"]}

    code, line = cli(*args[command], "--warehouse", str(wh))

    refused(code, line, 2, str(wh.name), phrase)
    assert sorted(p.name for p in wh.parent.iterdir()) == before


@pytest.mark.parametrize(("spoil", "phrase"), [s[1:] for s in SPOILED], ids=[s[0] for s in SPOILED])
def test_unusable_warehouse_is_never_written(
    wh: Path, spoil: Callable[[Path], None], phrase: str
) -> None:
    from mallard.core.errors import WarehouseError
    from mallard.warehouse.connection import connect

    spoil(wh)
    content = wh.read_bytes() if wh.is_file() else None

    with pytest.raises(WarehouseError) as caught, connect(wh):
        pass

    assert phrase in str(caught.value) and "\n" not in str(caught.value)
    assert (wh.read_bytes() if wh.is_file() else None) == content


def test_an_older_layout_that_does_not_migrate_says_incompatible(wh: Path) -> None:
    from mallard.core.errors import WarehouseError
    from mallard.warehouse.connection import connect

    with duckdb.connect(str(wh)) as con:  # version rows say 1, the tables say later
        con.execute("DELETE FROM ml.schema_migrations WHERE version > 1")
    with pytest.raises(WarehouseError) as caught, connect(wh):
        pass
    message = str(caught.value)
    assert "schema version 1" in message and "incompatible older layout" in message
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.runs").fetchone() == (1,)


def test_an_empty_duckdb_file_becomes_a_warehouse(tmp_path: Path) -> None:
    from mallard.warehouse.connection import connect

    db = tmp_path / "fresh.duckdb"
    duckdb.connect(str(db)).close()
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM ml.runs").fetchone() == (0,)


# --- MALLARD_LOCK_TIMEOUT ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "-5", "nan", "inf", "30s", "1,5"])
def test_bad_lock_timeout_is_one_line_naming_the_variable(wh: Path, value: str) -> None:
    before = dump(wh)

    code, line = cli("runs", "--warehouse", str(wh), env={"MALLARD_LOCK_TIMEOUT": value})

    refused(code, line, 2, f"MALLARD_LOCK_TIMEOUT='{value}'", "number of seconds")
    assert dump(wh) == before


@pytest.mark.parametrize("value", ["", "0", "2.5", " 7 "])
def test_good_lock_timeouts_work(wh: Path, value: str) -> None:
    code, line = cli("runs", "--warehouse", str(wh), env={"MALLARD_LOCK_TIMEOUT": value})
    assert code == 0, line


# --- output paths of report and snapshot -----------------------------------------------------


def _out_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "a-file").write_text("x")
    (tmp / "a-folder").mkdir()
    return {
        "report-into-folder": (["report", RUN_ID, "-o", str(tmp / "a-folder")], "is a folder"),
        "report-missing-folder": (["report", RUN_ID, "-o", str(tmp / "no" / "r.html")], "missing"),
        "report-under-a-file": (["report", RUN_ID, "-o", str(tmp / "a-file" / "r.html")], "a file"),
        "snapshot-into-folder": (["snapshot", str(tmp / "a-folder")], "is a folder"),
        "snapshot-missing-folder": (["snapshot", str(tmp / "no" / "s.duckdb")], "missing"),
        "snapshot-under-a-file": (["snapshot", str(tmp / "a-file" / "s.duckdb")], "a file"),
        "parquet-onto-a-file": (["snapshot", "--parquet", str(tmp / "a-file")], "not a folder"),
        "parquet-under-a-file": (["snapshot", "--parquet", str(tmp / "a-file" / "p")], "a file"),
    }


OUT_CASES = [
    "report-into-folder",
    "report-missing-folder",
    "report-under-a-file",
    "snapshot-into-folder",
    "snapshot-missing-folder",
    "snapshot-under-a-file",
    "parquet-onto-a-file",
    "parquet-under-a-file",
]


@pytest.mark.parametrize("case", OUT_CASES)
def test_output_path_that_cannot_be_a_file_is_refused_first(
    wh: Path, tmp_path: Path, case: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args, phrase = _out_cases(out)[case]
    before, files = dump(wh), sorted(p.name for p in out.rglob("*"))

    code, line = cli(*args, "--warehouse", str(wh))

    refused(code, line, 2, phrase)
    assert dump(wh) == before
    assert sorted(p.name for p in out.rglob("*")) == files


# --- non-finite numbers: quarantined with the check named (pure) ---------------------------

NON_FINITE = ["NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1e999"]


@pytest.mark.parametrize("column", ["price", "lotsize", "garagepl"])
@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_value_is_quarantined_as_finite(column: str, value: str) -> None:
    rows = regression_rows(10).with_row_index()
    rows = rows.with_columns(
        pl.when(pl.col("index") == 3).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    ).drop("index")
    rows = rows.with_columns(pl.col("garagepl").cast(pl.Float64, strict=False))  # undeclared
    section = SchemaSection.model_validate(
        {"columns": {"price": {"dtype": "float", "ge": 0}, "lotsize": {"dtype": "float"}}}
    )

    checked = quarantine_invalid(rows, build_schema(section, "price"))

    finite = checked.quarantine.filter(pl.col("check_name") == FINITE_CHECK)
    assert finite.select("row_index", "column_name").rows() == [(3, column)]
    shown = finite["failure_value"].item()  # as it came: declared columns arrive as text
    assert (
        shown.lower() == value.lower()
        if column != "garagepl"
        else float(shown) == float(value) or shown == "NaN"
    )
    assert checked.valid.height == 9
    assert checked.valid.select(pl.col(pl.Float64).is_finite().all()).row(0) == (True,) * 3


# --- flows: non-finite data, bad positive_class, empty results -------------------------------


def _spoil_rows(column: str, value: str, rows: list[int]) -> pl.DataFrame:
    frame = regression_rows().with_row_index()
    return frame.with_columns(
        pl.when(pl.col("index").is_in(rows))
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    ).drop("index")


@pytest.mark.parametrize(
    ("column", "value"),
    [("price", "inf"), ("price", "NaN"), ("lotsize", "1e400"), ("garagepl", "-inf")],
)
def test_run_quarantines_non_finite_values_and_succeeds(
    prefect_server: None, wh: Path, tmp_path: Path, column: str, value: str
) -> None:
    spec = write_case(tmp_path / "c", spec_text(), _spoil_rows(column, value, [3, 5]))
    before = rows_except(wh, [])

    code, line = cli("run", str(spec), "--warehouse", str(wh))

    assert code == 0, line
    new = new_run_ids(wh, {RUN_ID})
    assert len(new) == 1
    with duckdb.connect(str(wh), read_only=True) as con:
        found = con.execute(
            "SELECT row_index, column_name FROM ml.quarantine WHERE run_id = ? AND check_name = ?",
            [new[0], FINITE_CHECK],
        ).fetchall()
    assert sorted(found) == [(3, column), (5, column)]
    assert rows_except(wh, new) == before


def test_mostly_non_finite_data_fails_as_data_exit_3(
    prefect_server: None, wh: Path, tmp_path: Path
) -> None:
    spec = write_case(
        tmp_path / "c", spec_text(max_invalid=0.1), _spoil_rows("price", "inf", list(range(40)))
    )
    before = rows_except(wh, [])

    code, line = cli("run", str(spec), "--warehouse", str(wh))

    refused(code, line, 3, "failed the schema", "max_invalid_fraction", "ml.quarantine")
    assert rows_except(wh, new_run_ids(wh, {RUN_ID})) == before


@pytest.mark.parametrize("wanted", ["maybe", "YES", ""])
def test_unknown_positive_class_names_the_key(
    prefect_server: None, wh: Path, tmp_path: Path, wanted: str
) -> None:
    extra = f'[evaluate]\nprimary_metric = "f1"\npositive_class = "{wanted}"'
    text = spec_text(
        task="classification", family="logistic_regression", params="C = [1.0]", extra=extra
    )
    spec = write_case(tmp_path / "c", text, class_rows())
    before = rows_except(wh, [])

    code, line = cli("run", str(spec), "--warehouse", str(wh))

    refused(code, line, 2, "positive_class")
    assert rows_except(wh, new_run_ids(wh, {RUN_ID})) == before


@pytest.mark.parametrize(
    ("key", "sql"),
    [
        ("[features.sql]", ";"),
        ("[features.sql]", "-- nothing here"),
        ("[source.sql]", "/* only a comment */"),
        ("[source.sql]", ";;"),
    ],
)
def test_empty_query_names_its_key(
    prefect_server: None, wh: Path, tmp_path: Path, key: str, sql: str
) -> None:
    text = spec_text()
    if key == "[source.sql]":
        text = text.replace('path = "data.csv"', f"sql = {sql!r}")
    else:
        text = text.replace("[split]", f"[features]\nsql = {sql!r}\n\n[split]")
    spec = write_case(tmp_path / "c", text)
    before = rows_except(wh, [])

    code, line = cli("run", str(spec), "--warehouse", str(wh))

    refused(code, line, 2, key, "empty")
    assert rows_except(wh, new_run_ids(wh, {RUN_ID})) == before


def test_run_into_a_non_mallard_duckdb_file_leaves_it_alone(
    prefect_server: None, tmp_path: Path
) -> None:
    spec = write_case(tmp_path / "c", spec_text())
    other = tmp_path / "sales.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE sales AS SELECT 1 AS amount")
    content = other.read_bytes()

    code, line = cli("run", str(spec), "--warehouse", str(other))

    refused(code, line, 2, "not a mallard warehouse", "main.sales")
    assert other.read_bytes() == content
    shutil.rmtree(tmp_path / "c")


@pytest.mark.parametrize(
    ("option", "extra", "words"),
    [
        (["--dask", "tcp://127.0.0.1:9"], "", ("no Dask scheduler answers at tcp://127.0.0.1:9",)),
        (["--dask", "inproc://x"], "", ("must look like tcp://HOST:PORT",)),
        ([], '[train]\ndask = "tcp://127.0.0.1:9"', ("no Dask scheduler answers",)),
    ],
)
def test_an_unreachable_dask_scheduler_is_one_line_and_writes_nothing(
    prefect_server: None,
    wh: Path,
    tmp_path: Path,
    option: list[str],
    extra: str,
    words: tuple[str, ...],
) -> None:
    spec = write_case(tmp_path / "c", spec_text(extra=extra))
    before = rows_except(wh, [])

    code, line = cli("run", str(spec), "--warehouse", str(wh), *option)

    refused(code, line, 2, *words)
    assert new_run_ids(wh, {RUN_ID}) == []
    assert rows_except(wh, []) == before

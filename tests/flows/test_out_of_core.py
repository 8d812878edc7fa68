"""Data larger than memory (issue 13): ingest + validation + features.sql in DuckDB under a
memory limit give the same quarantine and valid rows as the in-memory (Polars) engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mallard import warehouse
from mallard.cli import app
from mallard.core.errors import InputError
from mallard.core.spec import SchemaSection, load_spec
from mallard.examples import housing
from mallard.schemas.inline import build_schema
from mallard.tasks.ingest import read_files
from mallard.tasks.validate import quarantine_invalid
from mallard.warehouse.features_sql import features_to_parquet
from mallard.warehouse.out_of_core import validated_files

runner = CliRunner()
KEY = ["row_index", "column_name", "check_name"]

PLANTED = SchemaSection.model_validate(
    {
        "columns": {
            "a": {"dtype": "float", "ge": 0, "lt": 10, "nullable": False},
            "b": {"dtype": "int", "gt": 1, "le": 500, "unique": True},
            "c": {"dtype": "str", "isin": ["x", "y", "3"]},
            "d": {"dtype": "str", "regex": r"^[A-Z]{2}\d$"},
            "e": {"dtype": "bool"},
            "f": {"dtype": "date"},
            "g": {"dtype": "datetime"},
        }
    }
)


def _planted_csv(path: Path) -> Path:
    """200 good rows, then one bad value of every kind the checks and casts catch."""
    good = pl.DataFrame(
        {
            "a": [f"{i % 9}.5" for i in range(200)],
            "b": [str(i + 2) for i in range(200)],
            "c": ["x", "y"] * 100,
            "d": ["AB1", "CD2"] * 100,
            "e": ["yes", " no ", "1", "False"] * 50,
            "f": ["2020-01-02"] * 200,
            "g": ["2020-01-02 10:00:00"] * 200,
            "h": [float(i) for i in range(200)],  # not declared: passes through, finite checked
        }
    )
    bad = pl.DataFrame(
        {
            "a": ["-1", "nan", "1e400", "abc", None, "10", " 3 ", "1", "2", "3", "4", "5"],
            "b": ["2", "3.5", "700", "x", "1", "3.0", "600", "7", "8", "9", "10", "11"],
            "c": ["z", "3", None, "x", "x", "x", "y", "q", "x", "x", "x", "x"],
            "d": ["ab1", "XY22", None, "CD3", "ZZ9", "AB1", "AB1", "AB1", "A", "AB1", "AB1", "AB1"],
            "e": ["maybe", "0", "Y", "no", "t", "f", "x", "yes", "no", "2", "yes", "no"],
            "f": ["2020-13-01", "x", None, "2021-02-03"] + ["2021-02-03"] * 8,
            "g": ["bad", "2020-01-02T10:00", "2020-01-02", None] + ["2020-01-02 00:00:00"] * 8,
            "h": [float("nan"), 1.0, float("inf"), 2.0] + [3.0] * 7 + [float("-inf")],
        }
    )
    pl.concat([good, bad]).write_csv(path)
    return path


def _polars_engine(path: Path, section: SchemaSection, target: str | None):
    schema = build_schema(section, target)
    typed = [name for name, column in schema.columns.items() if column.dtype is not None]
    return quarantine_invalid(read_files([path], typed).frame, schema), schema


def test_both_engines_give_the_same_quarantine_and_valid_rows(tmp_path: Path) -> None:
    path = _planted_csv(tmp_path / "planted.csv")
    expected, schema = _polars_engine(path, PLANTED, "a")

    with validated_files([path], schema, limit="64MB") as result:
        valid, positions = result.valid_frame()
        assert result.memory_limit == "64MB" and result.valid_path.exists()
        folder = result.folder
    assert not folder.exists()  # the temporary Parquet files are gone

    assert expected.quarantine.height > 30  # every kind of defect was planted
    assert result.quarantine.sort(KEY).equals(expected.quarantine.sort(KEY))
    assert result.n_rows == expected.n_rows == 212
    assert valid.equals(expected.valid)
    assert positions.equals(expected.valid_rows)
    assert set(result.quarantine["check_name"]) >= {
        "dtype('Float64')",
        "dtype('Int64')",
        "dtype('Boolean')",
        "dtype('Date')",
        "not_nullable",
        "finite",
        "greater_than_or_equal_to(0.0)",
        "less_than(10.0)",
        "greater_than(1.0)",
        "less_than_or_equal_to(500.0)",
        "isin(['x', 'y', '3'])",
        r"str_matches('^[A-Z]{2}\d$')",
        "field_uniqueness",
    }


def test_both_engines_agree_on_generated_housing_and_parquet(tmp_path: Path) -> None:
    spec = load_spec(Path(__file__).parents[2] / "pipelines" / "housing.toml")
    csv = tmp_path / "housing.csv"
    housing(3_000, seed=3, invalid_fraction=0.05).write_csv(csv)
    expected, schema = _polars_engine(csv, spec.schema_, "price")
    parquet = tmp_path / "housing.parquet"
    pl.read_csv(csv, infer_schema_length=0).write_parquet(parquet)  # text columns, as exported

    for path in (csv, parquet):
        with validated_files([path], schema, limit="64MB", drop=["airco"]) as result:
            valid, positions = result.valid_frame()
        assert result.quarantine.sort(KEY).equals(expected.quarantine.sort(KEY)), path
        assert positions.equals(expected.valid_rows)
        assert "airco" not in valid.columns
        assert result.n_valid == expected.valid.height == 3_000 - 150


def test_missing_columns_and_unknown_checks_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    pl.DataFrame({"a": ["1", "2"]}).write_csv(path)
    schema = build_schema(SchemaSection.model_validate({"columns": {}}), "price")
    missing = validated_files([path], schema)
    with pytest.raises(InputError, match="column\\(s\\) price named in the schema are missing"):
        missing.__enter__()
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n", encoding="utf-8")
    no_rows = validated_files([empty], build_schema(SchemaSection(), None))
    with pytest.raises(InputError, match="has a header but no data rows"):
        no_rows.__enter__()


def test_features_sql_runs_on_the_valid_parquet_and_may_only_read(tmp_path: Path) -> None:
    path = _planted_csv(tmp_path / "planted.csv")
    _, schema = _polars_engine(path, PLANTED, "a")
    with validated_files([path], schema, limit="64MB") as result:
        out = result.folder / "features.parquet"
        sql = (
            "SELECT *, a * b AS ab, avg(a) OVER (PARTITION BY c ORDER BY b) AS running FROM source"
        )
        n = features_to_parquet(result.valid_path, sql, out, limit="64MB")
        frame = pl.read_parquet(out)
        assert n == frame.height == result.n_valid
        assert {"ab", "running"} <= set(frame.columns)
        # The window groups rows by c: they come back in input order, each with its position.
        valid, positions = result.valid_frame()
        assert frame["row_index"].to_list() == positions.to_list()
        assert frame["a"].equals(valid["a"])
        n = features_to_parquet(
            result.valid_path, "SELECT a * b AS ab FROM source WHERE a > 0", out, limit="64MB"
        )
        assert "row_index" not in pl.read_parquet(out).columns  # kept order, no key asked for
        with pytest.raises(InputError, match=r"the query reorders rows .* does not keep"):
            features_to_parquet(
                result.valid_path, "SELECT a FROM source ORDER BY b", out, limit="64MB"
            )
        with pytest.raises(InputError, match=r"\[features.sql\] the query tried to copy"):
            features_to_parquet(
                result.valid_path, f"COPY source TO '{tmp_path / 'x.csv'}'", out, limit="64MB"
            )
        with pytest.raises(InputError, match=r"\[features.sql\] the query tried to read"):
            features_to_parquet(
                result.valid_path, f"SELECT * FROM read_csv('{path}')", out, limit="64MB"
            )


@pytest.mark.usefixtures("prefect_server")
def test_validate_flow_with_the_duckdb_engine_stores_the_same_quarantine(
    housing_spec: Path, tmp_path: Path
) -> None:
    counts = {}
    for engine in ("polars", "duckdb"):
        spec = housing_spec.with_name(f"housing_{engine}.toml")
        spec.write_text(
            housing_spec.read_text(encoding="utf-8")
            + f'\n[ingest]\nengine = "{engine}"\nmemory_limit = "64MB"\n',
            encoding="utf-8",
        )
        db = tmp_path / f"{engine}.duckdb"
        result = runner.invoke(app, ["validate", str(spec), "--warehouse", str(db)])
        assert result.exit_code == 0, result.output
        run = warehouse.query(db, "SELECT run_id, n_rows, n_invalid, ingest_engine FROM ml.runs")
        assert run["ingest_engine"].item() == engine
        quarantine = warehouse.query(
            db,
            "SELECT row_index, column_name, check_name, failure_value FROM ml.quarantine "
            "ORDER BY ALL",
        )
        counts[engine] = (run["n_rows"].item(), run["n_invalid"].item(), quarantine)
    assert counts["polars"][:2] == counts["duckdb"][:2]
    assert counts["polars"][2].equals(counts["duckdb"][2])


# A 1.6 GB / 10M-row file took 31 s + 30 s here at memory_limit 1GB; this one is ~10x smaller
# at a 16x smaller limit, so the whole test stays within a minute or two on 2 shared cores.
ROWS_PER_CHUNK = 200_000
CHUNKS = 20  # 4M rows, ~180 MB of CSV
OUT_OF_CORE_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from mallard.core.spec import load_spec
    from mallard.schemas.inline import build_schema
    from mallard.warehouse.features_sql import features_to_parquet
    from mallard.warehouse.out_of_core import validated_files

    spec_path, csv, limit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    spec = load_spec(spec_path)
    schema = build_schema(spec.schema_, spec.target)
    sql = (
        "SELECT *, price / lotsize AS price_per_area, "
        "avg(price) OVER (PARTITION BY bedrooms ORDER BY lotsize "
        "ROWS BETWEEN 100 PRECEDING AND CURRENT ROW) AS local_price FROM source"
    )
    start = time.perf_counter()
    with validated_files([csv], schema, limit=limit, threads=2) as result:
        validated = time.perf_counter()
        out = result.folder / "features.parquet"
        n_features = features_to_parquet(result.valid_path, sql, out, limit=limit, threads=2)
        done = time.perf_counter()
        by_check = result.quarantine.group_by("column_name", "check_name").len()
        print(json.dumps({
            "n_rows": result.n_rows,
            "n_valid": result.n_valid,
            "n_invalid": result.quarantine["row_index"].n_unique(),
            "by_check": {f"{c}: {k}": n for c, k, n in by_check.iter_rows()},
            "n_features": n_features,
            "validate_s": round(validated - start, 1),
            "features_s": round(done - validated, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }))
    """
)


@pytest.mark.slow
def test_a_file_larger_than_the_memory_limit_validates_and_builds_features(
    tmp_path: Path,
) -> None:
    """~180 MB of CSV under memory_limit "96MB" (64 MB was enough while yes/no columns were typed
    as booleans; as text, as Polars types them, the window query needs more), in a child
    process so its peak RSS is the
    out-of-core path's own. The file is written in chunks, so this process never holds it."""
    spec = Path(__file__).parents[2] / "pipelines" / "housing.toml"
    csv = tmp_path / "big.csv"
    expected_invalid = 0
    with csv.open("wb") as handle:
        for chunk in range(CHUNKS):
            frame = housing(ROWS_PER_CHUNK, seed=100 + chunk, invalid_fraction=0.01)
            frame.write_csv(handle, include_header=chunk == 0)
            expected_invalid += round(ROWS_PER_CHUNK * 0.01)  # one planted defect per bad row
    size_mb = csv.stat().st_size / 1e6
    assert size_mb > 150

    child = subprocess.run(
        [sys.executable, "-c", OUT_OF_CORE_SCRIPT, str(spec), str(csv), "96MB"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        # glibc's per-thread arenas keep freed memory: peak RSS varied 300-475 MB without this
        env={**os.environ, "MALLOC_ARENA_MAX": "2"},
    )
    assert child.returncode == 0, child.stderr[-3000:]
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"\n{size_mb:.0f} MB CSV, memory_limit 96MB: {figures}")

    n_rows = ROWS_PER_CHUNK * CHUNKS
    assert figures["n_rows"] == n_rows
    assert figures["n_invalid"] == expected_invalid
    assert figures["n_valid"] == figures["n_features"] == n_rows - expected_invalid
    # the five defects of mallard.examples.housing, in turn
    assert figures["by_check"] == {
        "lotsize: greater_than_or_equal_to(0.0)": expected_invalid // 5,
        "bedrooms: less_than_or_equal_to(20.0)": expected_invalid // 5,
        "driveway: isin(['yes', 'no'])": expected_invalid // 5,
        "price: not_nullable": expected_invalid // 5,
        "lotsize: dtype('Float64')": expected_invalid // 5,
    }
    # ~190 MB of it is Python + Polars + pandera + DuckDB imported. memory_limit bounds DuckDB's
    # buffer manager, not the CSV reader's and Parquet writer's own buffers: measured 300-720 MB.
    assert figures["peak_rss_mb"] < 1_000


def test_auto_engine_weighs_parquet_by_its_uncompressed_size(tmp_path: Path) -> None:
    """Parquet compresses a table several times over: the size rule reads the footer's
    uncompressed bytes, so a small file of many rows still goes out of core."""
    from mallard.core.spec import parse_spec
    from mallard.flows.out_of_core import ingest_engine
    from mallard.warehouse.features_sql import input_bytes

    repetitive = pl.DataFrame({"price": [1.0, 2.0] * 200_000, "city": ["a", "b"] * 200_000})
    parquet = tmp_path / "rows.parquet"
    repetitive.write_parquet(parquet)
    csv = tmp_path / "rows.csv"
    repetitive.head(1000).write_csv(csv)
    uncompressed = input_bytes([parquet])
    assert uncompressed > 3 * parquet.stat().st_size
    assert input_bytes([csv]) == csv.stat().st_size
    between = (parquet.stat().st_size + uncompressed) / 2 / 1e6
    spec = parse_spec(
        '[pipeline]\nname = "p"\ntask = "regression"\ntarget = "price"\n'
        f'[source]\npath = "rows.parquet"\n[ingest]\nduckdb_above_mb = {between}\n'
        '[[candidates]]\nfamily = "ridge"\n',
        tmp_path / "spec.toml",
    )
    assert ingest_engine(spec, None) == "duckdb"
    assert ingest_engine(spec, [csv]) == "polars"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert input_bytes([broken]) == len(b"not parquet at all")  # the reader reports it later
    # One call for a glob's files: each counted its own way, a broken one by its size.
    together = input_bytes([broken, parquet, csv])  # a failed footer read first
    assert together == uncompressed + csv.stat().st_size + len(b"not parquet at all")

"""Scoring in batches (issue 13): with the duckdb engine the valid rows are read from disk a
batch at a time, and the scored file, ml.predictions and ml.drift equal the in-memory path's for
the same input; a failure in the middle leaves nothing half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.core.spec import SchemaSection, load_spec
from mallard.examples import housing, spec_text, write_housing_csv
from mallard.flows.score import ScoreResult, score
from mallard.flows.score_stream import BATCH_ROWS_ENV, SCORE_BATCH_ROWS, batch_rows
from mallard.flows.train import train
from mallard.schemas.inline import build_schema
from mallard.tasks.ingest import read_files
from mallard.tasks.privacy import SALT_ENV
from mallard.tasks.validate import quarantine_invalid
from mallard.warehouse.out_of_core import TEMP_DIR_ENV, validated_files
from tests.conftest import FAST_CANDIDATES
from tests.flows.test_trust import PLANTED, SPEC, every_text_in_the_warehouse, loans

# Row-wise features.sql, so the champion's features are built per batch as on the whole file;
# `ancient` is 0 on every training row and infinite for a house built before 1000, which
# features.sql refuses: a batch holding such a row fails in the middle of the stream.
FEATURES_SQL = (
    "SELECT *, lotsize / (bedrooms + 1) AS lot_per_room, "
    "CASE WHEN year_built < 1000 THEN 'inf'::DOUBLE ELSE 0.0 END AS ancient FROM source"
)


def with_engine(spec: Path, engine: str) -> Path:
    """The spec beside it with `[ingest] engine` set (memory_limit small for duckdb)."""
    copy = spec.with_name(f"{spec.stem}_{engine}.toml")
    copy.write_text(
        spec.read_text(encoding="utf-8")
        + f'\n[ingest]\nengine = "{engine}"\nmemory_limit = "64MB"\n',
        encoding="utf-8",
    )
    return copy


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> tuple[Path, Path]:
    """(spec, warehouse) of a housing champion trained with FEATURES_SQL on 1,500 rows."""
    folder = tmp_path_factory.mktemp("stream")
    write_housing_csv(folder / "data" / "housing.csv", rows=1500, seed=7)
    text = spec_text()
    text = text[: text.index("[[candidates]]")] + FAST_CANDIDATES
    text = text.replace("folds = 5", "folds = 3").replace('sql = ""', f'sql = "{FEATURES_SQL}"')
    spec = folder / "housing.toml"
    spec.write_text(text, encoding="utf-8")
    db = folder / "warehouse.duckdb"
    assert train(spec, db).promoted
    return spec, db


def copy_of(db: Path, name: str, folder: Path) -> Path:
    copy = folder / f"{name}.duckdb"
    shutil.copy(db, copy)
    return copy


def stored(db: Path, table: str, run_id: str) -> pl.DataFrame:
    frame = warehouse.query_params(
        db, f"SELECT * FROM ml.{table} WHERE run_id = ? ORDER BY ALL", [run_id]
    )
    return frame.drop("run_id")


def score_with(
    engine: str, spec: Path, db: Path, rows: Path, out: Path, folder: Path
) -> tuple[ScoreResult, Path]:
    wh = copy_of(db, engine, folder)
    result = score(with_engine(spec, engine), str(rows), wh, output=out)
    assert isinstance(result, ScoreResult)
    return result, wh


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streaming_and_in_memory_scoring_give_the_same_results(
    champion: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    spec, db = champion
    shutil.copytree(spec.parent / "data", tmp_path / "data")
    spec = shutil.copy(spec, tmp_path / "housing.toml")
    rows = tmp_path / "new.csv"
    housing(1000, seed=11, invalid_fraction=0.03).drop("price").write_csv(rows)
    monkeypatch.setenv(BATCH_ROWS_ENV, "128")  # 8 batches, the last one short
    monkeypatch.setenv(TEMP_DIR_ENV, str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    memory, memory_db = score_with("polars", spec, db, rows, tmp_path / f"memory{suffix}", tmp_path)
    streamed, streamed_db = score_with(
        "duckdb", spec, db, rows, tmp_path / f"streamed{suffix}", tmp_path
    )

    assert warehouse.run_record(streamed_db, streamed.run_id)["ingest_engine"] == "duckdb"  # type: ignore[index]
    assert warehouse.run_record(memory_db, memory.run_id)["ingest_engine"] == "polars"  # type: ignore[index]
    assert (streamed.n_rows, streamed.n_invalid, streamed.n_scored) == (
        memory.n_rows,
        memory.n_invalid,
        memory.n_scored,
    )
    assert 0 < memory.n_invalid < 60 and memory.n_scored == 1000 - memory.n_invalid
    if suffix == ".csv":  # the same bytes, header once
        assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    written = pl.read_parquet(tmp_path / "streamed.parquet") if suffix == ".parquet" else None
    if written is not None:
        assert written.equals(pl.read_parquet(tmp_path / "memory.parquet"))
        assert written["row_index"].is_sorted() and written.height == memory.n_scored
    for table in ("predictions", "drift", "quarantine"):
        assert stored(streamed_db, table, streamed.run_id).equals(
            stored(memory_db, table, memory.run_id)
        ), table
    assert stored(streamed_db, "predictions", streamed.run_id).height == memory.n_scored
    assert streamed.drift.equals(memory.drift)
    assert not list(tmp_path.glob(".*.partial"))
    assert not list((tmp_path / "tmp").iterdir())  # the temporary Parquet files are gone


def test_batches_smaller_than_the_file_yield_every_row_once_in_input_order(
    champion: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, db = champion
    rows = tmp_path / "new.csv"
    frame = housing(700, seed=12, invalid_fraction=0.02).drop("price")
    frame.write_csv(rows)
    monkeypatch.setenv(BATCH_ROWS_ENV, "64")
    out = tmp_path / "scored.parquet"

    result, wh = score_with("duckdb", spec, db, rows, out, tmp_path)

    quarantined = set(stored(wh, "quarantine", result.run_id)["row_index"])
    valid = [i for i in range(frame.height) if i not in quarantined]
    assert 0 < len(quarantined) < 30
    written = pl.read_parquet(out)
    assert written["row_index"].to_list() == valid  # each valid row once, in input order
    predictions = warehouse.query_params(
        wh, "SELECT row_index FROM ml.predictions WHERE run_id = ?", [result.run_id]
    )
    assert sorted(predictions["row_index"]) == valid
    assert result.n_scored == len(valid) and result.n_rows == frame.height


def test_valid_rows_on_disk_come_back_in_batches_in_order(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    pl.DataFrame({"a": [str(i) if i % 10 else "bad" for i in range(100)], "b": "x"}).write_csv(path)
    schema = build_schema(SchemaSection.model_validate({"columns": {"a": {"dtype": "int"}}}), None)
    with validated_files([path], schema, limit="64MB") as result:
        whole, positions = result.valid_frame()
        batches = list(result.valid_batches(7))
        with pytest.raises(ValueError, match="at least one row"):
            next(result.valid_batches(0))
    assert result.n_valid == 90
    assert [len(part) for part, _ in batches] == [7] * 12 + [6]
    assert pl.concat([part for part, _ in batches]).equals(whole)
    assert pl.concat([index for _, index in batches]).equals(positions)


def test_a_failure_in_the_middle_of_the_stream_leaves_nothing_half_written(
    champion: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, db = champion
    rows = tmp_path / "new.csv"
    frame = housing(1000, seed=13, invalid_fraction=0.0).drop("price")
    # row 900 is in the last of 4 batches: the first three were scored and staged
    year_built = pl.when(pl.int_range(pl.len()) == 900).then(pl.lit("5"))
    frame.with_columns(year_built.otherwise(pl.col("year_built")).alias("year_built")).write_csv(
        rows
    )
    monkeypatch.setenv(BATCH_ROWS_ENV, "300")
    monkeypatch.setenv(TEMP_DIR_ENV, str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    wh = copy_of(db, "failing", tmp_path)
    out = tmp_path / "out" / "scored.parquet"

    with pytest.raises(InputError, match=r"infinite values in ancient \(1 rows\)"):
        score(with_engine(spec, "duckdb"), str(rows), wh, output=out)

    assert not out.exists() and not list(out.parent.glob(".*"))  # no scored file, no partial
    [run] = warehouse.query(wh, "SELECT * FROM ml.runs WHERE flow = 'score'").to_dicts()
    assert run["status"] == "failed" and "infinite values" in run["error"]
    assert (run["n_rows"], run["n_invalid"], run["ingest_engine"]) == (1000, 0, "duckdb")
    counts = warehouse.table_counts(wh, run["run_id"])
    assert counts["predictions"] == counts["drift"] == 0
    total = warehouse.query(wh, "SELECT count(*) FROM ml.predictions WHERE split IS NULL").item()
    assert total == 0  # no score run's prediction rows at all
    assert not list((tmp_path / "tmp").iterdir())


def test_pii_is_protected_in_every_batch(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """The loans spec (hash, drop and generalise policies) scored in batches of 16: no raw
    value anywhere, and the same scored file and predictions as the in-memory engine."""
    monkeypatch.setenv(SALT_ENV, "test-salt")
    loans(300, seed=1).write_csv(tmp_path / "loans.csv")
    loans(80, seed=2).drop("default").write_csv(tmp_path / "new.csv")
    spec = tmp_path / "loans.toml"
    spec.write_text(
        SPEC.replace('[source]\npath = "loans.csv"', '[source]\nid = "email"\npath = "loans.csv"')
    )
    train(spec, db)
    monkeypatch.setenv(BATCH_ROWS_ENV, "16")

    results = {}
    for engine in ("polars", "duckdb"):
        wh = copy_of(db, engine, tmp_path)
        out = tmp_path / f"{engine}.parquet"
        result = score(with_engine(spec, engine), str(tmp_path / "new.csv"), wh, output=out)
        assert isinstance(result, ScoreResult)
        text = every_text_in_the_warehouse(wh) + pl.read_parquet(out).write_csv()
        for column, raw in PLANTED.items():
            assert raw not in text, f"raw {column} found with the {engine} engine"
        results[engine] = (pl.read_parquet(out), stored(wh, "predictions", result.run_id))
        quarantine = stored(wh, "quarantine", result.run_id)
        assert "<pii:redacted>" in quarantine["failure_value"].to_list()
    # Batches of 16 rows against one call of 80: the same to the last bit or two (BLAS kernels
    # may sum a row's products in an order that depends on the batch's shape).
    for duckdb_frame, polars_frame in zip(results["duckdb"], results["polars"], strict=True):
        assert_frame_equal(
            duckdb_frame, polars_frame, check_exact=False, rel_tol=1e-12, abs_tol=1e-15
        )
    assert results["duckdb"][0]["email"].str.len_chars().to_list() == [64] * 81  # HMAC hex


def test_batch_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BATCH_ROWS_ENV, raising=False)
    assert batch_rows() == SCORE_BATCH_ROWS == 100_000
    monkeypatch.setenv(BATCH_ROWS_ENV, " 5000 ")
    assert batch_rows() == 5000
    for bad in ("0", "-3", "1e5", "many"):
        monkeypatch.setenv(BATCH_ROWS_ENV, bad)
        with pytest.raises(InputError, match=BATCH_ROWS_ENV):
            batch_rows()


def test_undeclared_csv_columns_are_typed_as_the_polars_engine_types_them(tmp_path: Path) -> None:
    """yes/no stays text (DuckDB's own detection would make it boolean and the champion, trained
    on text, would meet categories it never saw); true/false in any case is Boolean."""
    path = tmp_path / "new.csv"
    housing(500, seed=4, invalid_fraction=0.02).drop("price").with_columns(
        flag=pl.Series(["True", "false", None, "TRUE"] * 125),
        code=pl.Series(["t", "f"] * 250),
    ).write_csv(path)
    shipped = load_spec(Path(__file__).parents[2] / "pipelines" / "housing.toml")
    schema = build_schema(shipped.schema_, "price", target_optional=True)
    typed = [name for name, column in schema.columns.items() if column.dtype is not None]
    expected = quarantine_invalid(read_files([path], typed).frame, schema)
    with validated_files([path], schema, limit="64MB") as result:
        valid, positions = result.valid_frame()
    assert valid.schema["airco"] == pl.String and valid.schema["flag"] == pl.Boolean
    assert valid.schema["code"] == pl.String
    assert valid.equals(expected.valid) and positions.equals(expected.valid_rows)


# --- a file larger than DuckDB's memory limit, scored by `mallard score` in a child process ----

ROWS_PER_CHUNK = 200_000
CHUNKS = 30  # 6M rows, ~220 MB of CSV
# Runs a command as its only child and reports that child's peak RSS (kB) on the last line
# of stderr, so the figure is the scoring process's own, not this test session's.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print('peak_rss_kb', peak, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


@pytest.mark.slow
def test_mallard_score_streams_a_file_larger_than_the_memory_limit(
    champion: tuple[Path, Path], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    spec, db = champion
    big = tmp_path / "big.csv"
    in_memory_bytes = 0  # the rows as a Polars frame, as the in-memory engine first reads them
    with big.open("wb") as handle:
        for chunk in range(CHUNKS):
            frame = housing(ROWS_PER_CHUNK, seed=200 + chunk, invalid_fraction=0.01).drop("price")
            text = frame.write_csv(include_header=chunk == 0).encode()
            handle.write(text)
            declared = dict.fromkeys(["lotsize", "bedrooms", "driveway"], pl.String)  # read as text
            as_read = pl.read_csv(frame.write_csv().encode(), schema_overrides=declared)
            in_memory_bytes += as_read.estimated_size()
    size_mb = big.stat().st_size / 1e6
    assert size_mb > 200  # over three times the 64MB memory_limit
    wh = copy_of(db, "big", tmp_path)
    out = tmp_path / "scored.parquet"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    env.pop(BATCH_ROWS_ENV, None)  # the shipped batch size
    env["MALLOC_ARENA_MAX"] = "2"  # glibc's per-thread arenas would keep freed memory
    env[TEMP_DIR_ENV] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    command = [sys.executable, "-m", "mallard.cli", "score", str(with_engine(spec, "duckdb"))]
    command += [str(big), "-o", str(out), "-w", str(wh)]

    child = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    peak_mb = int(child.stderr.strip().splitlines()[-1].split()[-1]) / 1024
    print(
        f"\n{size_mb:.0f} MB CSV, {CHUNKS * ROWS_PER_CHUNK:,} rows, {in_memory_bytes / 1e6:.0f} MB "
        f"as a frame; memory_limit 64MB, batches of {SCORE_BATCH_ROWS:,}: peak RSS {peak_mb:.0f} MB"
    )

    [run] = warehouse.query(wh, "SELECT * FROM ml.runs WHERE flow = 'score'").to_dicts()
    assert run["status"] == "succeeded" and run["ingest_engine"] == "duckdb"
    n_valid = run["n_rows"] - run["n_invalid"]
    assert run["n_rows"] == CHUNKS * ROWS_PER_CHUNK and 0 < run["n_invalid"] < run["n_rows"] / 50
    assert warehouse.table_counts(wh, run["run_id"])["predictions"] == n_valid
    written = pl.scan_parquet(out)
    assert written.select(pl.len()).collect().item() == n_valid
    assert written.select(pl.col("row_index").is_sorted()).collect().item()  # input order
    assert not list(tmp_path.glob(".*.partial")) and not list((tmp_path / "tmp").iterdir())
    # On this file the in-memory engine peaked at 7.1 GB here (rows, cast copies, features,
    # predictions and the scored frame at once); streaming at ~750-800 MB, ~300 MB of it imports
    # and ~450 MB by the end of DuckDB's validation. The bound is the batch, not the file.
    assert peak_mb < 1_200, (peak_mb, in_memory_bytes / 1e6)

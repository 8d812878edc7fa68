"""`mallard sql` as an analyst types it: DuckDB's box renderer at the terminal's width, BLOBs as
their size, a row limit with "N more rows", exports of every column type, and SHOW TABLES.

(In tests/ beside test_cli.py: a tests/cli/ package would shadow the tests/cli.py helper.)
"""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from mallard import warehouse
from mallard.cli import app
from mallard.cli import output as cli_output
from mallard.warehouse import write_run
from mallard.warehouse.connection import connect
from mallard.warehouse.sql_render import render_query
from tests.warehouse.test_writes import bundle

BLOB_BYTES = 2_100_000
N_MODELS = 26

runner = CliRunner()


def mallard_raw(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def models_db(db: Path) -> Path:
    """A warehouse whose ml.models holds 26 models of 2.1 MB each (55 MB of BLOBs)."""
    write_run(db, bundle())
    with connect(db) as con:
        con.execute(
            """
            INSERT INTO ml.models (model_id, run_id, pipeline, candidate, family, params,
                created_at, skops_blob, size_bytes, sha256, trusted_types, feature_names)
            SELECT 'run-1:m' || lpad(i::VARCHAR, 2, '0'), 'run-1', 'housing', 'm' || i, 'ridge',
                '{"alpha": 1.5}', TIMESTAMPTZ '2026-12-01 10:00:00+00',
                ('\\x00\\xFF' || repeat('a', ? - 2))::BLOB, ?, 'ab', '[]', '["x"]'
            FROM range(?) AS t(i)
            """,
            [BLOB_BYTES, BLOB_BYTES, N_MODELS],
        )
    return db


def test_select_star_on_models_prints_blobs_as_their_size(models_db: Path) -> None:
    result = mallard_raw(
        "sql", "SELECT model_id, skops_blob, size_bytes FROM ml.models", "-w", str(models_db)
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("┌") and "│ model_id" in lines[1]
    assert "<blob 2.1 MB>" in result.output
    assert "\\x00" not in result.output and "aaaa" not in result.output


def test_display_never_brings_the_blobs_into_python(models_db: Path) -> None:
    tracemalloc.start()
    try:
        drawn = render_query(models_db, "SELECT * FROM ml.models", max_width=400, max_rows=40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert drawn.count("<blob 2.1 MB>") == N_MODELS
    assert peak < 8_000_000  # 26 x 2.1 MB of BLOBs never became Python bytes


def test_a_wide_result_fits_the_terminal(models_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_output.console, "width", 80)

    result = mallard_raw("sql", "SELECT * FROM ml.models", "-w", str(models_db))

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    n_columns = warehouse.query(models_db, "SELECT * FROM ml.models LIMIT 0").width
    assert f"{n_columns} columns" in result.output  # DuckDB says how many it could show


def test_rows_beyond_the_limit_are_counted(models_db: Path) -> None:
    result = mallard_raw("sql", "SELECT * FROM ml.models", "--max-rows", "5", "-w", str(models_db))

    assert result.exit_code == 0, result.output
    assert f"{N_MODELS - 5} more rows" in result.output
    assert "run-1:m04" in result.output and "run-1:m05" not in result.output


def test_a_short_result_has_no_more_rows_line(models_db: Path) -> None:
    drawn = render_query(models_db, "SELECT 1 AS one", max_width=80, max_rows=5)
    assert "more row" not in drawn
    assert re.search(r"│\s+1 │", drawn)


def test_show_tables_lists_the_ml_tables(models_db: Path) -> None:
    result = mallard_raw("sql", "SHOW TABLES", "-w", str(models_db))

    assert result.exit_code == 0, result.output
    for name in ("runs", "models", "leaderboard", "run_summary", "metrics"):
        assert f"│ {name} " in result.output
    unqualified = mallard_raw("sql", "SELECT count(*) AS n FROM runs", "-w", str(models_db))
    assert unqualified.exit_code == 0
    assert re.search(r"│\s+1 │", unqualified.output)


def test_csv_writes_blob_columns_as_hex_with_a_note(models_db: Path) -> None:
    result = mallard_raw(
        "sql", "SELECT model_id, skops_blob, params FROM ml.models ORDER BY model_id LIMIT 2",
        "--format", "csv", "-w", str(models_db),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    frame = pl.read_csv(result.stdout.encode())
    assert frame.columns == ["model_id", "skops_blob", "params"]
    assert frame.height == 2
    blob = frame["skops_blob"][0]
    assert blob.startswith("00FF6161") and len(blob) == 2 * BLOB_BYTES
    assert json.loads(frame["params"][0]) == {"alpha": 1.5}
    assert "BLOB columns written as hex: skops_blob" in result.stderr


def test_json_writes_every_type(models_db: Path) -> None:
    sql = (
        "SELECT model_id, skops_blob[1:2] AS head, params, size_bytes, 1.25::DECIMAL(5, 2) AS d, "
        "[1, 2] AS l, {'k': 'v'} AS s, INTERVAL 1 DAY AS i, created_at, NULL AS nothing "
        "FROM ml.models ORDER BY model_id LIMIT 3"
    )

    result = mallard_raw("sql", sql, "--format", "json", "-w", str(models_db))

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    first = rows[0]
    assert first["model_id"] == "run-1:m00"
    assert first["head"] == "00FF"
    assert first["params"] == {"alpha": 1.5}  # JSON columns stay JSON
    assert first["size_bytes"] == BLOB_BYTES and first["d"] == 1.25
    assert first["l"] == [1, 2] and first["s"] == {"k": "v"}
    assert first["created_at"].startswith("2026-12-01") and first["nothing"] is None


def test_parquet_keeps_blobs_and_needs_an_output_file(models_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "models.parquet"

    result = mallard_raw(
        "sql", "SELECT *, INTERVAL 2 HOURS AS took FROM ml.models",
        "--format", "parquet", "--output", str(out), "-w", str(models_db),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.height == N_MODELS
    assert frame.schema["skops_blob"] == pl.Binary
    assert frame["skops_blob"].bin.size().to_list() == [BLOB_BYTES] * N_MODELS
    assert frame["took"][0] == "02:00:00"  # Parquet has no interval: text, with a note
    assert "took" in result.stderr

    missing = mallard_raw("sql", "SELECT 1", "--format", "parquet", "-w", str(models_db))
    assert missing.exit_code == 2
    assert "--output" in missing.stderr


def test_csv_and_json_can_go_to_a_file(models_db: Path, tmp_path: Path) -> None:
    for fmt in ("csv", "json"):
        out = tmp_path / f"runs.{fmt}"
        result = mallard_raw(
            "sql", "SELECT run_id FROM ml.runs", "--format", fmt, "-o", str(out),
            "-w", str(models_db),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "run-1" in out.read_text()
        assert result.stdout == ""


def test_an_unknown_format_is_exit_2_with_one_line(models_db: Path) -> None:
    result = mallard_raw("sql", "SELECT 1", "--format", "xlsx", "-w", str(models_db))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "unknown --format 'xlsx'" in result.stderr and "csv" in result.stderr


def test_a_query_error_is_exit_2(models_db: Path) -> None:
    result = mallard_raw("sql", "SELECT nope FROM ml.runs", "-w", str(models_db))

    assert result.exit_code == 2
    assert "query failed" in result.stderr


def test_snapshot_command_writes_the_copy_and_the_parquet_folder(
    models_db: Path, tmp_path: Path
) -> None:
    copy, folder = tmp_path / "bi.duckdb", tmp_path / "bi-parquet"

    result = mallard_raw("snapshot", str(copy), "--parquet", str(folder), "-w", str(models_db))

    assert result.exit_code == 0, result.output
    assert copy.is_file() and (folder / "ml_models.parquet").is_file()
    assert "duckdb -readonly" in result.output and "IMPORT DATABASE" in result.output
    nothing = mallard_raw("snapshot", "-w", str(models_db))
    assert nothing.exit_code == 2

"""`mallard sql` (warehouse.query) only reads the warehouse: every way out of a read-only DuckDB
connection is refused with one line, exit 2, and leaves every ml row, the warehouse file, other
DuckDB files and the file system as they were."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from mallard import warehouse
from mallard.core.errors import WarehouseError
from tests.hostile.conftest import MODEL_ID, dump, files_under

MALLARD = Path(sys.executable).parent / "mallard"
RULE = "warehouse queries are read-only"

# (id, SQL with {wh} the warehouse, {other} another DuckDB file, {tmp} a writable folder,
#  {secret} a host file outside the warehouse; the phrase the one-line refusal must contain)
ESCAPES: list[tuple[str, str, str]] = [
    ("attach-self-rw", "ATTACH '{wh}' AS w2 (READ_WRITE)", "attach a database"),
    ("attach-self", "ATTACH '{wh}' AS w2", "attach a database"),
    ("attach-other", "ATTACH '{other}' AS o", "attach a database"),
    ("attach-other-rw", "ATTACH '{other}' AS o (READ_WRITE); DELETE FROM o.t", "attach"),
    ("attach-new-file", "ATTACH '{tmp}/new.duckdb' AS n", "attach a database"),
    ("attach-memory", "ATTACH ':memory:' AS m", "attach a database"),
    ("detach", "DETACH warehouse", "detach a database"),
    ("use", "USE memory", "change a setting"),
    ("copy-to", "COPY ml.models TO '{tmp}/models.csv'", "copy data"),
    ("copy-query-to", "COPY (SELECT * FROM ml.runs) TO '{tmp}/runs.parquet'", "copy data"),
    ("copy-from", "COPY ml.runs FROM '{secret}'", "copy data"),
    ("copy-database", "COPY FROM DATABASE warehouse TO memory", "PRAGMA"),
    ("export", "EXPORT DATABASE '{tmp}/export'", "export the database"),
    ("export-parquet", "EXPORT DATABASE '{tmp}/export' (FORMAT parquet)", "export"),
    ("import", "IMPORT DATABASE '{tmp}'", "PRAGMA"),
    ("read-csv-passwd", "SELECT * FROM read_csv('/etc/passwd')", 'read "/etc/passwd"'),
    ("read-csv-secret", "SELECT * FROM read_csv('{secret}')", "tried to read"),
    ("read-text", "SELECT content FROM read_text('/etc/passwd')", 'read "/etc/passwd"'),
    ("read-blob", "SELECT content FROM read_blob('/etc/hostname')", 'read "/etc/hostname"'),
    ("read-parquet", "SELECT * FROM read_parquet('{secret}')", "tried to read"),
    ("read-json", "SELECT * FROM read_json('/etc/hostname')", "tried to read"),
    ("replacement-scan", "SELECT * FROM '/etc/passwd'", "query failed: Catalog Error"),
    ("sniff-csv", "SELECT * FROM sniff_csv('/etc/passwd')", "tried to read"),
    ("glob-root", "SELECT * FROM glob('/*')", "tried to read"),
    ("glob-tmp", "SELECT * FROM glob('{tmp}/*')", "tried to read"),
    ("http", "SELECT * FROM read_csv('https://example.com/x.csv')", "tried to read"),
    ("install", "INSTALL spatial", "install or load an extension"),
    ("install-from", "INSTALL httpfs FROM core_nightly", "install or load an extension"),
    ("load", "LOAD spatial", "install or load an extension"),
    ("load-builtin", "LOAD json", "install or load an extension"),
    ("update-extensions", "UPDATE EXTENSIONS", "tried to"),
    ("set-external", "SET enable_external_access = true", "change a setting"),
    ("reset-external", "RESET enable_external_access", "change a setting"),
    ("unlock", "SET lock_configuration = false", "change a setting"),
    ("set-allowed", "SET allowed_directories = ['/']", "change a setting"),
    ("set-temp", "SET temp_directory = '{tmp}/spill'", "change a setting"),
    ("set-variable", "SET VARIABLE x = 1", "change a setting"),
    ("pragma-profiling", "PRAGMA enable_profiling", "PRAGMA"),
    ("pragma-profile-output", "PRAGMA profile_output = '{tmp}/p.txt'", "change a setting"),
    ("pragma-threads", "PRAGMA threads = 1", "change a setting"),
    ("create-table", "CREATE TABLE ml.evil (x INTEGER)", "create a table"),
    ("create-temp", "CREATE TEMP TABLE t AS SELECT 1", "create a table"),
    ("create-view", "CREATE VIEW ml.leaderboard2 AS SELECT 1", "create a table"),
    ("create-macro", "CREATE MACRO m(a) AS a", "create"),
    ("create-secret", "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "create"),
    ("insert", "INSERT INTO ml.aliases SELECT * FROM ml.aliases", "insert rows"),
    ("update", "UPDATE ml.models SET trusted_types = '[\"posix.system\"]'", "update rows"),
    ("delete", "DELETE FROM ml.models", "delete rows"),
    ("delete-after-select", "SELECT 1; DELETE FROM ml.runs", "delete rows"),
    ("merge", "MERGE INTO ml.runs USING ml.runs AS s ON true WHEN MATCHED THEN DELETE", "merge"),
    ("drop", "DROP TABLE ml.models", "drop an object"),
    ("drop-view", "DROP VIEW ml.champions", "drop an object"),
    ("alter", "ALTER TABLE ml.runs ADD COLUMN evil INTEGER", "alter a table"),
    ("comment", "COMMENT ON TABLE ml.runs IS 'owned'", "alter a table"),
    ("truncate", "TRUNCATE ml.metrics", "delete rows"),
    ("checkpoint", "CHECKPOINT", "CALL"),
    ("force-checkpoint", "FORCE CHECKPOINT", "CALL"),
    ("vacuum", "VACUUM", "vacuum"),
    ("analyze", "ANALYZE", "vacuum or analyze"),
    ("begin", "BEGIN TRANSACTION", "transaction"),
    ("prepare", "PREPARE p AS DELETE FROM ml.runs", "prepare a statement"),
    ("explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM ml.models", "delete rows"),
    ("explain-copy", "EXPLAIN COPY ml.runs TO '{tmp}/x.csv'", "copy data"),
    ("call-checkpoint", "CALL checkpoint()", "CALL"),
    ("query-function", "SELECT * FROM query('DELETE FROM ml.runs')", "query failed"),
]

READS = [
    ("select", "SELECT count(*) AS n FROM ml.models", 1),
    ("from-first", "FROM ml.runs SELECT run_id", 1),
    ("cte", "WITH m AS (SELECT model_id FROM ml.models) SELECT * FROM m", 1),
    ("describe", "DESCRIBE ml.runs", None),
    ("show-tables", "SHOW ALL TABLES", None),
    ("summarize", "SUMMARIZE ml.metrics", None),
    ("explain", "EXPLAIN SELECT * FROM ml.leaderboard", None),
    ("values", "VALUES (1), (2)", 2),
    ("view", "SELECT model_id FROM ml.champions", 1),
    ("pragma-function", "SELECT * FROM pragma_table_info('ml.runs')", None),
    ("settings-read", "SELECT value FROM duckdb_settings() WHERE name = 'lock_configuration'", 1),
    ("trailing-semicolon", "SELECT 1 AS x;", 1),
]


@pytest.fixture
def places(wh: Path, other_db: Path, tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n", encoding="utf-8")
    return {"wh": str(wh), "other": str(other_db), "tmp": str(tmp_path), "secret": str(secret)}


def other_rows(other: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(other), read_only=True) as con:
        return con.execute("SELECT * FROM t").fetchall()


@pytest.mark.parametrize(("sql", "phrase"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_is_refused_in_one_line_and_changes_nothing(
    wh: Path, other_db: Path, tmp_path: Path, places: dict[str, str], sql: str, phrase: str
) -> None:
    before, files_before = dump(wh), files_under(tmp_path)

    with pytest.raises(WarehouseError) as refused:
        warehouse.query(wh, sql.format(**places))

    message = str(refused.value)
    assert "\n" not in message and message.strip() == message
    assert refused.value.exit_code == 2
    assert phrase in message, message
    if "query failed" not in phrase:
        assert message.endswith(RULE) and "the query tried to" in message, message
    assert dump(wh) == before
    assert other_rows(other_db) == [(42,)]
    assert files_under(tmp_path) == files_before  # nothing written anywhere


@pytest.mark.parametrize(("sql", "rows"), [r[1:] for r in READS], ids=[r[0] for r in READS])
def test_reads_still_work(wh: Path, sql: str, rows: int | None) -> None:
    before = dump(wh)
    frame = warehouse.query(wh, sql)
    assert frame.height == rows if rows is not None else frame.height > 0
    assert dump(wh) == before


def test_the_one_file_readable_raw_is_the_warehouse_itself(wh: Path) -> None:
    """DuckDB lets a connection read its own database file (and its .wal / .tmp): nothing in
    it is hidden from an analyst who can SELECT every table anyway."""
    frame = warehouse.query(wh, f"SELECT size FROM read_blob('{wh}')")
    assert frame.item() == wh.stat().st_size
    with pytest.raises(WarehouseError, match="tried to read"):
        warehouse.query(wh, f"SELECT size FROM read_blob('{wh.parent}/other.duckdb')")


@pytest.mark.parametrize(
    ("sql", "phrase"),
    [
        ("", "the query is empty"),
        ("   ", "the query is empty"),
        ("-- only a comment", "the query is empty"),
        ("SELEC 1", 'query failed: Parser Error: syntax error at or near "SELEC"'),
        ("SELECT nope FROM ml.runs", "query failed: Binder Error"),
        ("SELECT * FROM ml.nothing", "query failed: Catalog Error"),
    ],
)
def test_bad_queries_are_one_line_user_errors(wh: Path, sql: str, phrase: str) -> None:
    with pytest.raises(WarehouseError) as failed:
        warehouse.query(wh, sql)
    assert "\n" not in str(failed.value) and phrase in str(failed.value)
    assert failed.value.exit_code == 2


def test_the_locks_hold_for_mallards_own_parameterised_reads(wh: Path, tmp_path: Path) -> None:
    before = dump(wh)
    assert warehouse.model(wh, MODEL_ID) is not None  # query_params reads as before
    with pytest.raises(duckdb.Error, match="read-only"):
        warehouse.query_params(wh, "DELETE FROM ml.models WHERE model_id = ?", [MODEL_ID])
    with pytest.raises(duckdb.PermissionException):
        warehouse.query_params(wh, "COPY ml.models TO $p", {"p": str(tmp_path / "x.csv")})
    assert dump(wh) == before
    assert not (tmp_path / "x.csv").exists()


# --- through the CLI, as an analyst types it ------------------------------------------------

CLI_CASES = [
    ("DELETE FROM ml.models", "the query tried to delete rows"),
    ("ATTACH '{wh}' AS w2 (READ_WRITE)", "the query tried to attach a database"),
    ("COPY ml.models TO '{tmp}/stolen.csv'", "the query tried to copy data"),
    ("SELECT * FROM read_text('/etc/passwd')", 'the query tried to read "/etc/passwd"'),
    ("INSTALL spatial", "the query tried to install or load an extension"),
    ("SET enable_external_access = true", "the query tried to change a setting"),
]


@pytest.mark.parametrize(("sql", "phrase"), CLI_CASES, ids=[c[0][:24] for c in CLI_CASES])
def test_cli_refuses_with_exit_2_and_one_line(
    wh: Path, tmp_path: Path, places: dict[str, str], sql: str, phrase: str
) -> None:
    before, files_before = dump(wh), files_under(tmp_path)
    done = subprocess.run(
        [str(MALLARD), "sql", sql.format(**places), "-w", str(wh)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert phrase in lines[0] and RULE in lines[0], lines[0]
    assert dump(wh) == before
    assert files_under(tmp_path) == files_before

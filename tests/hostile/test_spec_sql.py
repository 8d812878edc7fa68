"""A spec's SQL can only read: `source.sql` the spec's folder and the warehouse's tables,
`features.sql` only its frame. The escapes that wrote files, deleted other runs' ml.models rows
and rows of another DuckDB file are refused in one line (exit 2, naming the spec key) and leave
everything as it was."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.core.spec import FeaturesSection
from mallard.spec_sql import sql_over_frame
from mallard.tasks.features import prepare_features
from tests.hostile.conftest import dump, files_under

SOURCE_RULE = "spec SQL may only read the spec's folder and the warehouse"
FEATURES_RULE = "spec SQL may only read the table `source`"

# (id, SQL with {spec} the spec's folder, {wh}, {other}, {outside} a file beyond the spec's
#  folder; the phrase the refusal must contain)
SOURCE_ESCAPES: list[tuple[str, str, str]] = [
    ("delete-models", "DELETE FROM ml.models", "delete rows"),
    ("delete-then-select", "DELETE FROM ml.models; SELECT 1 AS x", "delete rows"),
    ("update-aliases", "UPDATE ml.aliases SET model_id = 'x'", "update rows"),
    ("insert-runs", "INSERT INTO ml.runs SELECT * FROM ml.runs", "insert rows"),
    ("drop-models", "DROP TABLE ml.models", "drop an object"),
    ("create-in-wh", "CREATE TABLE ml.x AS SELECT 1", "create a table"),
    ("attach-wh-rw", "ATTACH '{wh}' AS w (READ_WRITE); DELETE FROM w.ml.models", "attach"),
    ("attach-other", "ATTACH '{other}' AS o; SELECT * FROM o.t", "attach a database"),
    ("attach-other-in-spec", "ATTACH '{spec}/other.duckdb' AS o (READ_WRITE)", "attach"),
    ("copy-into-spec", "COPY (SELECT 1 AS x) TO '{spec}/written.csv'", "copy data"),
    ("copy-models-out", "COPY ml.models TO '{spec}/models.parquet'", "copy data"),
    ("export-into-spec", "EXPORT DATABASE '{spec}/export'", "export the database"),
    ("read-outside", "SELECT * FROM read_csv('{outside}')", "tried to read"),
    ("read-passwd", "SELECT * FROM read_text('/etc/passwd')", 'read "/etc/passwd"'),
    ("dot-dot", "SELECT * FROM read_csv('{spec}/../outside.csv')", "tried to read"),
    ("sibling-prefix", "SELECT * FROM read_csv('{spec}2/houses.csv')", "tried to read"),
    ("glob-root", "SELECT * FROM glob('/*')", "tried to read"),
    ("install", "INSTALL spatial", "install or load an extension"),
    ("set-external", "SET enable_external_access = true", "change a setting"),
    ("checkpoint", "CHECKPOINT", "CALL"),
    ("pragma-import", "IMPORT DATABASE '{spec}'", "PRAGMA"),
]


@pytest.fixture
def spec_dir(tmp_path: Path, other_db: Path) -> Path:
    """The spec's folder: a CSV to read, and a second DuckDB file an attacker could target."""
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "houses.csv").write_text("price,lotsize\n100,5000\n200,6000\n", encoding="utf-8")
    (tmp_path / "spec2").mkdir()
    (tmp_path / "spec2" / "houses.csv").write_text("price\n1\n", encoding="utf-8")
    (tmp_path / "outside.csv").write_text("password\nhunter2\n", encoding="utf-8")
    with duckdb.connect(str(folder / "other.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    return folder


def places(spec_dir: Path, wh: Path, other_db: Path) -> dict[str, str]:
    outside = spec_dir.parent / "outside.csv"
    return {"spec": str(spec_dir), "wh": str(wh), "other": str(other_db), "outside": str(outside)}


def duckdb_rows(path: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM t").fetchall()


@pytest.mark.parametrize("with_warehouse", [True, False], ids=["warehouse", "in-memory"])
@pytest.mark.parametrize(
    ("sql", "phrase"), [e[1:] for e in SOURCE_ESCAPES], ids=[e[0] for e in SOURCE_ESCAPES]
)
def test_source_sql_escape_is_refused(
    wh: Path,
    other_db: Path,
    spec_dir: Path,
    tmp_path: Path,
    sql: str,
    phrase: str,
    with_warehouse: bool,
) -> None:
    db = wh if with_warehouse else tmp_path / "none.duckdb"
    before, files_before = dump(wh), files_under(tmp_path)

    with pytest.raises(InputError) as refused:
        warehouse.query_source(
            db, sql.format(**places(spec_dir, wh, other_db)), allowed_directories=[spec_dir]
        )

    message = str(refused.value)
    assert "\n" not in message and refused.value.exit_code == 2
    assert message.startswith("[source.sql] "), message
    if with_warehouse or "ml." not in sql:  # without a warehouse ml.* may be a catalog error
        assert phrase in message, message
        assert message.endswith(SOURCE_RULE), message
    assert dump(wh) == before
    assert duckdb_rows(other_db) == duckdb_rows(spec_dir / "other.duckdb") == [(42,)]
    assert files_under(tmp_path) == files_before
    assert not db.exists() or db == wh


def test_source_sql_reads_the_spec_folder_and_the_warehouse(
    wh: Path, spec_dir: Path, tmp_path: Path
) -> None:
    before = dump(wh)
    frame = warehouse.query_source(
        wh,
        f"SELECT h.price, r.pipeline FROM read_csv('{spec_dir}/houses.csv') AS h, ml.runs AS r "
        "ORDER BY h.price",
        allowed_directories=[spec_dir],
    )
    assert frame.rows() == [(100, "housing"), (200, "housing")]
    files = warehouse.query_source(
        tmp_path / "none.duckdb",
        f"SELECT count(*) AS n FROM glob('{spec_dir}/*.csv')",
        allowed_directories=[spec_dir],
    )
    assert files.item() == 1
    assert dump(wh) == before


def test_source_sql_reads_an_allowed_file_and_no_other(spec_dir: Path, tmp_path: Path) -> None:
    allowed = spec_dir / "houses.csv"
    frame = warehouse.query_source(
        tmp_path / "none.duckdb", f"SELECT * FROM '{allowed}'", allowed_paths=[allowed]
    )
    assert frame.height == 2
    with pytest.raises(InputError, match=r"^\[source\.sql\] the query tried to read"):
        warehouse.query_source(
            tmp_path / "none.duckdb",
            f"SELECT * FROM '{spec_dir}/other.duckdb'",
            allowed_paths=[allowed],
        )


def test_source_sql_without_allowed_folders_reads_no_file(spec_dir: Path, wh: Path) -> None:
    with pytest.raises(InputError, match="tried to read"):
        warehouse.query_source(wh, f"SELECT * FROM read_csv('{spec_dir}/houses.csv')")


# --- features.sql --------------------------------------------------------------------------

FEATURE_ESCAPES: list[tuple[str, str, str]] = [
    ("create", "CREATE TABLE t AS SELECT * FROM source", "create a table"),
    ("insert", "INSERT INTO source VALUES (1, 2)", "insert rows"),
    ("drop", "DROP VIEW source", "drop an object"),
    ("attach", "ATTACH '{wh}' AS w (READ_WRITE); DELETE FROM w.ml.models", "attach"),
    ("copy", "COPY source TO '{tmp}/leak.csv'", "copy data"),
    ("export", "EXPORT DATABASE '{tmp}/export'", "export the database"),
    ("read-text", "SELECT content AS price FROM read_text('/etc/passwd')", "tried to read"),
    ("read-csv", "SELECT * FROM read_csv('{tmp}/wh/warehouse.duckdb')", "tried to read"),
    ("python-variable", "SELECT * FROM frame", "query failed: Catalog Error"),
    ("install", "INSTALL spatial", "install or load an extension"),
    ("set", "SET enable_external_access = true", "change a setting"),
    ("reset-lock", "RESET lock_configuration", "change a setting"),
]


def houses() -> pl.DataFrame:
    return pl.DataFrame({"price": [1.0, 2.0, 3.0], "lotsize": [10.0, 20.0, 30.0]})


@pytest.mark.parametrize(
    ("sql", "phrase"), [e[1:] for e in FEATURE_ESCAPES], ids=[e[0] for e in FEATURE_ESCAPES]
)
def test_features_sql_escape_is_refused(wh: Path, tmp_path: Path, sql: str, phrase: str) -> None:
    frame = houses()  # noqa: F841  (a Python variable a replacement scan would find)
    before, files_before = dump(wh), files_under(tmp_path)
    section = FeaturesSection(sql=sql.format(wh=wh, tmp=tmp_path))

    with pytest.raises(InputError) as refused:
        prepare_features(houses(), section, "price")

    message = str(refused.value)
    assert "\n" not in message and refused.value.exit_code == 2
    assert message.startswith("[features.sql] ") and phrase in message, message
    if "query failed" not in phrase:
        assert message.endswith(FEATURES_RULE), message
    assert dump(wh) == before
    assert files_under(tmp_path) == files_before


def test_features_sql_still_reads_the_frame() -> None:
    out = sql_over_frame(houses(), "SELECT price, lotsize / price AS ratio FROM source")
    assert out["ratio"].to_list() == [10.0, 10.0, 10.0]
    features = prepare_features(
        houses(), FeaturesSection(sql="SELECT *, lotsize * 2 AS double_lot FROM source"), "price"
    )
    assert features.X.columns == ["lotsize", "double_lot"]

"""read_files / read_sql: formats, globs, empty inputs, and the data fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from mallard import warehouse
from mallard.core.errors import InputError
from mallard.tasks.ingest import Ingested, files_sha256, from_query, read_files


def read_sql(db: Path, sql: str) -> Ingested:
    """What the flow's read_source step does for a source.sql."""
    return from_query(warehouse.query_source(db, sql, allowed_directories=[db.parent]), sql)


CSV_A = "price,lotsize,driveway\n100,5000,yes\n200,6000,no\n"
CSV_B = "price,lotsize,driveway\n300,7000.5,yes\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_is_read_with_text_columns_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "houses.csv", CSV_A)

    result = read_files([path], text_columns=["price"])

    assert result.frame.schema == pl.Schema(
        {"price": pl.String, "lotsize": pl.Int64, "driveway": pl.String}
    )
    assert result.frame["price"].to_list() == ["100", "200"]
    assert result.description == str(path)


def test_tsv_is_read_with_tabs(tmp_path: Path) -> None:
    path = write(tmp_path / "houses.tsv", "price\tdriveway\n1\tyes\n2\tno\n")

    result = read_files([path], text_columns=[])

    assert result.frame.columns == ["price", "driveway"]
    assert result.frame["price"].to_list() == [1, 2]


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    frame = pl.DataFrame({"price": [1.5, 2.5], "bedrooms": [3, 4], "driveway": ["yes", "no"]})
    path = tmp_path / "houses.parquet"
    frame.write_parquet(path)

    result = read_files([path], text_columns=["price"])

    assert result.frame.equals(frame)
    assert result.frame.schema == frame.schema


def test_two_files_are_concatenated_in_the_given_name_order(tmp_path: Path) -> None:
    a = write(tmp_path / "part-1.csv", CSV_A)
    b = write(tmp_path / "part-2.csv", CSV_B)

    forward = read_files([a, b], text_columns=["price"])
    backward = read_files([b, a], text_columns=["price"])

    assert forward.frame["price"].to_list() == ["100", "200", "300"]
    assert backward.frame["price"].to_list() == ["300", "100", "200"]
    # an int column in one file and a float in the other relax to float
    assert forward.frame["lotsize"].to_list() == [5000.0, 6000.0, 7000.5]
    assert forward.description == f"2 files from {tmp_path}"
    assert forward.sha256 != backward.sha256


def test_a_spec_glob_reads_its_files_in_name_order(tmp_path: Path) -> None:
    from mallard.core.spec import load_spec
    from mallard.examples import spec_text

    data = tmp_path / "data"
    data.mkdir()
    write(data / "b.csv", CSV_B)  # written first, sorts second
    write(data / "a.csv", CSV_A)
    spec_path = write(
        tmp_path / "spec.toml",
        spec_text().replace('path = "data/housing.csv"', 'path = "data/*.csv"'),
    )

    files = load_spec(spec_path).source_files()
    result = read_files(files, text_columns=["price"])

    assert [f.name for f in files] == ["a.csv", "b.csv"]
    assert result.frame["price"].to_list() == ["100", "200", "300"]


def test_files_with_different_columns_are_an_input_error(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", CSV_A)
    b = write(tmp_path / "b.csv", "price,lot_size\n1,2\n")

    with pytest.raises(InputError, match="do not share one set of columns"):
        read_files([a, b], text_columns=[])


def test_an_empty_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    with pytest.raises(InputError, match="empty") as caught:
        read_files([path], text_columns=["price"])
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("header", ["price,lotsize\n", "price,lotsize"])
def test_a_header_only_file_is_an_input_error(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "header.csv", header)

    with pytest.raises(InputError, match="no data rows") as caught:
        read_files([path], text_columns=["price"])
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["houses.json", "houses.xlsx", "houses"])
def test_an_unsupported_extension_is_an_input_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, CSV_A)

    with pytest.raises(InputError, match=r"only \.csv, \.tsv and \.parquet"):
        read_files([path], text_columns=[])


def test_a_corrupt_parquet_file_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "houses.parquet", CSV_A)

    with pytest.raises(InputError, match="cannot read"):
        read_files([path], text_columns=[])


def test_no_files_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no input files"):
        read_files([], text_columns=[])


def test_sha256_is_of_the_file_bytes_and_follows_every_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "houses.csv", CSV_A)

    first = read_files([path], text_columns=[]).sha256
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_files([path], text_columns=["price"]).sha256 == first  # not of the parsed frame

    path.write_bytes(path.read_bytes().replace(b"5000", b"5001"))
    changed = read_files([path], text_columns=[]).sha256

    assert changed != first
    assert changed == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_of_several_files_covers_names_sizes_and_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", CSV_A)
    b = write(tmp_path / "b.csv", CSV_B)

    result = read_files([a, b], text_columns=[])

    assert result.sha256 == files_sha256([a, b]) != files_sha256([b, a])
    renamed = b.rename(tmp_path / "c.csv")
    assert files_sha256([a, renamed]) != result.sha256


def test_sha256_of_a_large_file_reads_it_in_chunks(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 2},yes\n" for i in range(120_000))  # > 1 MiB: several chunks
    path = write(tmp_path / "big.csv", "price,lotsize,driveway\n" + rows)
    assert path.stat().st_size > 1 << 20

    result = read_files([path], text_columns=[])

    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.frame.height == 120_000


SQL = "SELECT range AS id, range * 1.5 AS price FROM range(5) ORDER BY id"


def test_read_sql_runs_in_memory_when_the_warehouse_does_not_exist(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"

    result = read_sql(db, SQL)

    assert result.frame["id"].to_list() == [0, 1, 2, 3, 4]
    assert result.frame["price"].to_list() == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert result.description == f"sql: {SQL}"
    assert not db.exists()  # reading must not create a warehouse file


def test_read_sql_is_deterministic_and_fingerprints_the_result(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"

    first = read_sql(db, SQL)
    second = read_sql(db, SQL)
    other = read_sql(db, SQL.replace("1.5", "2.5"))

    assert first.frame.equals(second.frame)
    assert first.sha256 == second.sha256
    assert len(first.sha256) == 64
    assert other.sha256 != first.sha256


def test_read_sql_with_no_rows_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="returned no rows"):
        read_sql(tmp_path / "none.duckdb", "SELECT 1 AS x WHERE false")


def test_read_sql_with_bad_sql_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\[source.sql\] query failed"):
        read_sql(tmp_path / "none.duckdb", "SELEC 1")


def test_read_sql_can_read_files(tmp_path: Path) -> None:
    path = write(tmp_path / "houses.csv", CSV_A)

    result = read_sql(tmp_path / "none.duckdb", f"SELECT * FROM read_csv('{path}') ORDER BY price")

    assert result.frame["price"].to_list() == [100, 200]


def test_moving_bytes_between_files_changes_the_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = [
        write(tmp_path / "one" / "a.csv", "id\n1\n2\n"),
        write(tmp_path / "one" / "b.csv", "3\n"),
    ]
    two = [
        write(tmp_path / "two" / "a.csv", "id\n1\n"),
        write(tmp_path / "two" / "b.csv", "2\n3\n"),
    ]
    assert b"".join(p.read_bytes() for p in one) == b"".join(p.read_bytes() for p in two)

    assert files_sha256(one) != files_sha256(two)


def test_one_file_is_fingerprinted_by_its_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id\n1\n")

    assert files_sha256([path]) == hashlib.sha256(path.read_bytes()).hexdigest()

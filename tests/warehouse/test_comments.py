"""Migration 4: every table, view and column of `ml` carries a catalog COMMENT that SQL clients
read from duckdb_tables() / duckdb_views() / duckdb_columns(), and the read copy keeps them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from mallard.warehouse import publish_read_copy
from mallard.warehouse.connection import connect
from mallard.warehouse.schema_text import ML_COMMENTS_4

UNCOMMENTED = """
SELECT 'table ' || table_name FROM duckdb_tables()
    WHERE database_name = current_database() AND schema_name = 'ml' AND comment IS NULL
UNION ALL
SELECT 'view ' || view_name FROM duckdb_views()
    WHERE database_name = current_database() AND schema_name = 'ml' AND comment IS NULL
UNION ALL
SELECT 'column ' || table_name || '.' || column_name FROM duckdb_columns()
    WHERE database_name = current_database() AND schema_name = 'ml' AND comment IS NULL
ORDER BY 1
"""


def uncommented(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(UNCOMMENTED).fetchall()]


def column_comments(db: Path, condition: str) -> dict[tuple[str, str], str]:
    """(table, column) -> comment of the ml columns that meet `condition` (SQL)."""
    with connect(db) as con:
        rows = con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            f"WHERE schema_name = 'ml' AND {condition}"
        ).fetchall()
    return {(table, column): comment for table, column, comment in rows}


def test_every_table_view_and_column_of_ml_has_a_comment(db: Path) -> None:
    with connect(db) as con:
        missing = uncommented(con)
        objects = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'ml'"
        ).fetchall()[0][0]

    assert objects > 150  # the whole schema was looked at
    assert missing == [], f"add a COMMENT (in a new migration) for: {', '.join(missing)}"


def test_comments_name_the_split_of_metric_values(db: Path) -> None:
    by_column = column_comments(
        db, "column_name IN ('value', 'validation_value', 'cv_value', 'best_value', 'model_value')"
    )
    assert "TEST" in by_column[("leaderboard", "value")]
    assert "VALIDATION" in by_column[("leaderboard", "validation_value")]
    assert "TEST" in by_column[("run_summary", "best_value")]
    assert "test" in by_column[("promotions", "model_value")]
    for (table, _), comment in by_column.items():
        assert "split" in comment or "fold" in comment or "all rows" in comment, table


def test_the_comment_list_names_only_real_columns(db: Path) -> None:
    """A typo in ML_COMMENTS_4 would fail the migration; this says which name is wrong."""
    with connect(db) as con:
        real = {
            (table, column)
            for table, column in con.execute(
                "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'ml'"
            ).fetchall()
        }
    listed = {(t, c) for t, (_, _, columns) in ML_COMMENTS_4.items() for c in columns}
    assert listed <= real


def test_the_read_copy_keeps_the_comments(db: Path) -> None:
    with connect(db):
        pass

    copy = publish_read_copy(db)

    with duckdb.connect(str(copy), read_only=True) as con:
        assert uncommented(con) == []


def test_the_training_rows_comments_say_max_rows_caps_the_refit(db: Path) -> None:
    """Migration 8 restates two comments of migrations 6 and 7 (never edited in place)."""
    by_column = column_comments(
        db, "(table_name, column_name) IN (('models', 'trained_on'), ('runs', 'train_rows'))"
    )
    assert "a seeded sample of [train] max_rows of them" in by_column[("models", "trained_on")]
    assert "importance a seeded sample" in by_column[("runs", "train_rows")]

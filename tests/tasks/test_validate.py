"""quarantine_invalid / enforce_invalid_limit on tiny hand-made frames."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from mallard.core.errors import DataValidationError, InputError
from mallard.core.spec import SchemaSection
from mallard.schemas.inline import build_schema
from mallard.tasks.validate import (
    QUARANTINE_SCHEMA,
    Validated,
    enforce_invalid_limit,
    quarantine_invalid,
)

COLUMNS: dict[str, Any] = {
    "price": {"dtype": "float", "nullable": False, "ge": 0},
    "lotsize": {"dtype": "float", "ge": 0},
    "bedrooms": {"dtype": "int", "ge": 0, "le": 20},
    "driveway": {"dtype": "str", "isin": ["yes", "no"]},
}


def inline_schema(columns: dict[str, Any] | None = None, target: str | None = "price") -> Any:
    section = SchemaSection.model_validate({"columns": columns or COLUMNS})
    return build_schema(section, target)


def text_frame(**overrides: dict[int, str | None]) -> pl.DataFrame:
    """12 valid rows, all text as read from a CSV; `overrides` puts values at row positions."""
    columns: dict[str, list[str | None]] = {
        "price": [str(100_000 + 1_000 * i) for i in range(12)],
        "lotsize": [str(4_000 + 10 * i) for i in range(12)],
        "bedrooms": [str(1 + i % 5) for i in range(12)],
        "driveway": ["yes" if i % 3 else "no" for i in range(12)],
        "note": [f"house {i}" for i in range(12)],  # not in the schema: passes through
    }
    for name, values in overrides.items():
        for row, value in values.items():
            columns[name][row] = value
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))


def failures(validated: Validated) -> list[tuple[int, str, str, str | None]]:
    return [tuple(row) for row in validated.quarantine.iter_rows()]


def test_clean_frame_is_all_valid_and_typed() -> None:
    frame = text_frame()

    result = quarantine_invalid(frame, inline_schema())

    assert result.quarantine.height == 0
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert result.n_rows == 12 and result.n_invalid == 0 and result.invalid_fraction == 0.0
    assert result.valid.schema == pl.Schema(
        {
            "price": pl.Float64,
            "lotsize": pl.Float64,
            "bedrooms": pl.Int64,
            "driveway": pl.String,
            "note": pl.String,
        }
    )
    assert result.valid["price"].to_list() == [100_000.0 + 1_000 * i for i in range(12)]
    assert result.valid["note"].to_list() == frame["note"].to_list()


def test_text_in_a_float_column_is_quarantined_with_the_raw_value() -> None:
    result = quarantine_invalid(text_frame(lotsize={3: "n/a"}), inline_schema())

    assert failures(result) == [(3, "lotsize", "dtype('Float64')", "n/a")]
    assert result.n_invalid == 1
    assert 3 not in result.valid["note"].str.extract(r"(\d+)").cast(pl.Int64).to_list()


def test_range_checks_quarantine_values_outside_the_bounds() -> None:
    frame = text_frame(lotsize={1: "-1"}, bedrooms={4: "99", 5: "20", 6: "0"})

    result = quarantine_invalid(frame, inline_schema())

    assert failures(result) == [
        (1, "lotsize", "greater_than_or_equal_to(0.0)", "-1.0"),
        (4, "bedrooms", "less_than_or_equal_to(20.0)", "99"),
    ]
    # the bounds themselves are allowed
    assert result.valid.height == 10
    assert {0, 20} <= set(result.valid["bedrooms"].to_list())


def test_isin_quarantines_values_outside_the_set() -> None:
    result = quarantine_invalid(text_frame(driveway={2: "maybe", 7: "YES"}), inline_schema())

    assert failures(result) == [
        (2, "driveway", "isin(['yes', 'no'])", "maybe"),
        (7, "driveway", "isin(['yes', 'no'])", "YES"),
    ]


def test_null_in_a_non_nullable_column_is_quarantined_and_nullable_nulls_pass() -> None:
    frame = text_frame(price={0: None}, lotsize={1: None}, driveway={2: None})

    result = quarantine_invalid(frame, inline_schema())

    assert failures(result) == [(0, "price", "not_nullable", None)]
    assert result.valid.height == 11
    assert result.valid["lotsize"].null_count() == 1
    assert result.valid["driveway"].null_count() == 1


def test_the_target_is_never_nullable_even_when_declared_nullable() -> None:
    columns = {**COLUMNS, "price": {"dtype": "float", "nullable": True}}

    result = quarantine_invalid(text_frame(price={5: None}), inline_schema(columns))

    assert [(row, column) for row, column, *_ in failures(result)] == [(5, "price")]


def test_a_fractional_value_in_an_int_column_is_quarantined_not_truncated() -> None:
    frame = text_frame(bedrooms={2: "3.5", 3: "3.0", 4: " 4 "})

    result = quarantine_invalid(frame, inline_schema())

    assert failures(result) == [(2, "bedrooms", "dtype('Int64')", "3.5")]
    assert "house 2" not in result.valid["note"].to_list()  # not kept as a truncated 3
    # "3.0" is a whole number and surrounding spaces are trimmed
    kept = dict(zip(result.valid["note"], result.valid["bedrooms"], strict=True))
    assert (kept["house 3"], kept["house 4"]) == (3, 4)
    assert result.valid.height == 11


def test_a_fractional_float_in_an_int_column_is_quarantined_not_truncated() -> None:
    """Parquet / SQL sources arrive typed: a Float64 column declared int must not truncate."""
    frame = pl.DataFrame({"price": [1.0] * 6, "bedrooms": [1.0, 3.5, 2.0, -0.5, 2.9, None]})
    schema = inline_schema({"bedrooms": {"dtype": "int", "ge": 0}})

    result = quarantine_invalid(frame, schema)

    assert failures(result) == [
        (1, "bedrooms", "dtype('Int64')", "3.5"),
        (3, "bedrooms", "dtype('Int64')", "-0.5"),
        (4, "bedrooms", "dtype('Int64')", "2.9"),
    ]
    assert result.valid["bedrooms"].to_list() == [1, 2, None]
    assert result.valid["bedrooms"].dtype == pl.Int64


def test_bool_date_and_int_columns_are_cast_value_by_value() -> None:
    frame = pl.DataFrame(
        {
            "price": ["1"] * 6,
            "airco": ["yes", "No", "TRUE", "0", "sometimes", None],
            "sold": ["2024-01-31", "2024-02-30", "2024-03-01", "soon", "2024-05-05", "2024-06-06"],
        }
    )
    schema = inline_schema({"airco": {"dtype": "bool"}, "sold": {"dtype": "date"}})

    result = quarantine_invalid(frame, schema)

    assert failures(result) == [
        (1, "sold", "dtype('Date')", "2024-02-30"),
        (3, "sold", "dtype('Date')", "soon"),
        (4, "airco", "dtype('Boolean')", "sometimes"),
    ]
    assert result.valid["airco"].to_list() == [True, True, None]
    assert result.valid["sold"].dtype == pl.Date
    assert [str(d) for d in result.valid["sold"]] == ["2024-01-31", "2024-03-01", "2024-06-06"]


def test_valid_rows_keep_their_order() -> None:
    bad: dict[int, str | None] = {1: "x", 4: "x", 5: "x", 9: "x", 10: "x"}
    frame = text_frame(lotsize=bad)

    result = quarantine_invalid(frame, inline_schema())

    expected = [f"house {i}" for i in range(12) if i not in bad]
    assert result.valid["note"].to_list() == expected
    assert result.quarantine["row_index"].to_list() == sorted(bad)


def test_one_row_failing_several_checks_counts_once() -> None:
    frame = text_frame(lotsize={6: "-3"}, bedrooms={6: "50"}, driveway={6: "perhaps"})

    result = quarantine_invalid(frame, inline_schema())

    assert sorted(column for _, column, _, _ in failures(result)) == [
        "bedrooms",
        "driveway",
        "lotsize",
    ]
    assert result.n_invalid == 1
    assert result.invalid_fraction == pytest.approx(1 / 12)
    assert result.valid.height == 11


def test_unique_flags_every_duplicate() -> None:
    frame = text_frame(note={3: "house 1"})
    schema = inline_schema({**COLUMNS, "note": {"dtype": "str", "unique": True}})

    result = quarantine_invalid(frame, schema)

    assert result.quarantine["row_index"].to_list() == [1, 3]
    assert {check for _, _, check, _ in failures(result)} == {"field_uniqueness"}


def test_regex_check() -> None:
    frame = pl.DataFrame({"price": ["1", "2", "3"], "zip": ["12345", "1234", "ABCDE"]})
    schema = inline_schema({"zip": {"dtype": "str", "regex": r"^\d{5}$"}})

    result = quarantine_invalid(frame, schema)

    assert result.quarantine["row_index"].to_list() == [1, 2]
    assert result.valid["zip"].to_list() == ["12345"]


def test_enforce_invalid_limit_raises_over_the_limit_with_the_fraction() -> None:
    frame = text_frame(lotsize={0: "x", 1: "x", 2: "x"})  # 3 of 12 = 25%
    result = quarantine_invalid(frame, inline_schema())

    with pytest.raises(DataValidationError) as caught:
        enforce_invalid_limit(result, 0.2)

    message = str(caught.value)
    assert "3 of 12 rows" in message
    assert "25.0%" in message
    assert "max_invalid_fraction = 20.0%" in message
    assert "ml.quarantine" in message


def test_enforce_invalid_limit_allows_exactly_the_limit_and_below() -> None:
    result = quarantine_invalid(text_frame(lotsize={0: "x", 1: "x", 2: "x"}), inline_schema())

    enforce_invalid_limit(result, 0.25)  # 25% is not more than 25%
    enforce_invalid_limit(result, 1.0)
    with pytest.raises(DataValidationError):
        enforce_invalid_limit(result, 0.0)


def test_a_missing_declared_column_is_an_input_error_naming_it() -> None:
    frame = text_frame().drop("bedrooms")

    with pytest.raises(InputError) as caught:
        quarantine_invalid(frame, inline_schema())

    message = str(caught.value)
    assert "bedrooms" in message.split(" named in the schema")[0]
    assert "the data has: price, lotsize, driveway, note" in message


def test_a_missing_target_is_an_input_error_even_when_undeclared() -> None:
    frame = text_frame().drop("price")
    schema = inline_schema({"lotsize": {"dtype": "float"}}, target="price")

    with pytest.raises(InputError, match="price"):
        quarantine_invalid(frame, schema)


def test_schema_model_form_works_too() -> None:
    section = SchemaSection(model="mallard.schemas.housing:Housing")
    schema = build_schema(section, "price")
    frame = pl.DataFrame(
        {
            "price": ["150000", "n/a", "90000", "120000", "80000", "110000"],
            "lotsize": ["5000", "6000", "-1", "4000", "4500", "7000"],
            "bedrooms": ["3", "2", "4", "2.5", "3", "3"],
            "bathrms": ["1", "2", "1", "1", "2", "1"],
            "stories": ["2", "1", "1", "1", "9", "2"],
            "driveway": ["yes", "no", "yes", "no", "yes", "maybe"],
            "year_built": ["1990", "2001", "1975", "1960", "2010", "1999"],
            "garagepl": ["1", "0", "2", "1", "0", "1"],  # not in the model: unchecked
        }
    )

    result = quarantine_invalid(frame, schema)

    found = {(row, column, value) for row, column, _, value in failures(result)}
    assert {
        (1, "price", "n/a"),
        (2, "lotsize", "-1.0"),
        (3, "bedrooms", "2.5"),
        (4, "stories", "9"),
        (5, "driveway", "maybe"),
    } <= found
    assert {row for row, _, _ in found} == {1, 2, 3, 4, 5}
    assert result.valid.height == 1
    assert result.valid.row(0, named=True) == {
        "price": 150000.0,
        "lotsize": 5000.0,
        "bedrooms": 3,
        "bathrms": 1,
        "stories": 2,
        "driveway": "yes",
        "year_built": 1990,
        "garagepl": "1",
    }


def test_schema_model_missing_column_is_an_input_error() -> None:
    schema = build_schema(SchemaSection(model="mallard.schemas.housing:Housing"), "price")
    frame = pl.DataFrame({"price": ["1"], "lotsize": ["1"]})

    with pytest.raises(InputError) as caught:
        quarantine_invalid(frame, schema)

    for column in ("bedrooms", "bathrms", "stories", "driveway", "year_built"):
        assert column in str(caught.value)

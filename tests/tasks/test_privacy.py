"""PII policy: planted raw values never survive apply_pii or mask_values; hashes, salts, bins."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from mallard.core.errors import SpecError
from mallard.core.spec import ColumnSpec, SchemaSection
from mallard.schemas.inline import build_schema, pii_policies
from mallard.tasks.privacy import (
    REDACTED,
    SALT_ENV,
    apply_pii,
    mask_values,
    require_salt,
)

EMAIL = "ada.lovelace@example.org"
BIRTH = date(1984, 6, 15)
POSTCODE = "SW1A 1AA"
AGE = 37
POLICIES = {"email": "hash", "birth": "generalise", "postcode": "generalise", "age": "generalise"}
POLICIES_WITH_DROP = {**POLICIES, "phone": "drop"}
SALT = "pepper-0123456789"


def people() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "email": [EMAIL, "bob@example.org", None, EMAIL],
            "birth": [BIRTH, date(1990, 1, 1), date(2001, 12, 31), None],
            "postcode": [POSTCODE, "EC1V 9HX", None, "N1 9GU"],
            "age": [AGE, 30, 99, None],
            "phone": ["+44 20 7946 0958", "+44 20 7946 0000", None, None],
            "income": [52_000.0, 48_000.0, None, 61_000.0],
        }
    )


def cells(frame: pl.DataFrame) -> list[str]:
    """Every non-null cell of every column, as text."""
    return [str(value) for column in frame.iter_columns() for value in column.drop_nulls()]


def assert_no_raw_values(frame: pl.DataFrame) -> None:
    texts = cells(frame)
    # The age is checked for equality only: two digits occur by chance inside hex digests.
    assert str(AGE) not in texts
    for raw in (EMAIL, str(BIRTH), POSTCODE, "+44 20 7946 0958"):
        assert not [text for text in texts if raw in text], raw


def test_pii_policies_lists_only_columns_with_a_policy() -> None:
    columns = {
        "email": ColumnSpec(dtype="str", pii="hash"),
        "birth": ColumnSpec(dtype="date", pii="generalise"),
        "phone": ColumnSpec(dtype="str", pii="drop"),
        "income": ColumnSpec(dtype="float"),
    }
    schema = build_schema(SchemaSection(columns=columns), target=None)

    assert pii_policies(schema) == {"email": "hash", "birth": "generalise", "phone": "drop"}


PEOPLE_MODEL = """
import pandera.polars as pa


class People(pa.DataFrameModel):
    email: str = pa.Field(metadata={"pii": "hash"})
    age: int = pa.Field(ge=0)
"""


def test_pii_policies_of_a_dataframe_model(tmp_path: Path) -> None:
    (tmp_path / "people.py").write_text(PEOPLE_MODEL, encoding="utf-8")  # beside the spec

    section = SchemaSection(model="people.py:People")
    schema = build_schema(section, target=None, spec_folder=tmp_path)

    assert pii_policies(schema) == {"email": "hash"}


def test_planted_raw_values_never_appear_after_apply_pii() -> None:
    frame = people()
    assert_no_raw_values_fails_on_raw_input(frame)

    protected = apply_pii(frame, POLICIES_WITH_DROP, SALT)

    assert_no_raw_values(protected)
    assert protected.columns == ["email", "birth", "postcode", "age", "income"]


def assert_no_raw_values_fails_on_raw_input(frame: pl.DataFrame) -> None:
    # The scan itself must be able to fail: on the raw frame it finds the planted values.
    with pytest.raises(AssertionError):
        assert_no_raw_values(frame)


def test_planted_raw_values_never_appear_after_mask_values() -> None:
    quarantine = pl.DataFrame(
        {
            "row_index": [0, 0, 1, 2, 3],
            "column_name": ["email", "birth", "postcode", "age", "income"],
            "check_name": ["str_matches", "dtype('Date')", "str_length", "less_than", "ge"],
            "failure_value": [EMAIL, str(BIRTH), POSTCODE, str(AGE), "-5.0"],
        }
    )
    assert_no_raw_values_fails_on_raw_input(quarantine)

    masked = mask_values(quarantine, POLICIES)

    assert_no_raw_values(masked)
    assert masked["failure_value"].to_list() == [REDACTED] * 4 + ["-5.0"]
    assert masked.drop("failure_value").equals(quarantine.drop("failure_value"))


def test_hash_is_hmac_sha256_keyed_by_the_salt_and_nulls_stay_null() -> None:
    hashed = apply_pii(people(), {"email": "hash"}, SALT)["email"]

    assert hashed[0] == hmac.new(SALT.encode(), EMAIL.encode(), hashlib.sha256).hexdigest()
    assert hashed[0] != hashlib.sha256((SALT + EMAIL).encode()).hexdigest()
    assert hashed[0] == hashed[3]  # the same person keeps the same pseudonym
    assert hashed[1] != hashed[0]
    assert hashed[2] is None


def test_same_salt_same_hash_and_a_different_salt_a_different_hash() -> None:
    first = apply_pii(people(), {"email": "hash"}, SALT)["email"]
    again = apply_pii(people(), {"email": "hash"}, SALT)["email"]
    other = apply_pii(people(), {"email": "hash"}, "another-salt")["email"]

    assert first.equals(again)
    assert (first != other).drop_nulls().all()


def test_hash_of_a_number_column_hashes_its_text() -> None:
    hashed = apply_pii(people(), {"age": "hash"}, SALT)["age"]

    assert hashed[0] == hmac.new(SALT.encode(), str(AGE).encode(), hashlib.sha256).hexdigest()
    assert hashed[3] is None


def test_missing_salt_with_a_hash_column_names_the_column_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)

    with pytest.raises(SpecError, match=rf"email.*{SALT_ENV}"):
        require_salt(POLICIES)
    with pytest.raises(SpecError, match=rf"email.*{SALT_ENV}"):
        apply_pii(people(), POLICIES, None)


def test_empty_salt_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, "")

    with pytest.raises(SpecError, match="email"):
        require_salt({"email": "hash"})


def test_salt_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)

    assert require_salt(POLICIES) == SALT


def test_no_hash_column_needs_no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)

    assert require_salt({"birth": "generalise", "phone": "drop"}) is None
    assert apply_pii(people(), {"phone": "drop"}, None).columns == [
        "email",
        "birth",
        "postcode",
        "age",
        "income",
    ]


def test_generalise_dates_to_the_first_of_the_month() -> None:
    frame = pl.DataFrame(
        {
            "birth": [BIRTH, date(2001, 12, 31), None],
            "seen": [datetime(2020, 2, 29, 23, 59), datetime(2020, 3, 1), None],
        }
    )

    out = apply_pii(frame, {"birth": "generalise", "seen": "generalise"}, None)

    assert out["birth"].to_list() == [date(1984, 6, 1), date(2001, 12, 1), None]
    assert out["seen"].to_list() == [date(2020, 2, 1), date(2020, 3, 1), None]


def test_generalise_numbers_to_decade_bins() -> None:
    frame = pl.DataFrame({"age": [AGE, 30, 9, None, -1], "score": [39.99, 40.0, 0.5, None, None]})

    out = apply_pii(frame, {"age": "generalise", "score": "generalise"}, None)

    assert out["age"].to_list() == ["[30, 40)", "[30, 40)", "[0, 10)", None, "[-10, 0)"]
    assert out["score"].to_list() == ["[30, 40)", "[40, 50)", "[0, 10)", None, None]


def test_generalise_text_keeps_a_prefix_and_never_the_whole_value() -> None:
    frame = pl.DataFrame({"postcode": [POSTCODE, "N1 9GU", "E1", "", None, "01000"]})

    out = apply_pii(frame, {"postcode": "generalise"}, None)["postcode"]

    assert out.to_list() == ["SW1*", "N1 *", "E*", "*", None, "010*"]


def test_generalise_dates_and_numbers_that_arrive_as_text() -> None:
    frame = pl.DataFrame(
        {"birth": ["1984-06-15", " 2001-12-31", None], "age": ["37", "30.5", None]}
    )

    out = apply_pii(frame, {"birth": "generalise", "age": "generalise"}, None)

    assert out["birth"].to_list() == [date(1984, 6, 1), date(2001, 12, 1), None]
    assert out["age"].to_list() == ["[30, 40)", "[30, 40)", None]


def test_generalise_on_booleans_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"consent.*drop"):
        apply_pii(pl.DataFrame({"consent": [True, False]}), {"consent": "generalise"}, None)


def test_columns_without_a_policy_are_untouched() -> None:
    frame = people()

    out = apply_pii(frame, POLICIES_WITH_DROP, SALT)

    assert out["income"].equals(frame["income"])
    assert apply_pii(frame, {}, None).equals(frame)


def test_policy_for_a_column_the_frame_lacks_is_skipped() -> None:
    frame = people().drop("email", "phone")

    out = apply_pii(frame, POLICIES_WITH_DROP, SALT)

    assert out.columns == ["birth", "postcode", "age", "income"]


def test_text_with_a_leading_zero_is_a_code_not_a_number() -> None:
    frame = pl.DataFrame({"postcode": ["01000", "75001", "13008", None]})

    out = apply_pii(frame, {"postcode": "generalise"}, None)["postcode"]

    assert out.to_list() == ["010*", "750*", "130*", None]

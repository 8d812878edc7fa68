"""How `mallard init` declares one column, from its values in the sample.

- dtype: what the values parse as, the way the validator will cast them. Polars' own types
  (bool, int, float, Parquet date/datetime) are kept. A text column becomes
  bool (only "true"/"false"), date (ISO ``YYYY-MM-DD``), datetime (ISO date and time without a UTC
  offset) or int/float when at least `MIN_PARSED_SHARE` of its values parse that way; the rest of
  its values will be quarantine rows (said in a comment). Otherwise it stays "str".
- nullable: false when the sample has no missing value in the column, else true.
- ge = 0 for int/float columns whose sample minimum is >= 0: zero, not the observed minimum, so new
  data a little outside the sample's range is not quarantined. No other bounds are set.
- isin: text columns with at most `MAX_CATEGORIES` distinct values, and a classification target's
  classes. A value seen in fewer than `ISIN_MIN_SHARE` of the sample's rows (and at least
  `ISIN_MIN_ROWS`) is left out, so a typo or a deliberately bad value ("maybe" among yes/no) is
  quarantined rather than made allowed; unless such rare values together hold more than
  `ISIN_MAX_RARE_SHARE` of the rows (a long tail, not errors), then every value is allowed.
- role: the target; else dropped (listed in [features] drop, with the reason in a comment) when
  ID-like (int/text named like an ID with more than `MAX_CATEGORIES` distinct values, text that is
  different in every row, or consecutive unique integers: a row number), empty, a single value,
  a type the pipeline cannot use, or timestamps with a UTC offset; else a feature. Dates and
  datetimes stay features: the pipeline turns them into days since 1970-01-01.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

from mallard.core.spec import ColumnDtype

MAX_CATEGORIES = 20  # text columns with at most this many distinct values get an isin check
MIN_PARSED_SHARE = 0.95  # share of a text column's values that must parse as a number / date
ISIN_MIN_SHARE = 0.005  # a text value in fewer rows than this share is not made allowed
ISIN_MIN_ROWS = 2  # ... nor one seen fewer times than this
ISIN_MAX_RARE_SHARE = 0.02  # rare values holding more of the rows than this: a long tail, kept

Role = Literal["target", "feature", "drop"]

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"
_ISO_DATETIME_OFFSET = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?\s*(Z|[+-]\d{2}:?\d{2})$"
)
_ID_NAME = re.compile(r"(^|[_\-\s.])(id|uuid|guid)$")
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")


@dataclass(frozen=True)
class Column:
    """One column as the spec will declare it."""

    name: str
    dtype: ColumnDtype | None  # None: not declared (a type the validator cannot check)
    nullable: bool = True
    ge: float | None = None
    isin: tuple[str | int | float | bool, ...] | None = None
    role: Role = "feature"
    note: str = ""  # why it is dropped, how it is used, what will be quarantined
    rare: tuple[str, ...] = ()  # text values seen too rarely to be allowed: quarantined

    def checks(self) -> str:
        parts = []
        if self.ge is not None:
            parts.append(f"ge {self.ge:g}")
        if self.isin is not None:
            listed = ", ".join(str(v) for v in self.isin[:6])
            parts.append(f"isin {listed}" + (", …" if len(self.isin) > 6 else ""))
        return "; ".join(parts)


@dataclass(frozen=True)
class Typed:
    dtype: ColumnDtype | None
    values: pl.Series  # the non-null values, cast to the dtype (text stays raw)
    bad: pl.Series | None = None  # True where a present value will not cast: quarantined rows
    unusable: str = ""  # a reason to keep the column out of the features
    example: str = ""  # a value that will not cast, for the comment


def type_of(series: pl.Series) -> Typed:
    dtype = series.dtype
    values = series.drop_nulls()
    if dtype == pl.Null or values.len() == 0:
        return Typed("str", values.cast(pl.String), unusable="empty: no value in the sample")
    if dtype == pl.Boolean:
        return Typed("bool", values)
    if dtype.is_integer():
        return Typed("int", values.cast(pl.Int64))
    if dtype.is_float() or dtype.is_decimal():
        return Typed("float", values.cast(pl.Float64))
    if dtype == pl.Date:
        return Typed("date", values)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return Typed(None, values, unusable=f"{dtype}: time zones are not supported")
        return Typed("datetime", values)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return _type_of_text(series.cast(pl.String))
    return Typed(None, values, unusable=f"{dtype} values cannot be a feature")


def _type_of_text(series: pl.Series) -> Typed:
    """The dtype the validator can cast most of the values to (it strips whitespace first)."""
    text = series.str.strip_chars()
    present = text.is_not_null()
    n_present = int(present.sum())
    lowered = text.str.to_lowercase()

    def accept(parsed: pl.Series) -> bool:
        return int((present & parsed.fill_null(False)).sum()) >= MIN_PARSED_SHARE * n_present

    def typed(dtype: ColumnDtype, values: pl.Series, parsed: pl.Series) -> Typed:
        bad = present & ~parsed.fill_null(False)
        failing = series.filter(bad)
        return Typed(dtype, values, bad, example=shown(failing[0]) if failing.len() else "")

    is_bool = lowered.is_in(["true", "false"])
    if accept(is_bool):
        flags = lowered.filter(is_bool.fill_null(False)) == "true"
        return typed("bool", flags, is_bool)
    temporal: tuple[tuple[ColumnDtype, str], ...] = (
        ("date", _ISO_DATE),
        ("datetime", _ISO_DATETIME),
    )
    for dtype, pattern in temporal:
        matches = text.str.contains(pattern)
        if not accept(matches):
            continue
        try:  # the validator's own cast: what does not parse here is quarantined there
            cast = (
                text.str.to_date(strict=False)
                if dtype == "date"
                else text.str.to_datetime(strict=False, time_zone=None)
            )
        except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
            continue
        parsed = matches & cast.is_not_null()
        if accept(parsed):
            return typed(dtype, cast.drop_nulls(), parsed)
    if accept(text.str.contains(_ISO_DATETIME_OFFSET)):
        return Typed(
            "str",
            series.drop_nulls(),
            unusable="timestamps with a UTC offset, which the validator cannot cast yet",
        )
    numbers = text.cast(pl.Float64, strict=False)
    is_number = numbers.is_not_null()
    if n_present and accept(is_number):
        parsed = text.filter(is_number)
        whole = not parsed.str.contains(r"[.eE]").any() and bool(
            (numbers.drop_nulls().drop_nans() == numbers.drop_nulls().drop_nans().round(0)).all()
        )
        values = numbers.drop_nulls()
        if whole and values.is_finite().all():
            return typed("int", values.cast(pl.Int64), is_number)
        return typed("float", values, is_number)
    return Typed("str", series.drop_nulls())


def column_entry(name: str, typed: Typed, nulls: int, height: int) -> Column:
    nullable = nulls > 0
    quarantined = quarantine_note(typed)
    if typed.unusable:
        return Column(name, typed.dtype, role="drop", note=typed.unusable)
    id_reason = _id_like(name, typed, nulls, height)
    if id_reason:
        return Column(
            name, typed.dtype, nullable, role="drop", note=_joined(id_reason, quarantined)
        )
    if typed.values.n_unique() == 1:
        value = shown(typed.values[0])
        return Column(
            name, typed.dtype, role="drop", note=f"a single value ({value}) in the sample"
        )
    ge, isin, note = None, None, ""
    rare: tuple[str, ...] = ()
    if typed.dtype in ("int", "float") and non_negative(typed.values):
        ge = 0.0
    elif typed.dtype == "str":
        distinct = typed.values.n_unique()
        if distinct <= MAX_CATEGORIES:
            isin, rare = _frequent_values(typed.values)
            if rare:
                listed = ", ".join(shown(v) for v in rare)
                note = f"rare value(s) {listed} left out of isin: those rows are quarantined"
        else:
            note = f"text, {distinct} distinct values (one-hot; values in < 5 rows grouped)"
    elif typed.dtype in ("date", "datetime"):
        note = f"{typed.dtype}: a feature as days since 1970-01-01"
    return Column(
        name, typed.dtype, nullable, ge, isin, "feature", _joined(note, quarantined), rare
    )


def _frequent_values(values: pl.Series) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The values an isin check allows, and the rare ones it leaves out (see the module doc)."""
    counts = values.value_counts()
    floor = max(ISIN_MIN_ROWS, math.ceil(ISIN_MIN_SHARE * values.len()))
    is_rare = counts["count"] < floor
    rare_rows = int(counts.filter(is_rare)["count"].sum())
    frequent = counts.filter(~is_rare)[values.name]
    if rare_rows > ISIN_MAX_RARE_SHARE * values.len() or frequent.len() < 2:
        return tuple(sorted(values.unique().to_list())), ()
    return tuple(sorted(frequent.to_list())), tuple(sorted(counts.filter(is_rare)[values.name]))


def _id_like(name: str, typed: Typed, nulls: int, height: int) -> str:
    if typed.dtype not in ("int", "str"):
        return ""
    distinct = typed.values.n_unique()
    if _looks_like_id(name) and distinct > MAX_CATEGORIES:
        return f"ID-like (named like an ID or index, {distinct} distinct values)"
    if nulls or distinct != height or height <= MAX_CATEGORIES:
        return ""
    if typed.dtype == "str":
        return "ID-like (a different text in every row)"
    steps = typed.values.diff().drop_nulls()
    if steps.len() and bool((steps == 1).all()):
        return "ID-like (integers counting up by one: a row number)"
    return ""


def _looks_like_id(name: str) -> bool:
    lowered = name.strip().lower()
    return bool(
        _ID_NAME.search(lowered)
        or _CAMEL_ID.search(name.strip())
        or lowered in {"index", "row", "rownum", "row_number"}
        or lowered.startswith("unnamed:")
    )


def quarantine_note(typed: Typed) -> str:
    if typed.bad is None or not typed.bad.any():
        return ""
    n = int(typed.bad.sum())
    return f"{n} value(s) such as {typed.example} are not {typed.dtype}: rows quarantined"


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def non_negative(values: pl.Series) -> bool:
    finite = values.drop_nans() if values.dtype.is_float() else values
    low = finite.min()
    return isinstance(low, int | float) and low >= 0


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

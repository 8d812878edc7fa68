"""The PII policy: what happens to personal-data columns before anything is stored or trained.

Each column of the spec may declare ``pii``:
- "drop": the column is removed;
- "hash": HMAC-SHA256 of the value keyed with a secret salt (the standard keyed hash; a bare
  sha256(salt + value) is the hand-rolled version). Equal values still match (rows can be
  counted or joined per person) but the raw value cannot be read back. The salt comes from the
  MALLARD_PII_SALT environment variable, never from the spec, because the spec text is stored in
  the warehouse for lineage and would otherwise let anyone hash guesses and compare;
- "generalise": dates to the first day of their month, numbers to a bin label such as "[30, 40)",
  text (postcodes) to its first characters followed by "*".
Failing values in the quarantine are text copies of the raw input: `mask_values` redacts them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import replace

import pandera.polars as pa
import polars as pl

from mallard.core.errors import SpecError
from mallard.tasks.validate import Validated

SALT_ENV = "MALLARD_PII_SALT"
REDACTED = "<pii:redacted>"
# Numbers are generalised to bins this wide. The typical numeric PII column is an age, and
# decade bands ("[30, 40)") are the usual reporting grain for ages: coarse enough that a band holds
# many people, fine enough to keep the signal a model needs.
BIN_WIDTH = 10
PREFIX_CHARS = 3  # "SW1A 1AA" -> "SW1*": the postcode district, not the street


def require_salt(policies: Mapping[str, str]) -> str | None:
    """The salt from MALLARD_PII_SALT (None if unset); an error if a "hash" column needs it."""
    salt = os.environ.get(SALT_ENV) or None
    if salt is None:
        _require_no_hash(policies)
    return salt


def apply_pii(
    frame: pl.DataFrame,
    policies: Mapping[str, str],
    salt: str | None,
    *,
    bin_width: int = BIN_WIDTH,
) -> pl.DataFrame:
    """`frame` with each PII column dropped, hashed or generalised; other columns untouched.

    Policy columns absent from `frame` are skipped: there is nothing of theirs to protect.
    """
    present = {name: policy for name, policy in policies.items() if name in frame.columns}
    unknown = sorted(set(present.values()) - {"drop", "hash", "generalise"})
    if unknown:
        raise ValueError(f"unknown pii policy: {', '.join(unknown)}")
    if not salt:
        _require_no_hash(present)
    replaced = []
    for name, policy in present.items():
        if policy == "hash":
            replaced.append(_hashed(frame[name], salt or ""))  # salt is set: checked above
        elif policy == "generalise":
            replaced.append(_generalised(frame[name], bin_width))
    drops = [name for name, policy in present.items() if policy == "drop"]
    return frame.with_columns(replaced).drop(drops)


def mask_values(quarantine: pl.DataFrame, policies: Mapping[str, str]) -> pl.DataFrame:
    """Quarantine rows with the failing value of any PII column replaced by "<pii:redacted>".

    Every policy redacts, "hash" and "generalise" included: the quarantine holds the raw input,
    before any policy ran, and a salted hash of a value that failed its checks helps nobody.
    """
    is_pii = pl.col("column_name").is_in(list(policies))
    return quarantine.with_columns(
        pl.when(is_pii)
        .then(pl.lit(REDACTED))
        .otherwise(pl.col("failure_value").cast(pl.String))
        .alias("failure_value")
    )


def _require_no_hash(policies: Mapping[str, str]) -> None:
    hashed = [name for name, policy in policies.items() if policy == "hash"]
    if hashed:
        raise SpecError(
            f'[schema.columns] column(s) {", ".join(hashed)} have pii = "hash", which needs a '
            f"secret salt: set the environment variable {SALT_ENV} to a long random string "
            "(and keep it: a new salt gives every value a new hash)"
        )


def _hashed(column: pl.Series, salt: str) -> pl.Series:
    # Polars 2.1 has no cryptographic hash (Expr.hash is a fast non-cryptographic hash whose
    # values may change between versions), so hashlib hashes each DISTINCT value once and
    # replace_strict maps the digests back in one vectorised pass; nulls stay null.
    text = column.cast(pl.String)
    distinct = text.drop_nulls().unique()
    key = salt.encode()
    digests = [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for value in distinct]
    return text.replace_strict(distinct, digests, return_dtype=pl.String)


def _generalised(column: pl.Series, bin_width: int) -> pl.Series:
    dtype = column.dtype
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return _month(column)
    if dtype.is_numeric():
        return _binned(column, bin_width)
    if dtype == pl.String:
        # Robustness for a column that reached us as text: dates and numbers written as text
        # are generalised as what they are, anything else is treated as a code.
        as_date = _parsed_dates(column)
        if as_date is not None:
            return _month(as_date)
        as_number = _parsed_numbers(column)
        if as_number is not None:
            return _binned(as_number, bin_width)
        return _prefixed(column)
    raise SpecError(
        f'[schema.columns.{column.name}] pii = "generalise" works on dates, numbers and text, '
        f'not {dtype}; use pii = "drop" or "hash" for this column'
    )


def _month(column: pl.Series) -> pl.Series:
    days = column.dt.date() if isinstance(column.dtype, pl.Datetime) else column
    return days.dt.month_start().alias(column.name)


def _binned(column: pl.Series, width: int) -> pl.Series:
    # NaN, infinities and values beyond Int64 have no bin: they become null (strict=False).
    lower = (column.cast(pl.Float64) / width).floor().cast(pl.Int64, strict=False) * width
    label = "[" + lower.cast(pl.String) + ", " + (lower + width).cast(pl.String) + ")"
    return label.alias(column.name)


def _prefixed(column: pl.Series) -> pl.Series:
    # Never the whole value: a value of 3 characters or fewer keeps all but its last character.
    text = pl.col(column.name)
    keep = pl.min_horizontal(pl.lit(PREFIX_CHARS), text.str.len_chars() - 1).clip(lower_bound=0)
    return column.to_frame().select(text.str.head(keep) + "*").to_series()


def _parsed_dates(column: pl.Series) -> pl.Series | None:
    text = column.str.strip_chars()
    try:
        parsed = text.str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:  # no date format fits the first value: not dates
        return None
    return parsed if _all_parsed(column, parsed) else None


def _parsed_numbers(column: pl.Series) -> pl.Series | None:
    text = column.str.strip_chars()
    # A leading zero ("01000", "007") marks an identifier such as a postcode, not a quantity.
    if text.str.contains(r"^0\d").any():
        return None
    parsed = text.cast(pl.Float64, strict=False)
    return parsed if _all_parsed(column, parsed) else None


def _all_parsed(column: pl.Series, parsed: pl.Series) -> bool:
    present = column.len() - column.null_count()
    return present > 0 and parsed.null_count() == column.null_count()


def drop_at_ingest(
    frame: pl.DataFrame, schema: pa.DataFrameSchema, policies: Mapping[str, str]
) -> tuple[pl.DataFrame, pa.DataFrameSchema]:
    """ "drop" columns leave right after reading: not validated, not quarantined, not stored."""
    dropped = [name for name, policy in policies.items() if policy == "drop"]
    kept_schema = schema.remove_columns([n for n in dropped if n in schema.columns])
    return frame.drop([n for n in dropped if n in frame.columns]), kept_schema


def protect_pii(validated: Validated, policies: Mapping[str, str], salt: str | None) -> Validated:
    """Valid rows with PII hashed or generalised; quarantine values of PII columns redacted."""
    if not policies:
        return validated
    return replace(
        validated,
        valid=apply_pii(validated.valid, policies, salt),
        quarantine=mask_values(validated.quarantine, policies),
    )

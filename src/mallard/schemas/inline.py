"""Turn a spec's [schema] section into one pandera (Polars backend) schema.

Both forms end here: inline `[schema.columns]` or a `DataFrameModel` named by `schema.model`.
"""

from __future__ import annotations

import importlib
import re

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model import DataFrameModel

from mallard.core.errors import SpecError
from mallard.core.spec import ColumnSpec, SchemaSection

POLARS_DTYPES: dict[str, type[pl.DataType]] = {
    "float": pl.Float64,
    "int": pl.Int64,
    "str": pl.String,
    "bool": pl.Boolean,
    "date": pl.Date,
    "datetime": pl.Datetime,
}


def build_schema(
    section: SchemaSection, target: str | None, *, target_optional: bool = False
) -> pa.DataFrameSchema:
    """The dataset's schema. For training the target must be present and never null; for
    scoring (`target_optional`) it may be absent or null."""
    schema = _from_model(section.model) if section.model else _from_columns(section.columns)
    if target is None:
        return schema
    if target_optional:
        if target not in schema.columns:
            return schema
        return schema.update_columns({target: {"nullable": True, "required": False}})
    if target in schema.columns:
        return schema.update_columns({target: {"nullable": False}})
    return schema.add_columns({target: pa.Column(None, nullable=False, required=True)})


def _from_columns(columns: dict[str, ColumnSpec]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {name: _column(name, spec) for name, spec in columns.items()},
        strict=False,  # columns the spec does not list pass through unchecked
    )


def _column(name: str, spec: ColumnSpec) -> pa.Column:
    checks = []
    if spec.ge is not None:
        checks.append(pa.Check.ge(spec.ge))
    if spec.gt is not None:
        checks.append(pa.Check.gt(spec.gt))
    if spec.le is not None:
        checks.append(pa.Check.le(spec.le))
    if spec.lt is not None:
        checks.append(pa.Check.lt(spec.lt))
    if spec.isin is not None:
        checks.append(pa.Check.isin(spec.isin))
    if spec.regex is not None:
        _require_regex(name, spec.regex)
        checks.append(pa.Check.str_matches(spec.regex))
    return pa.Column(
        POLARS_DTYPES[spec.dtype],
        checks=checks,
        nullable=spec.nullable,
        unique=spec.unique,
        metadata={"pii": spec.pii} if spec.pii else None,
    )


def _require_regex(column: str, pattern: str) -> None:
    """pandera compiles the pattern with Python's `re`, Polars matches with Rust's regex: a
    pattern must satisfy both, checked now rather than as an error in the middle of a run."""
    try:
        re.compile(pattern)
        pl.select(pl.lit("").str.contains(pattern))
    except (re.error, pl.exceptions.PolarsError) as exc:
        # Rust's message spans lines (the pattern, a caret, then `error: why`): keep the why.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line[7:] for line in lines if line.startswith("error: ")), None)
        reason = why or (lines[0] if lines else type(exc).__name__)
        raise SpecError(
            f"[schema.columns.{column}.regex] {pattern!r} is not a valid regular expression "
            f"({reason}); fix the pattern (escape literal "
            "characters such as ( [ . with a backslash)"
        ) from None


def pii_policies(schema: pa.DataFrameSchema) -> dict[str, str]:
    """Column -> pii policy, from inline columns or a DataFrameModel's
    Field(metadata={"pii": ...})."""
    return {
        name: str(column.metadata["pii"])
        for name, column in schema.columns.items()
        if column.metadata and column.metadata.get("pii")
    }


def _from_model(reference: str) -> pa.DataFrameSchema:
    module_name, _, class_name = reference.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"[schema.model] cannot import '{reference}': {exc}") from None
    if not (isinstance(model, type) and issubclass(model, DataFrameModel)):
        raise SpecError(f"[schema.model] '{reference}' is not a pandera polars DataFrameModel")
    schema = model.to_schema()
    schema.strict = False
    return schema

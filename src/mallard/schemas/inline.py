"""Turn a spec's [schema] section into one pandera (Polars backend) schema.

Both forms end here: inline `[schema.columns]` or a `DataFrameModel` named by `schema.model`:
a class of a module in mallard.schemas, or of a .py file beside the spec. No other module is
imported on a spec's word (importing runs a module's code: `antigravity` opens a browser).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

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


SHIPPED_SCHEMAS = "mallard.schemas."


def build_schema(
    section: SchemaSection,
    target: str | None,
    *,
    target_optional: bool = False,
    spec_folder: Path | None = None,
) -> pa.DataFrameSchema:
    """The dataset's schema. For training the target must be present and never null; for
    scoring (`target_optional`) it may be absent or null. `spec_folder` is where a
    `schema.model = "file.py:Class"` is found."""
    if section.model:
        schema = _from_model(section.model, spec_folder)
    else:
        schema = _from_columns(section.columns)
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


def _from_model(reference: str, spec_folder: Path | None) -> pa.DataFrameSchema:
    where, _, class_name = reference.partition(":")
    if where.endswith(".py"):
        module = _file_beside_spec(where, spec_folder, reference)
    elif where.startswith(SHIPPED_SCHEMAS):
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SpecError(f"[schema.model] cannot import '{reference}': {exc}") from None
    else:
        raise SpecError(
            f"[schema.model] '{reference}': name a class of mallard.schemas (e.g. "
            "mallard.schemas.housing:Housing) or of a .py file beside the spec (e.g. "
            "schema.py:Houses); other modules are not imported"
        )
    model = getattr(module, class_name, None)
    if not (isinstance(model, type) and issubclass(model, DataFrameModel)):
        raise SpecError(f"[schema.model] '{reference}' is not a pandera polars DataFrameModel")
    schema = model.to_schema()
    schema.strict = False
    return schema


def _file_beside_spec(name: str, spec_folder: Path | None, reference: str) -> ModuleType:
    """The module of `name`, a file in the spec's own folder (the spec's pattern allows no
    path separators), run under a private module name."""
    path = None if spec_folder is None else spec_folder / name
    if path is None or not path.is_file():
        raise SpecError(f"[schema.model] '{reference}': no file {name} beside the spec")
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(f"mallard_spec_schema_{key}", path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"[schema.model] '{reference}': {path} is not a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: its error, in one line
        raise SpecError(
            f"[schema.model] '{reference}': {path} failed to load: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    return module

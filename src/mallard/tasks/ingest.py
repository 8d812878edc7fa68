"""Read a pipeline's source (CSV / Parquet file or glob, or DuckDB SQL) and fingerprint it."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mallard.core.errors import InputError, describe_files, first_line


@dataclass(frozen=True)
class Ingested:
    frame: pl.DataFrame
    sha256: str  # of the source files' bytes, or of the SQL result in Arrow IPC form
    description: str


def read_files(files: list[Path], text_columns: list[str]) -> Ingested:
    """Read files in name order; `text_columns` are read as text so the validator can cast them
    value by value and quarantine what does not cast."""
    if not files:
        raise InputError("no input files to read")
    frames = [_read_one(path, text_columns) for path in files]
    frame = frames[0] if len(frames) == 1 else _concat(frames, files)
    if frame.height == 0:
        raise InputError(f"{describe_files(files)} has a header but no data rows")
    return Ingested(frame=frame, sha256=files_sha256(files), description=describe_files(files))


def from_query(frame: pl.DataFrame, sql: str) -> Ingested:
    """A `source.sql` result (the warehouse runs the query), fingerprinted in Arrow IPC form."""
    if frame.height == 0:
        raise InputError("[source.sql] the query returned no rows")
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return Ingested(
        frame=frame,
        sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
        description=f"sql: {sql.strip()[:200]}",
    )


def _read_one(path: Path, text_columns: list[str]) -> pl.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path, glob=False)  # a matched file name is not a pattern
        if suffix in {".csv", ".txt", ".tsv"}:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes): expected a header and data rows")
            return pl.read_csv(
                path,
                glob=False,
                separator="\t" if suffix == ".tsv" else ",",
                schema_overrides={name: pl.String for name in text_columns},
                infer_schema_length=10_000,
            )
    except pl.exceptions.NoDataError:
        raise InputError(f"{path} is empty: expected a header and data rows") from None
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, OSError) as exc:
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    raise InputError(f"cannot read {path}: only .csv, .tsv and .parquet files are supported")


def _concat(frames: list[pl.DataFrame], files: list[Path]) -> pl.DataFrame:
    try:
        return pl.concat(frames, how="vertical_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError, pl.exceptions.ComputeError) as exc:
        raise InputError(
            f"the files matched by source.path do not share one set of columns: {first_line(exc)}"
        ) from None


def files_sha256(files: list[Path]) -> str:
    """One file: the sha256 of its bytes. Several: the sha256 over each file's name, size and
    digest, so moving bytes from one file to the next, or renaming one, changes the print."""
    digests = []
    for path in files:
        with path.open("rb") as handle:
            digests.append(hashlib.file_digest(handle, "sha256").hexdigest())
    if len(files) == 1:
        return digests[0]
    combined = hashlib.sha256()
    for path, digest in zip(files, digests, strict=True):
        combined.update(f"{path.name}\0{path.stat().st_size}\0{digest}\n".encode())
    return combined.hexdigest()

"""Output paths a command will write, checked before any work: a folder where a file is meant,
or a file in a folder that does not exist, is the user's to fix (one line, exit 2), not an
OSError after the report has been rendered or the warehouse copied."""

from __future__ import annotations

from pathlib import Path

from mallard.core.errors import InputError


def output_file(path: Path, what: str) -> Path:
    """`path`, once it is known that a file can be written there."""
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; name a file, e.g. {path / 'out'}")
    if not path.parent.is_dir():
        kind = "a file, not a folder" if path.parent.exists() else "missing"
        raise InputError(
            f"{what} {path}: its folder {path.parent} is {kind}; create the folder or name a "
            "file in an existing one"
        )
    return path


def output_folder(path: Path, what: str) -> Path:
    """`path`, once it is known that it is (or can become) a folder."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder; name a folder")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{what} {path}: {parent} is a file, not a folder")
    return path


def write_text(path: Path, text: str, what: str) -> None:
    """Write `text` to `path`; an OS refusal (permissions, disk full) is one line."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {what} {path}: {exc.strerror or exc}") from None

"""mallard: validated, cross-validated models from a file or SQL query, kept in DuckDB."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # importlib.metadata costs ~30 ms: only `mallard --version` pays for it, not every command.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mallard")
        except PackageNotFoundError:  # running from a source tree that is not installed
            return "0.0.0"
    raise AttributeError(f"module 'mallard' has no attribute {name!r}")

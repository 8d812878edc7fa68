"""mallard: validated, cross-validated models from a file or SQL query, kept in DuckDB."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mallard")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

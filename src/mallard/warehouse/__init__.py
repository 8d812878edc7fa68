"""The DuckDB warehouse: the only package that imports duckdb.

Connections are short-lived (open, work, close) because an open connection in one process locks
the file for every other process; writes retry on that lock with backoff for a bounded time.
"""

from mallard.warehouse.queries import (
    champion,
    compare_runs,
    feature_profile,
    leaderboard,
    model,
    pipelines,
    query,
    query_params,
    query_source,
    run_metric,
    run_metrics,
    run_models,
    run_record,
    runs,
    table_counts,
)
from mallard.warehouse.read_copy import ReadCopyError, publish_read_copy, read_copy_path
from mallard.warehouse.records import RunBundle, RunRecord
from mallard.warehouse.writes import (
    record_run_started,
    write_promotion,
    write_report,
    write_run,
)

__all__ = [
    "ReadCopyError",
    "RunBundle",
    "RunRecord",
    "champion",
    "compare_runs",
    "feature_profile",
    "leaderboard",
    "model",
    "pipelines",
    "publish_read_copy",
    "query",
    "query_params",
    "query_source",
    "read_copy_path",
    "record_run_started",
    "run_metric",
    "run_metrics",
    "run_models",
    "run_record",
    "runs",
    "table_counts",
    "write_promotion",
    "write_report",
    "write_run",
]

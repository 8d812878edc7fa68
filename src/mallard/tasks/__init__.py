"""Pipeline steps: pure functions over frames, each wrapped by a thin Prefect task."""

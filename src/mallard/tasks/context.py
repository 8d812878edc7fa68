"""What the steps after tuning share about one train run, so they take one argument for it
instead of the same five."""

from __future__ import annotations

from dataclasses import dataclass

from mallard.tasks.features import Features
from mallard.tasks.metrics import Target
from mallard.tasks.split import Split


@dataclass(frozen=True)
class RunContext:
    run_id: str
    features: Features
    split: Split | None  # None for clustering: every row is used
    target: Target
    primary: str
    seed: int

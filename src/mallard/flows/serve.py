"""Schedules: a spec's [schedule] crons as Prefect deployments of the train and score flows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from mallard.core.spec import Spec
from mallard.flows.score import score
from mallard.flows.train import train


def deployments(spec: Spec, warehouse_file: Path) -> list[RunnerDeployment]:
    """One deployment per cron in the spec, named after the pipeline, with absolute paths so
    the served runs do not depend on the directory they start in. Their runs are tagged
    mallard, the pipeline, the flow and the task kind (as CLI runs are, see run_record)."""
    name = spec.pipeline.name
    warehouse_file = Path(warehouse_file).resolve()
    planned: list[Any] = []  # to_deployment's annotation admits a coroutine; called sync, it isn't
    if spec.schedule.train:
        planned.append(
            train.to_deployment(
                name=f"{name}-train",
                cron=spec.schedule.train,
                parameters={
                    "spec_path": str(spec.spec_path),
                    "warehouse_file": str(warehouse_file),
                },
                tags=["mallard", name, "train", spec.pipeline.task],
                entrypoint_type=EntrypointType.MODULE_PATH,
                description=f"Retrain pipeline {name} from {spec.spec_path}",
            )
        )
    if spec.schedule.score:
        pattern = Path(spec.schedule.score.input)
        if not pattern.is_absolute():
            pattern = spec.spec_path.parent / pattern
        planned.append(
            score.to_deployment(
                name=f"{name}-score",
                cron=spec.schedule.score.cron,
                parameters={
                    "spec_path": str(spec.spec_path),
                    "input_path": str(pattern),
                    "warehouse_file": str(warehouse_file),
                },
                tags=["mallard", name, "score", spec.pipeline.task],
                entrypoint_type=EntrypointType.MODULE_PATH,
                description=f"Score {pattern} with the champion of {name}",
            )
        )
    return planned


def serve_deployments(planned: list[RunnerDeployment]) -> None:
    """Register the deployments and run their scheduled flow runs until interrupted."""
    serve(*planned)

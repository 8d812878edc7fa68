"""The table of flow steps: each Prefect task wraps the plain function of the same name."""

from __future__ import annotations

import importlib

import pytest
from prefect import Task

from mallard.flows import steps

STEP_MODULES = {
    "quarantine_invalid": "validate",
    "protect_pii": "privacy",
    "prepare_features": "features",
    "make_split": "split",
    "tune_candidate": "tune",
    "tune_clusterer": "cluster",
    "build_ensemble": "ensembles",
    "evaluation_table": "evaluate",
    "register_models": "register",
    "select_champion": "uncertainty",
    "finalize": "uncertainty",
    "champion_decision": "champion",
    "audit_run": "audit",
}


@pytest.mark.parametrize(("name", "module"), sorted(STEP_MODULES.items()))
def test_each_step_wraps_the_function_of_its_own_name(name: str, module: str) -> None:
    wrapped = getattr(steps, name)
    function = getattr(importlib.import_module(f"mallard.tasks.{module}"), name)

    assert isinstance(wrapped, Task)
    assert wrapped.fn is function
    assert wrapped.name == name


def test_every_task_in_the_table_is_listed_here() -> None:
    tasks = {name for name, value in vars(steps).items() if isinstance(value, Task)}

    assert tasks == set(STEP_MODULES)

"""Start-up cost (issue 11): importing the flows loads no scikit-learn, scipy, skops or
matplotlib. Those cost ~1.1 s of every command's start-up and are imported inside the functions
that use them, once a step runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"sklearn", "scipy", "skops", "matplotlib"}

# Modules whose own imports are checked one by one below (the second test).
CHECKED = [
    "mallard.tasks.cluster",
    "mallard.tasks.ensembles",
    "mallard.tasks.fairness",
    "mallard.tasks.families",
    "mallard.tasks.importance",
    "mallard.tasks.metrics",
    "mallard.tasks.model_files",
    "mallard.tasks.register",
    "mallard.tasks.split",
    "mallard.tasks.tune",
    "mallard.tasks.features",
    "mallard.tasks.uncertainty",
    "mallard.tasks.threads",
    "mallard.tasks.predict",
    "mallard.tasks.drift",
    "mallard.report.plots",
    "mallard.report.sections",
    "mallard.report.task_sections",
    "mallard.core.lineage",
]
# Records every import statement that CHECKED modules run while being imported (so at module
# level) and names a heavy library; builtins.__import__ sees the importer's globals.
PROBE = """
import builtins, importlib, json, sys

module, heavy, checked = sys.argv[1], *map(set, json.loads(sys.argv[2]))
real_import, direct = builtins.__import__, []

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if level == 0 and name.split(".")[0] in heavy and importer in checked:
        direct.append(f"{importer} imports {name}")
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = spy
importlib.import_module(module)
print(json.dumps({
    "direct": direct,
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & heavy),
}))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_flows_loads_no_heavy_library() -> None:
    out = _run(
        "import mallard.flows.train, mallard.flows.score, mallard.flows.validate, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sklearn','scipy','skops','matplotlib'}))"
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", CHECKED)
def test_module_imports_no_heavy_library_itself(module: str) -> None:
    """No import statement of the module runs at import time for a heavy library, and nothing
    heavy loads through the modules it imports either."""
    groups = json.dumps([sorted(HEAVY), CHECKED])
    found = json.loads(_run(PROBE, module, groups))
    assert found["direct"] == []
    assert found["heavy"] == []

# Two commands on a fresh machine with only Python 3.11 and make: `make demo`, `make test`.
# uv itself is bootstrapped from the package index into .tools/ (pip into a small venv).

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
SYNCED := .venv/.synced-$(UV_VERSION)
RUN := $(UV) run --locked --no-sync
# The editable install's own sources are not in site-packages, so uv's compile-bytecode
# (pyproject.toml) skips them; compile them before each use (up-to-date files are skipped).
BYTECODE := $(RUN) python -m compileall -q src

.PHONY: demo test check lint typecheck bench env clean stack

env: $(SYNCED)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(SYNCED): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked
	$(RUN) python -m mallard.cli.server_template
	@touch $@

demo: $(SYNCED)
	@$(BYTECODE)
	$(RUN) mallard demo

test: $(SYNCED)
	@$(BYTECODE)
	$(RUN) pytest

lint: $(SYNCED)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports

typecheck: $(SYNCED)
	$(RUN) mypy -p mallard

check: lint typecheck test

bench: $(SYNCED)  # quality and Dask first, so results.md includes this run's quality.md and dask.md
	@$(BYTECODE)
	$(RUN) python benchmarks/quality.py
	$(RUN) python benchmarks/dask_bench.py --rows 20000 > benchmarks/dask.md
	$(RUN) python benchmarks/run.py --rows 20000 200000 1000000

# issue 13: PostgreSQL, a Prefect server on it, a worker and the spec's scheduled deployments,
# state in ./.mallard-stack; `mallard stack status` / `mallard stack down` (SIGINT) afterwards.
STACK_SPEC ?= pipelines/housing_scheduled.toml
stack: $(SYNCED)
	$(RUN) mallard stack up $(STACK_SPEC)

clean:
	rm -rf .venv $(TOOLS) mallard-demo warehouse.duckdb

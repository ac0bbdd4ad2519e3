# persotool: `make demo` and `make test` work on a machine with only python3 and make.
# The environment (.venv) is created with uv, installed into .tools/ with pip when not on PATH.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export OPENBLAS_NUM_THREADS := 1
export MPLBACKEND := Agg

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
VENV := .venv
STAMP := $(VENV)/.synced
RUN := $(VENV)/bin
DEMO := build/demo

.PHONY: setup demo test bench lint flags docs docs-check ui clean

setup: $(STAMP)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

demo: export COLUMNS = 110
demo: $(STAMP)
	$(RUN)/persotool ingest datasets/movielens-small/ratings.csv --preset movielens -o $(DEMO)/movielens --force
	$(RUN)/persotool datasets info $(DEMO)/movielens
	$(RUN)/persotool split $(DEMO)/movielens -o $(DEMO)/split --strategy leave-last --leave-last 10 --valid \
	    --min-item-interactions 5 --force
	$(RUN)/persotool tune $(DEMO)/split --space ease --trials 12 -o $(DEMO)/tune-ease --force
	$(RUN)/persotool benchmark $(DEMO)/split --config benchmark -o $(DEMO)/benchmark --force \
	    --add ease-tuned=$(DEMO)/tune-ease/best.toml
	$(RUN)/persotool calibrate $(DEMO)/movielens -o $(DEMO)/world --force
	$(RUN)/persotool backtest $(DEMO)/movielens --cutoff 0.8 -o $(DEMO)/backtest --force
	$(RUN)/persotool simulate $(DEMO)/movielens --config demo/simulation-feedback.toml -o $(DEMO)/feedback-loop \
	    --force
	$(RUN)/persotool simulate $(DEMO)/movielens --config demo/simulation.toml -o $(DEMO)/ab-test --force
	@echo "Runs are in ./mlflow.db: see them with 'make ui'."

test: $(STAMP)
	$(RUN)/pytest -q -n 2 tests

bench: $(STAMP)
	$(RUN)/python benchmarks/ingest.py
	$(RUN)/python benchmarks/evaluate.py
	$(RUN)/python benchmarks/simulate.py
	$(RUN)/python benchmarks/validate_simulation.py
	$(RUN)/python benchmarks/validate_segments.py
	$(RUN)/python benchmarks/validate_ope.py
	$(RUN)/python benchmarks/loop_ope.py
	$(RUN)/python benchmarks/obp_reference.py
	$(RUN)/python benchmarks/ope.py
	$(RUN)/python benchmarks/tracking.py
	$(RUN)/python benchmarks/cli_help.py
	$(RUN)/python benchmarks/tune.py
	$(RUN)/python benchmarks/backtest.py
	$(RUN)/python benchmarks/robustness.py
	$(RUN)/python scripts/docs.py fill

lint: $(STAMP)
	$(RUN)/ruff check src tests benchmarks scripts
	$(RUN)/ruff format --check src tests benchmarks scripts
	$(RUN)/lint-imports
	$(RUN)/python -m persotool.stages.catalogue --check

# the documents' result tables: docs/demo/ from make demo's outputs, then every marked block of
# README.md and docs/*.md from docs/demo/ and benchmarks/results/ (scripts/docs.py says how)
docs: $(STAMP)
	$(RUN)/python scripts/docs.py snapshot $(DEMO)

# fails when a document's table differs from its source, or docs/demo/ from make demo's outputs
docs-check: $(STAMP)
	@if [ -d $(DEMO)/ab-test ]; then $(RUN)/python scripts/docs.py check --demo $(DEMO); \
	else echo "no $(DEMO): checking the documents against docs/demo/ only (run make demo first to check it too)"; \
	$(RUN)/python scripts/docs.py check; fi

flags: $(STAMP)
	$(RUN)/python -m persotool.stages.catalogue

ui: $(STAMP)
	$(RUN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf build .pytest_cache .ruff_cache

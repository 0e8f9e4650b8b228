# theorylab: `make demo` (quick claim suite + HTML report) and `make test` (test suite).
# Both create .venv on first use.  torch is installed first: the pinned CPU build where
# it lies on disk (no CUDA download), otherwise any torch >= 2.2 from the index.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo results test test-slow bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q "torch>=2.2"
	$(BIN)/python -m pip install -q -e ".[dev,ray,hf]"
	touch $@

demo: setup
	$(BIN)/theorylab check --all --tier quick
	$(BIN)/theorylab report --out report.html

results: setup                 # after make demo: docs/RESULTS.md and the README's verdict table
	$(BIN)/theorylab results

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run.py --out docs/BENCHMARKS.md

lint: setup
	$(BIN)/ruff check theorylab tests benchmarks

clean:
	rm -rf $(VENV) theorylab-runs report.html report.md

# Rollcast developer entry points. Quickstart: `make serve` (run it), `make test` (test it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup serve test test-fast lint typecheck bench clean

# A virtual environment with the CPU build of torch (pinned: an unpinned torch pulls CUDA
# packages) and Rollcast installed in editable mode with its dev tools.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The embedded default: API + worker in one process, in-process broker, tiny model on CPU.
serve: setup
	$(BIN)/rollcast serve --host $(HOST) --port $(PORT)

# Every test: unit, integration (real Redis on 127.0.0.1:6379), browser (headless Chromium).
test: setup
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.attention --quick
	$(BIN)/python -m bench.encode

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info

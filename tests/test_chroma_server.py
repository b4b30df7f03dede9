"""The same ingestion and search against a real `chroma run` server."""

from __future__ import annotations

import pytest

from ingest.job import IngestJob
from rag.index.store import StoreUnavailable, open_store
from rag.retrieval.retrieve import make_retriever, search_papers
from rag.settings import Settings
from tests.helpers import SAMPLE, free_port

pytestmark = pytest.mark.slow


def test_ingest_and_search_through_a_chroma_server(
    chroma_server: str, embeddings, tmp_path
) -> None:
    settings = Settings(data_dir=tmp_path / "local", chroma_url=chroma_server)
    store = open_store(settings)
    assert store.location == chroma_server
    first = IngestJob(store, embeddings, settings, progress=False).run([str(SAMPLE)])
    assert first.added == 61 and first.chunks_written == store.count()
    # A second client (as another process would) sees the same collection.
    other = open_store(settings)
    assert other.count() == store.count() and other.paper_count() == 61
    again = IngestJob(other, embeddings, settings, progress=False).run([str(SAMPLE)])
    assert again.unchanged == 61 and again.chunks_written == 0
    hits = search_papers(
        "random forests as adaptive smoothers", make_retriever(settings, other, embeddings), k=3
    )
    assert hits[0].title.startswith("Why do Random Forests Work?")
    # Locally, only the reader's own BM25 index: the store's data stays on the server.
    assert [p.name for p in (tmp_path / "local").iterdir()] == ["lexical"]


def test_unreachable_server_is_a_clear_error(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}", request_timeout=2
    )
    with pytest.raises(StoreUnavailable, match="cannot open Chroma"):
        open_store(settings)

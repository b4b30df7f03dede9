"""Embedded Chroma written by another process: a serving process opens the store
afresh when it finds a version stamped by another process, so its dense search
finds the papers that `citeqa ingest` wrote beside it (Chroma's in-process vector
index would not), while its own writes reopen nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ingest.job import IngestJob
from rag.index.store import open_store
from rag.retrieval.retrieve import make_retriever
from rag.settings import Settings
from tests.helpers import VENV_BIN, base_env

pytestmark = pytest.mark.slow

PAPERS = [
    (
        "2401.10001",
        "Sparse attention for long documents",
        "We study sparse attention patterns for language models reading long documents. "
        "Block-sparse attention matches dense attention at a fraction of the memory.",
    ),
    (
        "2401.10002",
        "Label noise in image classification",
        "Training labels are often wrong. We show that early stopping and small-loss "
        "selection recover most of the accuracy lost to symmetric label noise.",
    ),
]
NEW = (
    "2401.19999",
    "Acoustic monitoring of glacier calving",
    "Hydrophones moored near tidewater glaciers record the underwater sound of "
    "calving icebergs. We detect calving events from these recordings and estimate "
    "the ice volume lost from the acoustic energy of each event.",
)


def _jsonl(path: Path, papers: list[tuple[str, str, str]]) -> str:
    path.write_text(
        "".join(json.dumps({"id": i, "title": t, "abstract": a}) + "\n" for i, t, a in papers)
    )
    return str(path)


def _ingest_in_another_process(tmp_path: Path, data: Path) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "citeqa"), "ingest", _jsonl(tmp_path / "b.jsonl", [NEW]), "--json"],
        env=base_env(CITEQA_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1


def test_a_serving_process_sees_papers_another_process_ingested(tmp_path: Path, embeddings) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"lexical_refresh_seconds": 0})}
    )
    store = open_store(settings)
    IngestJob(store, embeddings, settings, progress=False).run(
        [_jsonl(tmp_path / "a.jsonl", PAPERS)]
    )
    assert store.reopened == 0  # its own writes
    retriever = make_retriever(settings, store, embeddings)
    query = "how is the ice lost by calving glaciers estimated from underwater sound?"
    assert NEW[0] not in [s.paper_id for s in retriever.retrieve(query, k=3, mode="dense").sources]

    _ingest_in_another_process(tmp_path, data)

    # A store opened now in this process (which Chroma would hand the System it
    # already has for the path) sees the new paper; so does the serving one, which
    # moves to the System the other loaded: one fresh load for one outside write.
    later = open_store(settings)
    (nearest, *_) = later.nearest(embeddings.embed_query(query), 3, None)
    assert nearest[0].startswith(NEW[0]) and later.reopened == 1
    for mode in ("dense", "hybrid", "bm25"):
        found = retriever.retrieve(query, k=3, mode=mode).sources
        assert found and found[0].paper_id == NEW[0], mode
    assert store.reopened == 0
    # The new chunk's vector is readable too (what a BM25 index build stores).
    (hit,) = later.get([f"{NEW[0]}#0"], with_vectors=True)
    assert hit.vector is not None and len(hit.vector) == 384
    # Its own writes after that still reopen nothing.
    IngestJob(store, embeddings, settings, progress=False).run(
        [_jsonl(tmp_path / "c.jsonl", [(PAPERS[0][0], PAPERS[0][1], PAPERS[0][2] + " Revised.")])]
    )
    store.version()
    later.version()
    assert store.reopened == 0 and later.reopened == 1


def test_vectors_read_after_another_process_wrote_come_from_the_store_opened_afresh(
    tmp_path: Path, embeddings
) -> None:
    """Reading vectors (a BM25 catch-up does) before any version check: Chroma's
    stale in-process index fails with "Error finding id"; the store follows the
    stamp, opens afresh and reads again, instead of giving records without vectors."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    store = open_store(settings)
    IngestJob(store, embeddings, settings, progress=False).run(
        [_jsonl(tmp_path / "a.jsonl", PAPERS)]
    )
    store.get([f"{PAPERS[0][0]}#0"], with_vectors=True)  # its vector index is loaded
    _ingest_in_another_process(tmp_path, data)
    (hit,) = store.get([f"{NEW[0]}#0"], with_vectors=True)
    assert hit.vector is not None and len(hit.vector) == 384
    assert store.reopened == 1

"""The query path's record cache: chunk text and metadata read from Chroma once per
collection version, then served from memory."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.job import IngestJob
from rag.retrieve import make_retriever
from rag.settings import Settings
from rag.store import RecordCache, open_store
from rag.types import ChunkHit


def _hit(cid: str) -> ChunkHit:
    return ChunkHit(cid, cid.split("#")[0], f"text of {cid}", float("nan"), {})


def test_record_cache_fetches_only_misses_and_evicts_least_recent() -> None:
    calls: list[list[str]] = []

    def fetch(ids):  # type: ignore[no-untyped-def]
        calls.append(list(ids))
        return [_hit(i) for i in ids if not i.startswith("gone")]

    cache = RecordCache(3)
    got = cache.get_many(["a#0", "b#0", "gone#0", "a#0"], fetch)
    assert set(got) == {"a#0", "b#0"}  # unknown ids are left out, duplicates asked once
    assert calls == [["a#0", "b#0", "gone#0"]]
    assert set(cache.get_many(["b#0", "a#0"], fetch)) == {"a#0", "b#0"}
    assert len(calls) == 1  # all from memory
    cache.get_many(["c#0", "d#0"], fetch)  # a#0 was used after b#0: b#0 goes
    assert len(cache) == 3
    cache.get_many(["a#0"], fetch)
    assert len(calls) == 2
    cache.get_many(["b#0"], fetch)
    assert calls[-1] == ["b#0"]
    off = RecordCache(0)
    off.get_many(["a#0"], fetch)
    off.get_many(["a#0"], fetch)
    assert len(off) == 0 and calls[-2:] == [["a#0"], ["a#0"]]


def _write(path: Path, rev: str) -> None:
    path.write_text(
        json.dumps(
            {
                "id": "2405.00077",
                "title": "Marrowlight lenses for sparse probing",
                "abstract": f"Marrowlight probing revision {rev} shows sparse probes find "
                f"syntax in layer {rev}.",
            }
        )
        + "\n"
    )


def test_retrieval_reads_records_once_per_version(tmp_path: Path, embeddings, monkeypatch) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    src = tmp_path / "p.jsonl"
    _write(src, "one")
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])
    retriever = make_retriever(settings, store, embeddings)
    reads: list[int] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda ids: reads.append(len(ids)) or real_get(ids))

    first = retriever.retrieve("marrowlight sparse probing", k=1)
    assert "revision one" in first.sources[0].abstract and reads
    n = len(reads)
    again = retriever.retrieve("marrowlight sparse probing", k=1)
    assert len(reads) == n, "the second query read records from Chroma again"
    assert again.sources[0].passages[0].text == first.sources[0].passages[0].text

    # The paper changes (same chunk id): the new version brings a new cache, so the
    # old text is never shown once the reader has seen the new version stamp.
    _write(src, "two")
    job = IngestJob(store, embeddings, settings, progress=False, lexical=retriever.lexical)
    assert job.run([str(src)]).updated == 1
    after = retriever.retrieve("marrowlight sparse probing", k=1)
    assert "revision two" in after.sources[0].abstract
    assert "revision two" in after.sources[0].passages[0].text
    assert len(reads) > n


def test_bm25_kernels_compiled_by_numba_score_like_numpy(sample_retriever) -> None:
    """The JIT path (what the API switches to after its warm-up) ranks with the
    same scores as numpy, with and without a filter mask, and skips unknown words."""
    import numpy as np

    from rag.lexical import compile_jit, jit_ready

    index = sample_retriever.lexical.get()
    queries = ["random forests smoothing", "low light image enhancement", "diffusion"]
    mask = np.array([i % 2 for i in range(len(index))], dtype=np.float32)
    index.retriever.backend = "numpy"
    before = [(index.search(q, 20), index.search(q, 20, mask)) for q in queries]
    assert compile_jit() and jit_ready()
    after = [(index.search(q, 20), index.search(q, 20, mask)) for q in queries]
    assert index.retriever.backend == "numba"
    for (plain, masked), (jplain, jmasked) in zip(before, after, strict=True):
        assert plain and masked
        assert [round(h.score, 4) for h in plain] == [round(h.score, 4) for h in jplain]
        assert {h.id for h in plain[:5]} == {h.id for h in jplain[:5]}
        assert [round(h.score, 4) for h in masked] == [round(h.score, 4) for h in jmasked]
        assert all(index.ids.index(h.id) % 2 == 1 for h in jmasked)
    assert index.search("zzzqqq xxyyzz", 5) == []

"""The query path's records: chunk text and metadata read from the BM25 index's
stored documents (from the store only for papers changed since the index's view),
once per collection version, then served from memory."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.job import IngestJob
from rag.index.lexical import LexicalIndex
from rag.index.store import RecordCache, open_store
from rag.retrieval.retrieve import make_retriever
from rag.settings import Settings
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


def _count_reads(monkeypatch, store) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """(chunk ids queries read from the index's stored documents, from the store)."""
    from rag.index.lexical import LexicalCache

    local: list[str] = []
    fetched: list[str] = []
    real_records, real_get = LexicalIndex.records, store.get
    monkeypatch.setattr(
        LexicalIndex, "records", lambda self, ids: local.extend(ids) or real_records(self, ids)
    )
    monkeypatch.setattr(store, "get", lambda ids: fetched.extend(ids) or real_get(ids))
    # The index's catch-up reads the changed papers from the store: not counted.
    monkeypatch.setattr(LexicalCache, "_read", lambda self, ids: iter(real_get(ids)))
    return local, fetched


def _hold_catch_ups(monkeypatch):  # type: ignore[no-untyped-def]
    """Make BM25 catch-ups wait until the returned event is set."""
    import threading

    from rag.index.lexical import LexicalCache

    release = threading.Event()
    real = LexicalCache._apply

    def slow_apply(self, writer, changes):  # type: ignore[no-untyped-def]
        assert release.wait(30), "the test never released the catch-up"
        return real(self, writer, changes)

    monkeypatch.setattr(LexicalCache, "_apply", slow_apply)
    return release


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
    reads, from_store = _count_reads(monkeypatch, store)

    first = retriever.retrieve("marrowlight sparse probing", k=1)
    assert "revision one" in first.sources[0].abstract and reads
    assert not from_store, "the index holds every record: the store was asked"
    n = len(reads)
    again = retriever.retrieve("marrowlight sparse probing", k=1)
    assert len(reads) == n, "the second query read records again"
    assert again.sources[0].passages[0].text == first.sources[0].passages[0].text

    # The paper changes (same chunk id): the new version brings a new cache, so the
    # old text is never shown once the reader has seen the new version stamp.
    _write(src, "two")
    job = IngestJob(store, embeddings, settings, progress=False)
    assert job.run([str(src)]).updated == 1
    retriever.lexical.invalidate()  # what the API's write routes do after a write
    from_store.clear()  # the ingest job reads the store, not counted here
    after = retriever.retrieve("marrowlight sparse probing", k=1)
    assert "revision two" in after.sources[0].abstract
    assert "revision two" in after.sources[0].passages[0].text
    assert len(reads) > n and not from_store  # the index caught up in the query


def test_a_large_index_catches_up_in_the_background_while_the_old_one_answers(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    """Above `lexical_sync_below` chunks a changed collection never stalls a query:
    the old BM25 view answers (with records read afresh, so no old text is shown)
    until the changed papers are applied and the new view is swapped in."""
    import time

    settings = Settings(
        data_dir=tmp_path / "d",
        retrieval={"lexical_sync_below": 1, "lexical_refresh_seconds": 0},
    )
    store = open_store(settings)
    src = tmp_path / "p.jsonl"
    _write(src, "one")
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])
    reader = make_retriever(settings, store, embeddings)  # like an API process
    assert "revision one" in reader.retrieve("marrowlight probing", k=1).sources[0].abstract
    old = reader.lexical.current
    assert old is not None and not reader.lexical.rebuilding

    # Another process ingests: the paper changes and a new one arrives.
    _write(src, "two")
    with src.open("a") as fh:
        fh.write(
            json.dumps(
                {
                    "id": "2405.00078",
                    "title": "Quillfern tokenisers",
                    "abstract": "Quillfern tokenisers split rare words into stable pieces.",
                }
            )
            + "\n"
        )
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])

    release = _hold_catch_ups(monkeypatch)
    # A large index checks the store beside the queries; this query checks it itself.
    reader.lexical.invalidate()
    t0 = time.perf_counter()
    during = reader.retrieve("marrowlight probing", k=1)
    assert time.perf_counter() - t0 < 10, "the query waited for the rebuild"
    assert reader.lexical.rebuilding and reader.lexical.current is old
    # The old index answered, but records were read again: the new text is shown.
    assert "revision two" in during.sources[0].abstract
    # BM25 does not know the new paper yet (dense search does).
    assert not reader.retrieve("quillfern", k=1, mode="bm25").sources
    assert reader.retrieve("quillfern tokenisers", k=1, mode="dense").sources[0].paper_id == (
        "2405.00078"
    )

    release.set()
    reader.lexical.wait(30)
    assert not reader.lexical.rebuilding and reader.lexical.current is not old
    found = reader.retrieve("quillfern", k=1, mode="bm25").sources
    assert found and found[0].paper_id == "2405.00078"
    # Only the two changed papers were read again, never the whole store.
    assert reader.lexical.stats.full_builds == 1 and reader.lexical.stats.papers_applied == 2


def test_mmr_reorders_papers_and_embeds_only_chunks_bm25_found_alone(
    sample_retriever, monkeypatch
) -> None:
    query = "diffusion models generalization"
    plain = sample_retriever.retrieve(query, k=4, mmr=False)
    diverse = sample_retriever.retrieve(query, k=4, mmr=True)
    assert len(diverse.sources) == 4
    assert len({s.paper_id for s in diverse.sources}) == 4
    assert diverse.sources[0].paper_id == plain.sources[0].paper_id  # the best stays first

    # Dense search returns nothing: every paper was found by BM25 alone, so MMR must
    # embed their best chunks itself (once, in one call).
    calls: list[int] = []
    emb = sample_retriever.embeddings
    real = emb.embed_documents
    monkeypatch.setattr(sample_retriever.store, "nearest", lambda *a, **k: [])
    monkeypatch.setattr(
        emb, "embed_documents", lambda texts: calls.append(len(texts)) or real(texts)
    )
    lexical = sample_retriever.retrieve(query, k=4, mmr=True)
    assert len(lexical.sources) == 4 and len(calls) == 1 and calls[0] >= 4


def test_forgetting_papers_drops_their_records_even_those_being_read() -> None:
    cache = RecordCache(10)
    fetched: list[list[str]] = []

    def fetch(ids):  # type: ignore[no-untyped-def]
        fetched.append(list(ids))
        return [_hit(i) for i in ids]

    cache.get_many(["a#0", "a#1", "b#0"], fetch)
    cache.forget_papers(["a"])
    cache.get_many(["a#0", "a#1", "b#0"], fetch)
    assert fetched[-1] == ["a#0", "a#1"]  # b's record stayed
    cache.get_many(["a#0", "b#0"], fetch)
    assert len(fetched) == 2  # a's new records are served

    # A read in flight when its paper changes: what it fetched is not served later.
    def fetch_while_b_changes(ids):  # type: ignore[no-untyped-def]
        cache.forget_papers(["b"])
        return fetch(ids)

    cache.forget_papers(["b"])
    cache.get_many(["b#0"], fetch_while_b_changes)
    cache.get_many(["b#0"], fetch)
    assert fetched[-1] == ["b#0"] and len(fetched) == 4

    # Too many papers remembered as changed: the cache starts over, and a read in
    # flight then is not served either.
    small = RecordCache(10)
    small.FORGOTTEN_MAX = 2  # type: ignore[misc]
    small.get_many(["c#0"], fetch)

    def fetch_while_many_change(ids):  # type: ignore[no-untyped-def]
        small.forget_papers(["x", "y", "z"])
        return fetch(ids)

    small.get_many(["d#0"], fetch_while_many_change)
    assert len(small) == 1  # c went with the reset; d came in after it
    n = len(fetched)
    small.get_many(["d#0"], fetch)
    assert len(fetched) == n + 1  # d's read began before the reset: read again


def _write_papers(path: Path, revs: dict[str, str]) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": pid,
                    "title": f"Marrowlight lenses {pid}",
                    "abstract": f"Marrowlight probing of {pid}, revision {rev}, shows sparse "
                    "probes find syntax.",
                }
            )
            + "\n"
            for pid, rev in revs.items()
        )
    )


TWO_PAPERS = {"2405.00071": "one", "2405.00072": "one"}


def _ingested(tmp_path: Path, embeddings, revs: dict[str, str], **retrieval):  # type: ignore[no-untyped-def]
    """Settings, an embedded store holding the papers `revs` names, and their file."""
    settings = Settings(data_dir=tmp_path / "d", retrieval=retrieval)
    store = open_store(settings)
    src = tmp_path / "p.jsonl"
    _write_papers(src, revs)
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])
    return settings, store, src


def test_a_store_change_costs_the_record_cache_the_changed_papers_only(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    settings, store, src = _ingested(tmp_path, embeddings, TWO_PAPERS)
    retriever = make_retriever(settings, store, embeddings)
    reads, _ = _count_reads(monkeypatch, store)
    first = retriever.retrieve("marrowlight sparse probing", k=2)
    assert {s.paper_id for s in first.sources} == {"2405.00071", "2405.00072"}

    _write_papers(src, {"2405.00071": "two", "2405.00072": "one"})
    assert IngestJob(store, embeddings, settings, progress=False).run([str(src)]).updated == 1
    retriever.lexical.invalidate()
    reads.clear()
    after = retriever.retrieve("marrowlight sparse probing", k=2)
    by_id = {s.paper_id: s for s in after.sources}
    assert "revision two" in by_id["2405.00071"].abstract
    assert "revision one" in by_id["2405.00072"].abstract
    assert reads and {r.split("#")[0] for r in reads} == {"2405.00071"}

    # A change the log cannot name (a version stamp alone) drops every record.
    store.bump_version()
    retriever.lexical.invalidate()
    reads.clear()
    retriever.retrieve("marrowlight sparse probing", k=2)
    assert {r.split("#")[0] for r in reads} == {"2405.00071", "2405.00072"}


def test_an_unreadable_change_log_drops_every_record(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    import pytest

    from rag.index.store import StoreUnavailable

    settings, store, src = _ingested(tmp_path, embeddings, TWO_PAPERS)
    retriever = make_retriever(settings, store, embeddings)
    retriever.retrieve("marrowlight sparse probing", k=2)
    assert len(retriever.lexical.records) > 0

    def down(_position):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("log down")

    monkeypatch.setattr(store, "changes_since", down)
    store.bump_version()
    retriever.lexical.invalidate()
    with pytest.raises(StoreUnavailable):  # the BM25 catch-up reads the log too: a 503
        retriever.lexical.get()
    assert len(retriever.lexical.records) == 0  # nothing kept that may be old


def test_a_lagging_index_serves_the_unchanged_papers_and_the_store_the_changed_ones(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    """While a large index catches up in the background, a query reads from the store
    only the records of the papers the log names since the index's view: the others
    come from the index's stored documents, and no old text of a changed paper, nor
    a deleted paper, is shown."""

    papers = {"2405.00071": "one", "2405.00072": "one", "2405.00073": "one"}
    settings, store, src = _ingested(
        tmp_path, embeddings, papers,
        lexical_sync_below=1, lexical_refresh_seconds=0, record_cache=0,
    )  # fmt: skip
    reader = make_retriever(settings, store, embeddings)
    local, from_store = _count_reads(monkeypatch, store)
    first = reader.retrieve("marrowlight sparse probing", k=3)
    assert {s.paper_id for s in first.sources} == set(papers)
    assert local and not from_store
    old = reader.lexical.current

    # Another process changes one paper and deletes another, as the ingest job does:
    # logged, then written.
    _write_papers(src, {**papers, "2405.00071": "two"})
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])
    gone = [c.id for c in store.chunks_of(["2405.00073"])["2405.00073"]]
    store.log_changes(["2405.00073"])
    store.delete(gone)
    store.log_changes(["2405.00073"])

    release = _hold_catch_ups(monkeypatch)
    reader.lexical.invalidate()  # this query checks the store itself
    local.clear()
    from_store.clear()
    during = reader.retrieve("marrowlight sparse probing", k=3, mode="bm25")
    assert reader.lexical.rebuilding and reader.lexical.current is old
    by_id = {s.paper_id: s for s in during.sources}
    assert set(by_id) == {"2405.00071", "2405.00072"}  # the old index still finds 73
    assert "revision two" in by_id["2405.00071"].abstract
    assert {c.split("#")[0] for c in from_store} == {"2405.00071", "2405.00073"}
    assert {c.split("#")[0] for c in local} == {"2405.00072"}

    release.set()
    reader.lexical.wait(30)
    local.clear()
    from_store.clear()
    after = reader.retrieve("marrowlight sparse probing", k=3, mode="bm25")
    assert {s.paper_id for s in after.sources} == {"2405.00071", "2405.00072"}
    assert "revision two" in {s.paper_id: s for s in after.sources}["2405.00071"].abstract
    assert local and not from_store, "a caught-up index reads nothing from the store"


def test_a_large_index_checks_the_store_beside_the_queries(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    """Above `lexical_sync_below` chunks no query waits for the store's version (a
    store busy with an ingest answered it in 0.24 s at 1M chunks): the check runs
    beside the queries, which the current view answers meanwhile."""
    import threading

    settings, store, src = _ingested(
        tmp_path, embeddings, {"2405.00071": "one"}, lexical_sync_below=1, lexical_refresh_seconds=0
    )
    reader = make_retriever(settings, store, embeddings)
    assert reader.retrieve("marrowlight probing", k=2, mode="bm25").sources
    _write_papers(src, {"2405.00071": "one", "2405.00072": "one"})  # another process
    IngestJob(store, embeddings, settings, progress=False).run([str(src)])

    busy, asked = threading.Event(), threading.Event()
    real_version = store.version

    def slow_version():  # type: ignore[no-untyped-def]
        asked.set()
        assert busy.wait(30), "the test never let the store answer"
        return real_version()

    monkeypatch.setattr(store, "version", slow_version)
    done: list = []
    query = threading.Thread(
        target=lambda: done.append(reader.retrieve("marrowlight probing", k=2, mode="bm25"))
    )
    try:
        query.start()
        query.join(20)
        assert done, "the query waited for the store's version"
        assert asked.wait(20), "nothing checked the store"
        assert [s.paper_id for s in done[0].sources] == ["2405.00071"]  # the view it had
    finally:
        busy.set()
    reader.lexical.wait(30)
    found = reader.retrieve("marrowlight probing", k=2, mode="bm25").sources
    assert {s.paper_id for s in found} == {"2405.00071", "2405.00072"}


def test_records_come_without_vectors_when_chroma_cannot_give_them(
    tmp_path: Path, embeddings, monkeypatch
) -> None:
    """When Chroma cannot give vectors ("Error finding id", which an embedded store
    whose vector index has not seen another process's writes raises), the index is
    still built from the records; only the local scoring of a late dense search
    lacks them."""
    from chromadb.errors import InternalError

    settings, store, src = _ingested(tmp_path, embeddings, TWO_PAPERS)
    collection_type = type(store._collection)
    real_get = collection_type.get

    def get(self, *args, include=None, **kwargs):  # type: ignore[no-untyped-def]
        if include and "embeddings" in include:
            raise InternalError("Error executing plan: Internal error: Error finding id")
        return real_get(self, *args, include=include, **kwargs)

    monkeypatch.setattr(collection_type, "get", get)
    retriever = make_retriever(settings, store, embeddings)
    found = retriever.retrieve("marrowlight sparse probing", k=2)
    assert {s.paper_id for s in found.sources} == {"2405.00071", "2405.00072"}
    ids = [p.chunk_id for s in found.sources for p in s.passages]
    view = retriever.lexical.current
    assert view is not None and ids and not view.vectors(ids)
    assert [h.vector for h in store.get(ids, with_vectors=True)] == [None] * len(ids)
    monkeypatch.setattr(collection_type, "get", real_get)
    assert all(h.vector is not None and len(h.vector) for h in store.get(ids, with_vectors=True))

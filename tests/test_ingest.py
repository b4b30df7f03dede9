"""The ingestion job against a real embedded Chroma."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ingest.job import IngestJob
from rag.index.store import open_store
from rag.settings import Settings
from tests.helpers import SAMPLE, FakeEmbeddings


def _write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _paper(i: int, abstract: str | None = None) -> dict:
    return {
        "id": f"2401.{i:05d}",
        "title": f"Paper number {i} on topic {i % 7}",
        "abstract": abstract
        or " ".join(f"Sentence {j} of paper {i} discusses method {i * j % 13}." for j in range(12)),
        "authors": "A. Author, B. Author",
        "update_date": "2024-01-02",
    }


def _state(store) -> dict[str, tuple[str | None, dict]]:
    return {cid: (doc, meta) for cid, doc, meta in store.iter_chunks(include_documents=True)}


def test_sample_ingest_then_unchanged_reingest_embeds_nothing(
    sample_settings: Settings, sample_store, embeddings
) -> None:
    started = time.perf_counter()
    again = IngestJob(sample_store, embeddings, sample_settings, progress=False).run([str(SAMPLE)])
    reingest_seconds = time.perf_counter() - started
    assert again.papers_read == 61
    assert again.unchanged == 61 and again.added == again.updated == 0
    assert again.chunks_written == 0 and again.chunks_deleted == 0
    assert reingest_seconds < 2.0
    # Every chunk record has what citations and the web page need.
    state = _state(sample_store)
    assert len(state) == sample_store.count() > 61
    for cid, (doc, meta) in state.items():
        assert cid == f"{meta['paper_id']}#{meta['chunk_index']}"
        assert meta["title"] and meta["n_chunks"] >= 1
        if meta["chunk_index"] == 0:
            assert meta["abstract"][meta["start"] : meta["end"]] == doc


def test_changed_abstract_replaces_its_chunks_without_orphans(
    tmp_path: Path, fake_embeddings
) -> None:
    settings = Settings(data_dir=tmp_path / "d", chunking={"size": 200, "overlap": 40})
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    records = [_paper(i) for i in range(5)]
    first = job.run([_write_jsonl(tmp_path / "a.jsonl", records)])
    assert first.added == 5 and first.chunks_written == store.count()
    before = store.chunks_of(["2401.00002"])["2401.00002"]
    assert len(before) > 2

    records[2] = _paper(2, abstract="Now a single short sentence.")
    second = job.run([_write_jsonl(tmp_path / "b.jsonl", records)])
    assert (second.added, second.updated, second.unchanged) == (0, 1, 4)
    after = store.chunks_of(["2401.00002"])["2401.00002"]
    assert [c.id for c in after] == ["2401.00002#0"]
    assert second.chunks_written == 1 and second.chunks_deleted == len(before) - 1
    assert store.get(["2401.00002#0"])[0].text == "Now a single short sentence."


def test_prune_removes_papers_missing_from_input(tmp_path: Path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    job.run([_write_jsonl(tmp_path / "a.jsonl", [_paper(i) for i in range(4)])])
    kept = _write_jsonl(tmp_path / "b.jsonl", [_paper(0), _paper(3)])
    no_prune = job.run([kept])
    assert no_prune.pruned == 0 and store.paper_ids() == {f"2401.{i:05d}" for i in range(4)}
    pruned = job.run([kept], prune=True)
    assert pruned.pruned == 2
    assert store.paper_ids() == {"2401.00000", "2401.00003"}


def test_prune_keeps_papers_when_records_were_skipped(tmp_path: Path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    job.run([_write_jsonl(tmp_path / "a.jsonl", [_paper(i) for i in range(3)])])
    src = tmp_path / "b.jsonl"
    src.write_text(json.dumps(_paper(0)) + "\n" + '{"id": "2401.00001", "title": "truncated\n')
    result = job.run([str(src)], prune=True)
    assert result.pruned == 0 and result.prune_note and "skipped" in result.prune_note
    assert len(store.paper_ids()) == 3


def test_malformed_records_are_reported_and_the_rest_lands(tmp_path: Path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    src = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(_paper(1)),
        "{broken",
        json.dumps({"title": "x"}),
        json.dumps(_paper(2)),
        json.dumps(_paper(1)),
    ]
    src.write_text("\n".join(lines) + "\n")
    summary = IngestJob(store, fake_embeddings, settings, progress=False).run([str(src)])
    assert summary.added == 2 and summary.papers_read == 2
    assert summary.skipped == 3
    reasons = {(e["line"], e["reason"].split(" (")[0]) for e in summary.errors}
    assert reasons == {
        (2, "not valid JSON"),
        (3, "no abstract"),
        (5, "duplicate paper id 2401.00001"),
    }
    assert store.paper_ids() == {"2401.00001", "2401.00002"}
    text = summary.to_text()
    assert f"skipped {src}:2: not valid JSON" in text


def test_batches_respect_the_store_max_batch_size(tmp_path: Path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "d", chunking={"size": 120, "overlap": 0})
    store = open_store(settings)
    store.max_batch_size = 7  # as if the server allowed only 7 records per call
    calls: list[int] = []
    real_upsert = store.upsert

    def spy(ids, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(ids))
        return real_upsert(ids, *args, **kwargs)

    store.upsert = spy  # type: ignore[method-assign]
    summary = IngestJob(store, fake_embeddings, settings, progress=False).run(
        [_write_jsonl(tmp_path / "a.jsonl", [_paper(i) for i in range(6)])]
    )
    assert summary.chunks_written == store.count() > 7
    assert max(calls) <= 7 and sum(calls) == summary.chunks_written


def test_title_setting_decides_what_is_embedded(tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(FakeEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            seen.extend(texts)
            return super().embed_documents(texts)

    src = _write_jsonl(tmp_path / "a.jsonl", [_paper(1)])
    title = _paper(1)["title"]
    for mode, with_title in (("every", None), ("first", 1)):
        seen.clear()
        settings = Settings(
            data_dir=tmp_path / mode, chunking={"size": 200, "overlap": 0, "title": mode}
        )
        store = open_store(settings)
        IngestJob(store, Recording(), settings, progress=False).run([src])
        assert len(seen) == store.count() > 2
        titled = sum(t.startswith(title + "\n") for t in seen)
        assert titled == (with_title or len(seen)), mode
        # The stored documents are the chunk text either way (BM25 adds the title itself).
        assert all(not doc.startswith(title) for doc, _ in _state(store).values())

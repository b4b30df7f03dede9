"""A paper is only ever shown as one whole version, even in the state a run
killed between writing a paper's new chunks and removing its stale ones leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.job import IngestJob
from rag.index.store import open_store
from rag.retrieval.retrieve import make_retriever
from rag.settings import Settings


def _paper(path: Path, rev: str, sentences: int) -> None:
    body = " ".join(
        f"Quillfeather revision {rev} finding {j}: sparse attention lowers calibration "
        f"error by {j} points on benchmark {j}." + (" Zanthoric tail marker." if j > 10 else "")
        for j in range(sentences)
    )
    path.write_text(
        json.dumps(
            {"id": "2405.00001", "title": f"Quillfeather study revision {rev}", "abstract": body}
        )
        + "\n"
    )


class Killed(Exception):
    pass


def test_stale_chunks_of_an_interrupted_update_are_never_shown(
    tmp_path: Path, embeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    job = IngestJob(store, embeddings, settings, progress=False)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _paper(a, "A", 16)
    _paper(b, "B", 3)
    assert job.run([str(a)]).chunks_written >= 3

    def killed(ids):  # type: ignore[no-untyped-def]
        raise Killed

    monkeypatch.setattr(store, "delete", killed)
    with pytest.raises(Killed):
        job.run([str(b)])  # the new version is written; its stale chunks are not removed
    monkeypatch.undo()
    stale = [
        m
        for _, _, m in store.iter_chunks()
        if m["paper_hash"] != store.get(["2405.00001#0"])[0].metadata["paper_hash"]
    ]
    assert stale, "the interruption left no stale chunk: the test would prove nothing"

    retriever = make_retriever(settings, store, embeddings)
    for mode in ("hybrid", "bm25", "dense"):
        got = retriever.retrieve("zanthoric tail marker quillfeather", mode=mode)
        for source in got.sources:
            assert "revision A" not in source.title
            for passage in source.passages:
                assert "revision A" not in passage.text, (mode, passage.text[:80])
    # A clean re-run removes them.
    job.run([str(b)])
    assert all(
        "revision A" not in (doc or "") for _, doc, _ in store.iter_chunks(include_documents=True)
    )

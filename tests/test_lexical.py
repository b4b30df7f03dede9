"""The BM25 index (rag/index/lexical.py) follows the store's change log: a reader
re-reads only the papers a write named, falls back to one full build when the
log no longer reaches back, and processes sharing a directory share the work.
Every check counts documents and builds, never time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.job import IngestJob
from rag.index.lexical import LexicalCache, analyzer, lexical_dir, open_lexical
from rag.index.store import open_store
from rag.settings import Settings
from rag.text import terms
from rag.types import Filters
from tests.helpers import SAMPLE

ROOT = Path(__file__).resolve().parent.parent


def _papers(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _row(i: int, topic: str = "sparse probes", **extra: object) -> dict:
    return {
        "id": f"2401.{i:05d}",
        "title": f"Paper {i} on {topic}",
        "abstract": f"We study {topic} of marrowlight features, case {i}. " * 3,
        **extra,
    }


def _setup(tmp_path: Path, fake_embeddings, n: int = 12, **retrieval: object):  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "d",
        retrieval={"lexical_refresh_seconds": 0, "lexical_sync_below": 10**9, **retrieval},
    )
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    job.run([_papers(tmp_path / "base.jsonl", [_row(i) for i in range(n)])])
    return settings, store, job


def _chunks_of(store, paper_ids: list[str]) -> int:  # type: ignore[no-untyped-def]
    return sum(len(c) for c in store.chunks_of(paper_ids).values())


def test_the_analyzer_makes_the_terms_rag_text_makes() -> None:
    """`idf` and queries take `rag.text.terms` stems: the index must hold the same."""
    from ingest.loaders import load

    a = analyzer()
    texts = [f"{p.title}\n{p.abstract}" for _, p in load(str(SAMPLE)) if hasattr(p, "abstract")]
    texts.append("The GENERALIZATION of x² and ½, naïve e.g. Übermäßig x_y 3d a b")
    assert len(texts) > 50
    for text in texts:
        assert a.analyze(text) == terms(text)


def test_an_ingest_of_new_papers_applies_only_those_papers(tmp_path, fake_embeddings) -> None:
    settings, store, job = _setup(tmp_path, fake_embeddings)
    cache = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    first = cache.get()
    assert cache.stats.full_builds == 1 and len(first) == store.count()
    assert cache.stats.docs_added == store.count()

    new = [_row(100 + i, topic="quillwort lattices") for i in range(3)]
    job.run([_papers(tmp_path / "new.jsonl", new)])
    added_before = cache.stats.docs_added
    index = cache.get()
    new_ids = [r["id"] for r in new]
    assert cache.stats.full_builds == 1, "the reader read the whole store again"
    assert cache.stats.papers_applied == 3
    assert cache.stats.docs_added - added_before == _chunks_of(store, new_ids)
    assert len(index) == store.count()
    assert {h.paper_id for h in index.search("quillwort lattices", 10)} == set(new_ids)
    assert index.version == store.version()
    # Nothing changed since: a further look re-reads nothing.
    cache.get()
    assert cache.stats.papers_applied == 3 and cache.stats.docs_added - added_before == len(
        [c for cid in new_ids for c in store.chunks_of([cid])[cid]]
    )


def test_deleted_and_changed_papers_vanish_and_update(tmp_path, fake_embeddings) -> None:
    settings, store, job = _setup(tmp_path, fake_embeddings)
    cache = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    assert "2401.00003" in {h.paper_id for h in cache.get().search("case 3", 40)}

    job.delete_papers(["2401.00003"])
    changed = _row(5)
    changed["abstract"] = "Zorbulation of glimmerfish retinas, a new study."
    job.run([_papers(tmp_path / "upd.jsonl", [changed])])
    index = cache.get()
    assert cache.stats.full_builds == 1 and cache.stats.papers_applied == 2
    assert "2401.00003" not in {h.paper_id for h in index.search("case 3 marrowlight", 40)}
    assert [h.paper_id for h in index.search("zorbulation glimmerfish", 5)] == ["2401.00005"]
    assert not any(h.paper_id == "2401.00005" for h in index.search("marrowlight features", 40)), (
        "the old text of a changed paper is still indexed"
    )
    assert sorted(index.chunk_ids()) == sorted(cid for cid, _, _ in store.iter_chunks())


def test_a_trimmed_log_costs_one_full_rebuild(tmp_path, fake_embeddings) -> None:
    settings, store, job = _setup(tmp_path, fake_embeddings)
    cache = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    cache.get()
    store.log_keep = 2  # type: ignore[attr-defined]
    for i in range(4):  # each run logs two entries: the log now starts past the reader
        job.run([_papers(tmp_path / f"n{i}.jsonl", [_row(200 + i, topic="fernwick")])])
    index = cache.get()
    assert cache.stats.full_builds == 2
    assert len({h.paper_id for h in index.search("fernwick", 10)}) == 4
    # From there on, the log reaches back again: the next change is applied alone.
    job.run([_papers(tmp_path / "last.jsonl", [_row(300, topic="fernwick")])])
    cache.get()
    assert cache.stats.full_builds == 2 and cache.stats.papers_applied == 1


def test_a_change_logged_without_papers_rebuilds(tmp_path, fake_embeddings) -> None:
    settings, store, _ = _setup(tmp_path, fake_embeddings)
    cache = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    cache.get()
    store.bump_version()  # "something changed", without saying what
    cache.get()
    assert cache.stats.full_builds == 2


def test_filters_are_query_clauses(tmp_path, fake_embeddings) -> None:
    rows = [
        _row(i, year=2018 + i % 4, categories="cs.LG stat.ML" if i % 2 else "cs.CV")
        for i in range(12)
    ]
    rows.append(_row(50))  # no year and no categories: never matches a filter on them
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    IngestJob(store, fake_embeddings, settings, progress=False).run(
        [_papers(tmp_path / "f.jsonl", rows)]
    )
    index = LexicalCache(store, lexical_dir(settings)).get()
    query = "sparse probes marrowlight"
    every = index.search(query, 100)
    metas = {r["id"]: r for r in rows}
    for filters in (
        Filters(year_min=2020),
        Filters(year_max=2019),
        Filters(year_min=2019, year_max=2020),
        Filters(categories=("stat.ML",)),
        Filters(categories=("cs.CV", "nope")),
        Filters(paper_ids=("2401.00004", "2401.00050")),
        Filters(year_min=2019, categories=("cs.LG",)),
    ):
        got = index.search(query, 100, filters)
        meta = {
            pid: {
                "paper_id": pid,
                "year": metas[pid].get("year"),
                "categories": metas[pid].get("categories", "").split(),
            }
            for pid in metas
        }
        want = [h for h in every if filters.matches(meta[h.paper_id])]
        assert got and [h.id for h in got] == [h.id for h in want], filters
        assert [h.score for h in got] == pytest.approx([h.score for h in want])


def test_a_second_cache_on_the_directory_reloads_while_the_first_applies(
    tmp_path, fake_embeddings, monkeypatch
) -> None:
    """One writer per directory: while one cache holds the lock, another serves what
    is committed (applies nothing) and picks the changes up once they are in."""
    import threading

    settings, store, job = _setup(tmp_path, fake_embeddings)
    a = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    b = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    a.get()
    assert len(b.get()) == store.count()
    assert b.stats.full_builds == 0 and b.stats.docs_added == 0

    job.run([_papers(tmp_path / "new.jsonl", [_row(400, topic="quillwort")])])
    inside, release = threading.Event(), threading.Event()
    real = LexicalCache._apply

    def held(self, writer, changes):  # type: ignore[no-untyped-def]
        inside.set()
        assert release.wait(30), "never released"
        return real(self, writer, changes)

    monkeypatch.setattr(LexicalCache, "_apply", held)
    t = threading.Thread(target=a.get)
    t.start()
    assert inside.wait(30)
    assert not b.get().search("quillwort", 5)  # a holds the lock: b shows what is there
    assert b.stats.docs_added == 0
    release.set()
    t.join(30)
    found = b.get().search("quillwort", 5)
    assert [h.paper_id for h in found] == ["2401.00400"]
    assert b.stats.docs_added == 0 and a.stats.papers_applied == 1


_READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from rag.index.lexical import LexicalCache
    from rag.settings import Settings
    from rag.index.store import open_store

    settings = Settings(
        data_dir=Path(sys.argv[1]), chroma_url=sys.argv[2], collection_prefix=sys.argv[3]
    )
    from rag.index.lexical import lexical_dir
    cache = LexicalCache(open_store(settings), lexical_dir(settings), refresh_seconds=0)
    for line in sys.stdin:
        index = cache.get()
        hits = [h.paper_id for h in index.search(line.strip(), 5)]
        s = cache.stats
        print(json.dumps({"hits": hits, "chunks": len(index), "added": s.docs_added,
                          "builds": s.full_builds}), flush=True)
    """
)


@pytest.mark.slow
def test_processes_share_one_directory_against_a_chroma_server(
    chroma_server: str, tmp_path, fake_embeddings
) -> None:
    """Two API-like processes on one machine, one `chroma run` server: one builds,
    the other opens what it committed; later changes are applied once, by one."""
    data = tmp_path / "d"
    settings = Settings(data_dir=data, chroma_url=chroma_server, collection_prefix="lexshare")
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    job.run([_papers(tmp_path / "base.jsonl", [_row(i) for i in range(10)])])
    assert str(lexical_dir(settings)).startswith(str(data / "lexical" / "127.0.0.1_"))

    main = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    assert len(main.get()) == store.count() and main.stats.full_builds == 1
    proc = subprocess.Popen(
        [sys.executable, "-c", _READER, str(data), chroma_server, "lexshare"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(query: str) -> dict:
        proc.stdin.write(query + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(proc.stdout.readline())  # type: ignore[union-attr]

    try:
        first = ask("marrowlight")
        assert first["chunks"] == store.count() and first["builds"] == 0 and first["added"] == 0
        job.run(
            [_papers(tmp_path / "new.jsonl", [_row(500 + i, topic="quillwort") for i in (0, 1)])]
        )
        assert sorted(h.paper_id for h in main.get().search("quillwort", 5)) == [
            "2401.00500",
            "2401.00501",
        ]
        assert main.stats.papers_applied == 2 and main.stats.full_builds == 1
        other = ask("quillwort")  # the other process only reloads what main committed
        assert sorted(other["hits"]) == ["2401.00500", "2401.00501"]
        assert other["builds"] == 0 and other["added"] == 0
        # Now the other process is first to look: it applies, main only reloads.
        added = main.stats.docs_added
        job.delete_papers(["2401.00500"])
        assert ask("quillwort")["hits"] == ["2401.00501"]
        assert [h.paper_id for h in main.get().search("quillwort", 5)] == ["2401.00501"]
        assert main.stats.docs_added == added
    finally:
        proc.stdin.close()
        proc.wait(30)


@pytest.mark.slow
def test_a_large_server_store_is_built_in_a_child_process(
    chroma_server: str, tmp_path, fake_embeddings
) -> None:
    """The API process leaves a whole-store build to a child (so it does not keep the
    build's memory), opens what the child committed, and applies later changes itself."""
    settings = Settings(
        data_dir=tmp_path / "d",
        chroma_url=chroma_server,
        collection_prefix="lexapart",
        retrieval={"lexical_build_apart_from": 5},
    )
    store = open_store(settings)
    job = IngestJob(store, fake_embeddings, settings, progress=False)
    job.run([_papers(tmp_path / "base.jsonl", [_row(i) for i in range(10)])])
    cache = open_lexical(store, settings)
    cache.refresh_seconds = 0
    index = cache.get()
    s = cache.stats
    assert s.built_apart == 1 and s.full_builds == 1 and s.docs_added == store.count()
    assert len(index) == store.count()
    assert "2401.00003" in {h.paper_id for h in index.search("case 3", 40)}

    job.run([_papers(tmp_path / "new.jsonl", [_row(600 + i, topic="quillwort") for i in (0, 1)])])
    index = cache.get()
    assert sorted(h.paper_id for h in index.search("quillwort", 5)) == ["2401.00600", "2401.00601"]
    assert s.built_apart == 1 and s.papers_applied == 2, "a change rebuilt the whole index"

    embedded = open_lexical(store, Settings(data_dir=tmp_path / "e"))
    assert embedded.apart is None, "an embedded store must be built in process"


def test_a_replica_starts_from_a_copy_and_applies_only_what_came_after(
    tmp_path, fake_embeddings
) -> None:
    import shutil

    settings, store, job = _setup(tmp_path, fake_embeddings)
    first = LexicalCache(store, lexical_dir(settings), refresh_seconds=0)
    first.get()
    snapshot = tmp_path / "snapshot"
    shutil.copytree(lexical_dir(settings), snapshot)
    job.run([_papers(tmp_path / "new.jsonl", [_row(600 + i, topic="fernwick") for i in (0, 1)])])
    replica = LexicalCache(store, snapshot, refresh_seconds=0)
    index = replica.get()
    assert replica.stats.full_builds == 0 and replica.stats.papers_applied == 2
    assert len(index.search("fernwick", 10)) == _chunks_of(store, ["2401.00600", "2401.00601"])
    # A marker whose index is gone is not trusted: that directory is rebuilt.
    shutil.rmtree(next(snapshot.glob("index-v*")))
    rebuilt = LexicalCache(store, snapshot, refresh_seconds=0)
    assert len(rebuilt.get()) == store.count() and rebuilt.stats.full_builds == 1

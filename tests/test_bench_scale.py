"""The process-per-role scale benchmark runs end to end on a small store, and its
counters say what the design promises: a reader re-adds only the new papers'
chunks, and a replica started from a copy of its directory does not rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.bench import chroma_sync, scale_server
from evals.bench.scale import CHUNKS_PER_PAPER

# Benchmark-sized: a `chroma run` server and a process per role (make test-heavy).
pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def readds_only_the_new_papers(readded: int, papers: int) -> bool:
    """The writer logs its papers before and after its upserts, as the ingest job does.
    A catch-up that lands between the two reads whatever of those papers is in the
    store then, and the one after the second entry reads them again: each new chunk
    is re-added once or twice, and nothing of the corpus."""
    return papers * CHUNKS_PER_PAPER <= readded <= 2 * papers * CHUNKS_PER_PAPER


def test_scale_server_bench_counts_the_change_not_the_corpus(tmp_path: Path) -> None:
    papers = 20
    r = scale_server.run(tmp_path / "store", 3000, n_queries=10, new_papers=papers, timeout=300)
    assert r["chunks"] == 3000
    w = r["while_new_papers_land"]
    assert readds_only_the_new_papers(w["chunks_readded"], papers)
    assert w["found_s"] >= w["writer_s"] > 0
    assert r["replica"]["full_builds"] == 0
    assert r["chroma_server"]["rss_mb"] > 0 and r["reader"]["rss_mb"] > 0
    assert len(scale_server.rows(r)) == 9 and r["reader"]["index_mb"] > 0
    # The store is kept: a second run reuses it (and the first run's new papers). Its
    # second round of papers lands while the reader searches with a dense deadline.
    again = scale_server.run(
        tmp_path / "store", 3000, n_queries=5, new_papers=papers, timeout=300,
        dense_deadline_ms=2000,
    )  # fmt: skip
    assert again["build_s"] == r["build_s"]
    assert readds_only_the_new_papers(again["while_new_papers_land"]["chunks_readded"], papers)
    d = again["with_dense_deadline"]
    assert readds_only_the_new_papers(d["chunks_readded"], papers)
    assert d["dense_deadline_ms"] == 2000
    assert 0 <= d["partial"] <= d["queries"] and "partial" not in again["while_new_papers_land"]
    assert len(scale_server.rows(again)) == 10

    # Chroma's sync threshold against the same store: set, and every round measured
    # (the changes pending in Chroma's log are counted, at most what was ever written).
    sync = chroma_sync.run(tmp_path / "store", 100, rounds=2, papers=papers, batch=16)
    assert sync["sync_threshold"] == 100 and len(sync["rounds"]) == 2
    written = 2 * papers * CHUNKS_PER_PAPER
    for r in sync["rounds"]:
        assert r["writer_s"] > 0 and r["queries"] >= 1 and r["max_ms"] >= r["p50_ms"] > 0
        assert 0 <= r["hnsw_behind"] <= again["chunks"] + written

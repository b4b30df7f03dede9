"""Scale benchmark: a synthetic corpus with precomputed vectors at 10k, 100k and
300k chunks. For each size: the time to build the store (Chroma HNSW) and the
BM25 index, the process's memory, and query latency for dense, BM25 and hybrid
retrieval through our `Retriever` (the real query embedder included), so the
growth curve is visible. Each mode runs the same distinct queries once, with
the record cache emptied first (cold records, as for new questions).

Then what a write costs readers: another thread ingests `--new-papers` new
papers (chunks with precomputed vectors, logged in the store's change log
before and after, as the ingest job does) while the reader keeps asking hybrid
queries; the figures are the time from the start of that write until the
reader's BM25 finds every new chunk (its default staleness check included),
the reader's latency meanwhile, and how many chunks the reader re-added to its
index. Last, a new replica's start-up: a second reader opening the same
directory (what another API process of the machine, or a replica started from
a copy of it, does).

Chunks are ~120 words drawn from a Zipf-distributed vocabulary of made-up
words; vectors are unit vectors around 512 random topic centres. The store
grows in place (10k, then +90k, then +200k), so build times are per step.

    python -m evals.bench.scale [--sizes 10000,100000,300000] [--queries 60]
        [--new-papers 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
CHUNKS_PER_PAPER = 3
VOCAB = 30_000
WORDS_PER_CHUNK = 120


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Synthetic:
    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "zen", "qua", "dor", "pel"]
        words = set()
        while len(words) < VOCAB:
            n = rng.integers(2, 6)  # 12^2 + ... + 12^5 names: room for VOCAB
            words.add("".join(rng.choice(syll, n)))
        self.vocab = np.array(sorted(words))
        ranks = np.arange(1, VOCAB + 1)
        self.p = (1 / ranks**1.07) / (1 / ranks**1.07).sum()
        self.centres = rng.standard_normal((512, DIM)).astype(np.float32)

    def chunks(
        self, lo: int, hi: int
    ) -> tuple[list[str], list[list[float]], list[str], list[dict]]:
        rng = self.rng
        n = hi - lo
        idx = rng.choice(VOCAB, size=(n, WORDS_PER_CHUNK), p=self.p)
        texts = [" ".join(self.vocab[row]) for row in idx]
        topics = rng.integers(0, len(self.centres), n)
        vecs = self.centres[topics] + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids, metas = [], []
        for i in range(lo, hi):
            paper, part = divmod(i, CHUNKS_PER_PAPER)
            pid = f"syn-{paper:07d}"
            ids.append(f"{pid}#{part}")
            meta: dict[str, Any] = {
                "paper_id": pid,
                "title": f"Synthetic paper {paper}",
                "chunk_index": part,
                "start": 0,
                "end": len(texts[i - lo]),
                "n_chunks": CHUNKS_PER_PAPER,
                "paper_hash": "h",
                "year": 2000 + paper % 25,
            }
            if part == 0:
                meta["abstract"] = texts[i - lo]
            metas.append(meta)
        return ids, vecs.tolist(), texts, metas

    def queries(self, n: int) -> list[str]:
        # Mid-frequency words: what a topical query looks like to BM25.
        return [
            " ".join(self.vocab[self.rng.integers(50, 3000, self.rng.integers(3, 7))])
            for _ in range(n)
        ]


NEW_WORD = "quillwortzyx"  # in every new chunk, in no synthetic one


def _while_catching_up(
    store: Any,
    lexical: Any,
    retriever: Any,
    syn: Synthetic,
    queries: list[str],
    papers: int,
    step_chunks: int,
) -> dict:
    """Hybrid queries from the start of a write of `papers` new papers until the
    reader's BM25 finds all their chunks (written by another thread, as by another
    process; logged as the ingest job logs them)."""
    import threading

    lo = -(-store.count() // CHUNKS_PER_PAPER) * CHUNKS_PER_PAPER  # whole new papers
    ids, vecs, texts, metas = syn.chunks(lo, lo + papers * CHUNKS_PER_PAPER)
    texts = [f"{t} {NEW_WORD}" for t in texts]
    pids = sorted({m["paper_id"] for m in metas})
    added_before = lexical.stats.docs_added
    builds_before = lexical.stats.full_builds
    written = threading.Event()

    # Upserts of the ingest job's size (it writes as the embedder hands it chunks):
    # one huge upsert would hold the GIL for seconds, a stall no real write causes.
    step = step_chunks

    def write() -> None:
        store.log_changes(pids)
        for a in range(0, len(ids), step):
            b = a + step
            store.upsert(ids[a:b], vecs[a:b], texts[a:b], metas[a:b])
        store.log_changes(pids)
        written.set()

    from evals.bench.scale_server import query_until_found  # it imports this module

    writer = threading.Thread(target=write)
    writer.start()
    figures = query_until_found(retriever, lexical, queries, written.is_set, NEW_WORD, len(ids))
    writer.join()
    return {
        "papers": papers,
        **figures,
        "docs_readded": lexical.stats.docs_added - added_before,
        "full_builds": lexical.stats.full_builds - builds_before,
        "next_chunk": lo + len(ids),
    }


def run(
    sizes: list[int], n_queries: int, new_papers: int = 1000
) -> tuple[dict[str, Any], list[tuple]]:
    from evals.bench.scale_server import mode_latency  # it imports this module
    from rag.encode.embeddings import make_embeddings
    from rag.index.lexical import LexicalCache, lexical_dir
    from rag.index.store import open_store
    from rag.retrieval.retrieve import Retriever
    from rag.settings import Settings

    syn = Synthetic()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = open_store(settings)
        emb = make_embeddings(settings)
        emb.embed_query("warm up")
        queries = syn.queries(n_queries)
        have = 0
        for size in sizes:
            t0 = time.perf_counter()
            step = 5000
            for lo in range(have, size, step):
                ids, vecs, texts, metas = syn.chunks(lo, min(size, lo + step))
                store.upsert(ids, vecs, texts, metas)
            store.bump_version()  # chunks written without naming papers: readers rebuild
            store_s = time.perf_counter() - t0
            have = size
            rss_before_bm25 = _rss_mb()
            lexical = LexicalCache(
                store,
                lexical_dir(settings),
                refresh_seconds=3600,
                record_cache=settings.retrieval.record_cache,
                sync_below=settings.retrieval.lexical_sync_below,
            )
            t0 = time.perf_counter()
            lexical.get()  # a new reader builds its first index in the query
            bm25_s = time.perf_counter() - t0
            retriever = Retriever(store, emb, lexical, settings.retrieval)
            latency = mode_latency(retriever, lexical, queries)
            lexical.refresh_seconds = settings.retrieval.lexical_refresh_seconds
            step = min(store.max_batch_size, settings.write_batch)  # the job's
            during = _while_catching_up(store, lexical, retriever, syn, queries, new_papers, step)
            lexical.refresh_seconds = 3600
            have = during.pop("next_chunk")
            t0 = time.perf_counter()
            replica = LexicalCache(store, lexical_dir(settings), refresh_seconds=3600)
            replica.get()
            replica_s = time.perf_counter() - t0
            assert replica.stats.full_builds == 0, "the new replica rebuilt"
            results.append(
                {
                    "chunks": size,
                    "hybrid_while_bm25_catches_up": during,
                    "replica_start_s": round(replica_s, 2),
                    "store_build_s": round(store_s, 1),
                    "bm25_build_s": round(bm25_s, 1),
                    "rss_mb": round(_rss_mb()),
                    "bm25_rss_mb": round(_rss_mb() - rss_before_bm25),
                    "query": latency,
                }
            )
            print(results[-1], flush=True)
    rows = [
        (
            f"{r['chunks']:,} chunks",
            f"{r['query']['dense']['p50_ms']} / {r['query']['dense']['p95_ms']}",
            f"{r['query']['bm25']['p50_ms']} / {r['query']['bm25']['p95_ms']}",
            f"{r['query']['hybrid']['p50_ms']} / {r['query']['hybrid']['p95_ms']}",
            f"{r['store_build_s']} s + {r['bm25_build_s']} s",
            f"{r['rss_mb']} MB",
            "{p50_ms} / {p95_ms} / {max_ms} ms, {over_100ms} over 100 ms".format(
                **r["hybrid_while_bm25_catches_up"]
            ),
            "{found_s} s ({docs_readded} chunks re-added)".format(
                **r["hybrid_while_bm25_catches_up"]
            ),
            f"{r['replica_start_s']} s",
        )
        for r in results
    ]
    return {"sizes": results, "queries": n_queries}, rows


HEADER = [
    "corpus",
    "dense p50/p95 ms",
    "BM25 p50/p95 ms",
    "hybrid p50/p95 ms",
    "build (store step + BM25)",
    "RSS",
    "hybrid p50/p95/max while new papers land",
    "write to BM25 finds them",
    "new replica start",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--new-papers", type=int, default=1000)
    args = parser.parse_args()
    _, rows = run([int(s) for s in args.sizes.split(",")], args.queries, args.new_papers)
    print(" | ".join(HEADER))
    for row in rows:
        print(" | ".join(str(c) for c in row))


if __name__ == "__main__":
    main()

"""Scale benchmark: a synthetic corpus with precomputed vectors at 10k, 100k and
300k chunks. For each size: the time to build the store (Chroma HNSW) and the
BM25 index, the process's memory, and query latency for dense, BM25 and hybrid
retrieval through our `Retriever` (the real query embedder included), so the
growth curve is visible; and hybrid latency from a collection change until the
new BM25 index is in (the old one answers meanwhile). Each mode runs the same
distinct queries once, with the record cache emptied first (cold records, as
for new questions), after compiling the BM25 kernels as the API's warm-up does.

Chunks are ~120 words drawn from a Zipf-distributed vocabulary of made-up
words; vectors are unit vectors around 512 random topic centres. The store
grows in place (10k, then +90k, then +200k), so build times are per step.

    python -m evals.bench.scale [--sizes 10000,100000,300000] [--queries 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evals.metrics import percentile

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


def _while_rebuilding(store: Any, lexical: Any, retriever: Any, queries: list[str]) -> dict:
    """Hybrid queries from the moment the collection changes until the new BM25 index
    is swapped in. Before the background rebuild, the first of them waited for the
    whole build (the BM25 build time above)."""
    lexical.refresh_seconds = 0
    before = lexical.current
    store.bump_version()
    ms: list[float] = []
    t0 = time.perf_counter()
    i = 0
    while lexical.current is before or lexical.rebuilding:
        q = queries[i % len(queries)]
        i += 1
        t1 = time.perf_counter()
        retriever.retrieve(q, k=5, mode="hybrid", mmr=False)
        ms.append((time.perf_counter() - t1) * 1000)
    lexical.refresh_seconds = 3600
    return {
        "background": lexical.sync_below <= len(before),
        "rebuild_s": round(time.perf_counter() - t0, 1),
        "queries": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(percentile(ms, 95) or 0, 1),
        "max_ms": round(max(ms), 1),
    }


def run(sizes: list[int], n_queries: int) -> tuple[dict[str, Any], list[tuple]]:
    from rag.embeddings import make_embeddings
    from rag.lexical import LexicalCache
    from rag.retrieve import Retriever
    from rag.settings import Settings
    from rag.store import open_store

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
            store.bump_version()
            store_s = time.perf_counter() - t0
            have = size
            rss_before_bm25 = _rss_mb()
            lexical = LexicalCache(
                store,
                None,
                refresh_seconds=3600,
                record_cache=settings.retrieval.record_cache,
                sync_below=settings.retrieval.lexical_sync_below,
            )
            t0 = time.perf_counter()
            lexical.get()  # a new reader builds its first index in the query
            bm25_s = time.perf_counter() - t0
            retriever = Retriever(store, emb, lexical, settings.retrieval)
            latency: dict[str, dict[str, float]] = {}
            for mode in ("dense", "bm25", "hybrid"):
                for q in queries[:5]:
                    retriever.retrieve(q, k=5, mode=mode, mmr=False)
                # Each query is new: its records come from Chroma, not from the cache.
                lexical.clear_records(lexical.get().version)
                ms = []
                for q in queries:
                    t0 = time.perf_counter()
                    retriever.retrieve(q, k=5, mode=mode, mmr=False)
                    ms.append((time.perf_counter() - t0) * 1000)
                latency[mode] = {
                    "p50_ms": round(statistics.median(ms), 1),
                    "p95_ms": round(percentile(ms, 95) or 0, 1),
                }
            during = _while_rebuilding(store, lexical, retriever, queries)
            results.append(
                {
                    "chunks": size,
                    "hybrid_while_bm25_rebuilds": during,
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
            "{p50_ms} / {p95_ms} / {max_ms} ms over {rebuild_s} s".format(
                **r["hybrid_while_bm25_rebuilds"]
            ),
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
    "hybrid p50/p95/max while BM25 rebuilds",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    _, rows = run([int(s) for s in args.sizes.split(",")], args.queries)
    print(" | ".join(HEADER))
    for row in rows:
        print(" | ".join(str(c) for c in row))


if __name__ == "__main__":
    main()

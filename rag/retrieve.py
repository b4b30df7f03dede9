"""Retrieval: from a question to the papers and passages that speak to it."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from rag.store import Store
from rag.types import ChunkHit, PaperHit

# Chunks fetched per paper wanted: papers have several chunks, and the best
# few chunks often belong to the same paper.
_OVERFETCH = 4


def dense_chunks(
    query: str, store: Store, embeddings: Embeddings, n: int, where: dict[str, Any] | None = None
) -> list[ChunkHit]:
    return store.query(embeddings.embed_query(query), n, where=where)


def group_by_paper(hits: list[ChunkHit], k: int) -> list[PaperHit]:
    """Best chunk per paper, papers ordered by that chunk's score."""
    best: dict[str, ChunkHit] = {}
    for hit in hits:
        if hit.paper_id not in best or hit.score > best[hit.paper_id].score:
            best[hit.paper_id] = hit
    ranked = sorted(best.values(), key=lambda h: h.score, reverse=True)[:k]
    return [
        PaperHit(
            paper_id=h.paper_id,
            title=str(h.metadata.get("title", "")),
            score=round(h.score, 4),
            snippet=h.text,
            url=h.metadata.get("url"),
            chunk_index=int(h.metadata.get("chunk_index", 0)),
            start=int(h.metadata.get("start", 0)),
            end=int(h.metadata.get("end", 0)),
        )
        for h in ranked
    ]


def search_papers(
    query: str,
    store: Store,
    embeddings: Embeddings,
    k: int = 5,
    where: dict[str, Any] | None = None,
) -> list[PaperHit]:
    """Paper-level dense search: the k papers whose best chunk is closest to the query."""
    hits = dense_chunks(query, store, embeddings, k * _OVERFETCH, where)
    return group_by_paper(hits, k)

"""Retrieval: from a question to the papers and passages that speak to it.

Dense (Chroma) and BM25 chunk rankings are fused by reciprocal rank, grouped
to paper level, optionally diversified with MMR, and numbered as sources.
A relevance gate then decides whether anything relevant was found at all:
the best chunk must be close enough to the question *and* the best papers
must contain enough of the question's distinctive terms (IDF-weighted), which
is what separates a question the corpus covers from one merely near its field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.lexical import LexicalCache, open_lexical
from rag.settings import RetrievalSettings, Settings
from rag.store import RecordCache, Store
from rag.text import terms
from rag.types import ChunkHit, PaperHit, Passage, Source, chunk_id, split_chunk_id

Mode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class Filters:
    """Metadata filters; papers without the field never match a filter on it."""

    year_min: int | None = None
    year_max: int | None = None
    paper_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any((self.year_min, self.year_max, self.paper_ids, self.categories))

    def where(self) -> dict[str, Any] | None:
        """The same filter as a Chroma `where`."""
        clauses: list[dict[str, Any]] = []
        if self.year_min is not None:
            clauses.append({"year": {"$gte": self.year_min}})
        if self.year_max is not None:
            clauses.append({"year": {"$lte": self.year_max}})
        if self.paper_ids:
            clauses.append({"paper_id": {"$in": list(self.paper_ids)}})
        if self.categories:
            cats = [{"categories": {"$contains": c}} for c in self.categories]
            clauses.append(cats[0] if len(cats) == 1 else {"$or": cats})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def keep(self, meta: dict[str, Any]) -> bool:
        year = meta.get("year")
        if self.year_min is not None and (year is None or year < self.year_min):
            return False
        if self.year_max is not None and (year is None or year > self.year_max):
            return False
        if self.paper_ids and meta.get("paper_id") not in self.paper_ids:
            return False
        if self.categories and not set(self.categories) & set(meta.get("categories") or ()):
            return False
        return True


@dataclass
class Retrieval:
    query: str
    sources: list[Source]
    relevant: bool
    gate: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    vector: list[float] | None = None
    """The query's embedding, when dense retrieval made one: later steps reuse it."""


def rrf(rankings: list[list[str]], k: int) -> dict[str, float]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an id is in."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def mmr_order(vectors: list[np.ndarray], relevance: list[float], k: int, lam: float) -> list[int]:
    """Indices chosen by maximal marginal relevance over unit vectors."""
    if not vectors:
        return []
    mat = np.vstack(vectors)
    mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    sims = mat @ mat.T
    rel = np.asarray(relevance, dtype=float)
    if rel.max() > rel.min():
        rel = (rel - rel.min()) / (rel.max() - rel.min())
    chosen: list[int] = []
    left = list(range(len(vectors)))
    while left and len(chosen) < k:
        best = max(
            left,
            key=lambda i: (
                lam * rel[i] - (1 - lam) * (max(sims[i][j] for j in chosen) if chosen else 0)
            ),
        )
        chosen.append(best)
        left.remove(best)
    return chosen


class Retriever:
    def __init__(
        self,
        store: Store,
        embeddings: Embeddings,
        lexical: LexicalCache,
        settings: RetrievalSettings,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.lexical = lexical
        self.settings = settings

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: Mode = "hybrid",
        mmr: bool | None = None,
    ) -> Retrieval:
        cfg = self.settings
        k = k or cfg.k
        filters = filters or Filters()
        use_mmr = cfg.mmr if mmr is None else mmr
        timings: dict[str, float] = {}
        n = max(cfg.candidates, k * 4)

        t0 = time.perf_counter()
        index = self.lexical.get()
        records = self.lexical.records
        timings["index"] = time.perf_counter() - t0
        nearest: list[tuple[str, float, list[float] | None]] = []
        vector = None
        if mode in ("hybrid", "dense"):
            t0 = time.perf_counter()
            vector = self.embeddings.embed_query(query)
            timings["embed"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            nearest = self.store.nearest(vector, n, filters.where(), with_vectors=use_mmr)
            timings["dense"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lexical = []
        if mode in ("hybrid", "bm25"):
            mask = index.mask(filters.keep) if filters else None
            lexical = index.search(query, n, mask)
        timings["bm25"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        # Rank on ids alone (a chunk id names its paper); read records only for the
        # papers that can be shown: at 300k chunks each record read costs ~0.35 ms.
        dense_of = {cid: (score, vec) for cid, score, vec in nearest}
        fused = rrf([list(dense_of), [h.id for h in lexical]], cfg.rrf_k)
        papers = self._group(fused)
        if use_mmr and papers:
            papers = self._mmr(papers[: k * 3], dense_of, records, k, cfg.mmr_lambda)
        window = papers[: k + max(2, k // 2)]
        found = records.get_many(
            [cid for _, cids, _ in window for cid in cids]
            + [chunk_id(pid, 0) for pid, _, _ in window],
            self.store.get,
        )
        chunks = {}
        for cid, hit in found.items():
            score, vec = dense_of.get(cid, (float("nan"), None))
            chunks[cid] = replace(hit, score=score, vector=vec)
        sources = self._sources(window, chunks, k)
        dense_top = max((score for score, _ in dense_of.values()), default=float("nan"))
        gate = self._gate(query, sources, dense_top, index)
        timings["fuse"] = time.perf_counter() - t0
        relevant = gate["passed"] or not cfg.gate
        return Retrieval(query, sources, relevant, gate, timings, vector)

    # -- steps ------------------------------------------------------------------

    @staticmethod
    def _group(fused: dict[str, float]) -> list[tuple[str, list[str], float]]:
        """Papers by their best chunk's fused score: (paper_id, chunk ids best first, score)."""
        by_paper: dict[str, list[str]] = {}
        for cid in sorted(fused, key=fused.__getitem__, reverse=True):
            by_paper.setdefault(split_chunk_id(cid)[0], []).append(cid)
        ranked = [(pid, cids, fused[cids[0]]) for pid, cids in by_paper.items()]
        ranked.sort(key=lambda t: t[2], reverse=True)
        return ranked

    def _mmr(
        self,
        papers: list[tuple[str, list[str], float]],
        dense_of: dict[str, tuple[float, list[float] | None]],
        records: RecordCache,
        k: int,
        lam: float,
    ) -> list[tuple[str, list[str], float]]:
        """Re-order papers by MMR over their best chunks' vectors."""
        best = [p[1][0] for p in papers]
        vec_of = {cid: vec for cid, (_, vec) in dense_of.items() if vec is not None}
        lexical_only = [c for c in best if c not in vec_of]  # found by BM25 alone
        if lexical_only:
            found = records.get_many(lexical_only, self.store.get)
            texts = [found[c].text if c in found else "" for c in lexical_only]
            vec_of.update(zip(lexical_only, self.embeddings.embed_documents(texts), strict=True))
        vectors = [np.asarray(vec_of[c]) for c in best]
        order = mmr_order(vectors, [p[2] for p in papers], k, lam)
        return [papers[i] for i in order]

    def _sources(
        self,
        window: list[tuple[str, list[str], float]],
        chunks: dict[str, ChunkHit],
        k: int,
    ) -> list[Source]:
        """The top `k` papers as sources, each read against its chunk 0, which every
        write of a paper carries: a paper whose chunk 0 is gone (being deleted) is
        skipped, and chunks left from an older version (another content hash, while
        an update is between its upsert and the removal of its stale chunks) are
        not used, so a paper is only ever shown as one whole version."""
        sources: list[Source] = []
        for pid, all_cids, score in window:
            if len(sources) == k:
                break
            head = chunks.get(chunk_id(pid, 0))
            if head is None:
                continue
            meta = head.metadata
            version = meta.get("paper_hash")
            cids = [
                c
                for c in all_cids
                if c in chunks and chunks[c].metadata.get("paper_hash") == version
            ]
            if not cids:
                continue
            n = len(sources) + 1
            dense_scores = [chunks[c].score for c in cids if not math.isnan(chunks[c].score)]
            sources.append(
                Source(
                    n=n,
                    paper_id=pid,
                    title=str(meta.get("title", "")),
                    abstract=str(meta.get("abstract") or " ".join(chunks[c].text for c in cids)),
                    url=meta.get("url"),
                    score=score,
                    dense=max(dense_scores) if dense_scores else float("nan"),
                    passages=[
                        Passage(
                            c,
                            chunks[c].text,
                            int(chunks[c].metadata.get("start", 0)),
                            int(chunks[c].metadata.get("end", 0)),
                            chunks[c].score,
                        )
                        for c in cids
                    ],
                    year=meta.get("year"),
                )
            )
        return sources

    def _gate(
        self, query: str, sources: list[Source], dense_top: float, index: Any
    ) -> dict[str, Any]:
        cfg = self.settings
        coverage = term_coverage(query, [s.title + " " + s.abstract for s in sources[:3]], index)
        if not sources:
            return {
                "passed": False,
                "reason": "nothing retrieved",
                "dense_top": None,
                "coverage": 0.0,
            }
        dense_part = 0.0 if math.isnan(dense_top) else dense_top
        score = dense_part + cfg.gate_coverage_weight * coverage
        passed = score >= cfg.gate_threshold
        reason = None
        if not passed:
            reason = (
                f"nothing relevant: relevance {score:.2f} < {cfg.gate_threshold:.2f} "
                f"(best passage similarity {dense_part:.2f}, question terms covered "
                f"{coverage:.2f})"
            )
        return {
            "passed": passed,
            "reason": reason,
            "score": round(score, 4),
            "dense_top": None if math.isnan(dense_top) else round(dense_top, 4),
            "coverage": round(coverage, 4),
        }


def term_coverage(query: str, texts: list[str], index: Any) -> float:
    """IDF-weighted share of the query's distinct terms found in the best of `texts`.

    Terms the corpus has never seen weigh the most, so a question about
    something absent from the corpus scores low even when its generic words match.
    """
    q_terms = set(terms(query))
    if not q_terms or not texts:
        return 0.0
    idf = index_idf(index)
    weights = {t: idf(t) for t in q_terms}
    total = sum(weights.values())
    best = 0.0
    for text in texts:
        have = set(terms(text))
        best = max(best, sum(w for t, w in weights.items() if t in have) / total)
    return best


def index_idf(index: Any) -> Callable[[str], float]:
    """BM25's idf for a term in the lexical index; unseen terms get the largest."""
    retriever = getattr(index, "retriever", None)
    n_docs = max(len(index), 1) if index is not None else 1
    if retriever is None:
        return lambda _t: 1.0
    vocab = retriever.vocab_dict
    indptr = retriever.scores["indptr"]

    def idf(term: str) -> float:
        tid = vocab.get(term)
        df = 0 if tid is None else int(indptr[tid + 1] - indptr[tid])
        return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))

    return idf


# -- paper-level search (the /v1/search endpoint and `citeqa search`) -----------


def make_retriever(settings: Settings, store: Store, embeddings: Embeddings) -> Retriever:
    """The hybrid retriever over one store, its BM25 side following the collection."""
    return Retriever(store, embeddings, open_lexical(store, settings), settings.retrieval)


def search_papers(
    query: str,
    retriever: Retriever,
    k: int = 5,
    filters: Filters | None = None,
    mode: Mode = "hybrid",
) -> list[PaperHit]:
    """The k best papers for a query, each with its best passage as the snippet."""
    result = retriever.retrieve(query, k=k, filters=filters, mode=mode, mmr=False)
    hits = []
    for s in result.sources:
        best = s.passages[0]
        hits.append(
            PaperHit(
                paper_id=s.paper_id,
                title=s.title,
                score=round(s.score, 5),
                snippet=best.text,
                url=s.url,
                chunk_index=split_chunk_id(best.chunk_id)[1],
                start=best.start,
                end=best.end,
            )
        )
    return hits

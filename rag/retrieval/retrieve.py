"""Retrieval: from a question to the papers and passages that speak to it.

A query passes through named stages, each a method over one `Query` state:

    candidates  dense (the vector store) and BM25 chunk rankings
    fuse        reciprocal rank fusion of the two
    group       chunks to papers, each by its best chunk
    diversify   MMR over papers (when asked)
    read        the shown papers' records (from the BM25 index's stored documents,
                the store only for papers changed since), as numbered sources
    rerank      a reranker from rag/retrieval/rerank.py re-orders them; the first k stay
    signals     each source's dense and BM25 rank and its question-term coverage
    gate        does the corpus cover the question at all?

A new stage is one method and one name in `STAGES`; a reranker is one function
and one setting. `/v1/chat` and `/v1/search` go through the same stages.

The gate: the best chunk must be close enough to the question *and* the best
papers must say enough of the question, word by word in meaning
(`rag.answer.match.Matcher.coverage`: every content word of the question matched, in
context, to its closest word in a paper), which is what separates a question
the corpus covers from one merely near its field, whose words are each in some
paper but not together in one.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.answer.answerable import intent, topic
from rag.answer.match import Matcher
from rag.check.support import term_set
from rag.index.lexical import LexicalCache, LexicalHit, LexicalIndex, open_lexical
from rag.index.store import RecordCache, Store
from rag.retrieval.mmr import mmr_order
from rag.retrieval.rerank import RERANKERS
from rag.settings import RetrievalSettings, Settings
from rag.text import GENERAL_ZIPF, specificity, terms
from rag.types import ChunkHit, Filters, PaperHit, Passage, Source, chunk_id, split_chunk_id

Mode = Literal["hybrid", "dense", "bm25"]

__all__ = ["Mode", "Query", "Retrieval", "Retriever", "STAGES", "paper_search", "search_papers"]

STAGES = ("candidates", "fuse", "group", "diversify", "read", "rerank", "signals", "gate")


@dataclass
class Retrieval:
    query: str
    sources: list[Source]
    relevant: bool
    gate: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    vector: list[float] | None = None
    """The query's embedding, when dense retrieval made one: later steps reuse it."""
    partial: str | None = None
    """Why the dense side covers BM25's candidates only although hybrid was asked
    (the dense search missed its deadline; they are scored with the vectors the
    BM25 index stores); None when every ranking asked for is in it."""


@dataclass
class PaperCandidate:
    paper_id: str
    chunk_ids: list[str]
    """Its chunks found by either ranking, best first."""
    score: float


@dataclass
class Query:
    """What the stages read and write, in stage order."""

    text: str
    k: int
    filters: Filters
    mode: Mode
    mmr: bool
    index: LexicalIndex
    records: RecordCache
    timings: dict[str, float] = field(default_factory=dict)
    vector: list[float] | None = None
    dense: dict[str, tuple[float, list[float] | None]] = field(default_factory=dict)
    """chunk id -> (cosine similarity, vector if asked), nearest first."""
    lexical: list[LexicalHit] = field(default_factory=list)
    fused: dict[str, float] = field(default_factory=dict)
    papers: list[PaperCandidate] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)
    dense_deadline_ms: float | None = None
    partial: str | None = None

    @property
    def dense_top(self) -> float:
        return max((score for score, _ in self.dense.values()), default=float("nan"))


def rrf(rankings: list[list[str]], k: int) -> dict[str, float]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an id is in."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


class Retriever:
    def __init__(
        self,
        store: Store,
        embeddings: Embeddings,
        lexical: LexicalCache,
        settings: RetrievalSettings,
        matcher: Matcher | None = None,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.lexical = lexical
        self.settings = settings
        self.matcher = matcher or Matcher.for_embeddings(embeddings, settings.match_cache_papers)
        self.reranker = RERANKERS[settings.reranker]
        # Dense searches run here when a caller sets a deadline: one that misses it
        # finishes in the background, and while `LEFT_BEHIND` of them are still out,
        # later searches do not send another to a store that is not answering.
        self._dense_pool: ThreadPoolExecutor | None = None
        self._left_behind = 0
        self._dense_lock = threading.Lock()

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: Mode = "hybrid",
        mmr: bool | None = None,
        dense_deadline_ms: float | None = None,
    ) -> Retrieval:
        """The papers for `query`. With `dense_deadline_ms` (hybrid mode), a dense
        search that takes longer is left behind and BM25's candidates alone are
        ranked (scored with the index's stored vectors), marked in `Retrieval.partial`."""
        t0 = time.perf_counter()
        index = self.lexical.get()
        q = Query(
            text=query,
            k=k or self.settings.k,
            filters=filters or Filters(),
            mode=mode,
            mmr=self.settings.mmr if mmr is None else mmr,
            index=index,
            records=self.lexical.records,
            dense_deadline_ms=dense_deadline_ms if mode == "hybrid" else None,
        )
        q.timings["index"] = time.perf_counter() - t0
        for stage in STAGES:
            t0 = time.perf_counter()
            getattr(self, stage)(q)
            q.timings[stage] = q.timings.get(stage, 0.0) + time.perf_counter() - t0
        relevant = q.gate["passed"] or not self.settings.gate
        return Retrieval(query, q.sources, relevant, q.gate, q.timings, q.vector, q.partial)

    # -- stages, in order ----------------------------------------------------------

    def candidates(self, q: Query) -> None:
        """Chunk ids from dense search and BM25, each ranked best first."""
        n = max(self.settings.candidates, q.k * 4)
        if q.dense_deadline_ms is not None:
            self._candidates_by_deadline(q, n, q.dense_deadline_ms)
            return
        if q.mode in ("hybrid", "dense"):
            t0 = time.perf_counter()
            q.vector = self.embeddings.embed_query(q.text)
            q.timings["embed"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            nearest = self.store.nearest(q.vector, n, q.filters, with_vectors=q.mmr)
            q.dense = {cid: (score, vec) for cid, score, vec in nearest}
            q.timings["dense"] = time.perf_counter() - t0
        if q.mode in ("hybrid", "bm25"):
            t0 = time.perf_counter()
            q.lexical = q.index.search(q.text, n, q.filters)
            q.timings["bm25"] = time.perf_counter() - t0

    LEFT_BEHIND = 2
    DENSE_WORKERS = 32  # dense searches at once (API worker threads share the pool)

    def _candidates_by_deadline(self, q: Query, n: int, deadline_ms: float) -> None:
        """Hybrid candidates with the query's embedding and dense search in a worker
        thread and BM25 in this one meanwhile (tantivy's search lets go of the GIL);
        the dense ranking is used if it comes within `deadline_ms` of
        the stage's start, the embedding included."""
        t0 = time.perf_counter()
        embedded: Future[tuple[list[float], float]] = Future()
        with self._dense_lock:
            send = self._left_behind < self.LEFT_BEHIND
            if self._dense_pool is None:
                self._dense_pool = ThreadPoolExecutor(
                    self.DENSE_WORKERS, thread_name_prefix="citeqa-dense"
                )
            future = self._dense_pool.submit(self._embed_then_search, q, n, embedded, send)
        t1 = time.perf_counter()
        q.lexical = q.index.search(q.text, n, q.filters)
        q.timings["bm25"] = time.perf_counter() - t1
        nearest = None
        try:
            nearest = future.result(
                timeout=max(0.0, deadline_ms / 1000 - (time.perf_counter() - t0))
            )
        except FutureTimeout:
            if future.cancel():  # the pool was busy: nothing has run yet
                self._embed_then_search(q, n, embedded, send=False)
        # The embedding is this machine's own work: it is awaited past the deadline
        # (a store that does not answer delays only the search sent to it).
        q.vector, q.timings["embed"] = embedded.result()
        if nearest is None and send:
            q.partial = f"BM25's candidates only: the dense search took over {deadline_ms:g} ms"
            if not future.cancelled():  # it finishes in the background
                with self._dense_lock:
                    self._left_behind += 1
                future.add_done_callback(self._caught_up)
        q.timings["dense"] = time.perf_counter() - t0 - q.timings["embed"]
        if nearest is None:
            if not send:
                q.partial = (
                    f"BM25's candidates only: {self.LEFT_BEHIND} earlier dense searches are "
                    "still waiting on the vector store"
                )
            self._dense_from_index(q)
            return
        q.dense = {cid: (score, vec) for cid, score, vec in nearest}

    def _embed_then_search(
        self, q: Query, n: int, embedded: Future[tuple[list[float], float]], send: bool
    ) -> list[tuple[str, float, list[float] | None]] | None:
        t0 = time.perf_counter()
        try:
            vector = self.embeddings.embed_query(q.text)
        except BaseException as exc:
            embedded.set_exception(exc)
            raise
        embedded.set_result((vector, time.perf_counter() - t0))
        if not send:
            return None
        return self.store.nearest(vector, n, q.filters, with_vectors=q.mmr)

    def _dense_from_index(self, q: Query) -> None:
        """The dense ranking of BM25's candidates alone, scored with the vectors the
        index stores (cosine to the query): the gate, the answerability step and the
        fusion keep their dense evidence for the chunks BM25 found, while the chunks
        only the vector store would have found are missing."""
        assert q.vector is not None
        t0 = time.perf_counter()
        vectors = self.lexical.local_vectors(q.index, [h.id for h in q.lexical])
        if vectors:
            ids = list(vectors)
            m = np.stack([vectors[c] for c in ids])
            v = np.asarray(q.vector, dtype=np.float32)
            norms = np.maximum(np.linalg.norm(m, axis=1) * (np.linalg.norm(v) or 1.0), 1e-12)
            sims = (m @ v) / norms
            q.dense = {
                ids[i]: (float(sims[i]), vectors[ids[i]].tolist() if q.mmr else None)
                for i in np.argsort(-sims, kind="stable")
            }
        q.timings["dense_local"] = time.perf_counter() - t0

    def _caught_up(self, _: Future[Any]) -> None:
        with self._dense_lock:
            self._left_behind -= 1

    def fuse(self, q: Query) -> None:
        q.fused = rrf([list(q.dense), [h.id for h in q.lexical]], self.settings.rrf_k)

    def group(self, q: Query) -> None:
        """Papers by their best chunk's fused score. Ranks on ids alone (a chunk id
        names its paper): records are read only for papers that can be shown."""
        by_paper: dict[str, list[str]] = {}
        for cid in sorted(q.fused, key=q.fused.__getitem__, reverse=True):
            by_paper.setdefault(split_chunk_id(cid)[0], []).append(cid)
        q.papers = [PaperCandidate(pid, cids, q.fused[cids[0]]) for pid, cids in by_paper.items()]
        q.papers.sort(key=lambda p: p.score, reverse=True)

    def diversify(self, q: Query) -> None:
        """Re-order papers by MMR over their best chunks' vectors (when asked)."""
        if not q.mmr or not q.papers:
            return
        papers = q.papers[: q.k * 3]
        best = [p.chunk_ids[0] for p in papers]
        vec_of = {cid: vec for cid, (_, vec) in q.dense.items() if vec is not None}
        lexical_only = [c for c in best if c not in vec_of]  # found by BM25 alone
        if lexical_only:
            found = q.records.get_many(lexical_only, partial(self.lexical.read_records, q.index))
            texts = [found[c].text if c in found else "" for c in lexical_only]
            vec_of.update(zip(lexical_only, self.embeddings.embed_documents(texts), strict=True))
        vectors = [np.asarray(vec_of[c]) for c in best]
        order = mmr_order(vectors, [p.score for p in papers], q.k, self.settings.mmr_lambda)
        q.papers = [papers[i] for i in order]

    def read(self, q: Query) -> None:
        """Sources for the papers that may be shown (a few more than k, for the
        reranker and for papers that turn out to be mid-delete)."""
        window = q.papers[: q.k + max(2, q.k // 2)]
        found = q.records.get_many(
            [cid for p in window for cid in p.chunk_ids]
            + [chunk_id(p.paper_id, 0) for p in window],
            partial(self.lexical.read_records, q.index),
        )
        chunks = {}
        for cid, hit in found.items():
            score, vec = q.dense.get(cid, (float("nan"), None))
            chunks[cid] = replace(hit, score=score, vector=vec)
        q.sources = self._sources(window, chunks)

    def rerank(self, q: Query) -> None:
        """The reranker's order; the first k stay, numbered [1]..[k]."""
        ranked = self.reranker(q.text, q.sources)[: q.k]
        q.sources = [replace(s, n=i) for i, s in enumerate(ranked, 1)]

    def signals(self, q: Query) -> None:
        """What each source's evidence looks like beside the others': its paper's
        place in the dense and in the BM25 ranking, and how much of the question's
        vocabulary (`topic_weights`: words rare here and in English weigh most) its
        title and abstract hold. Answer
        generation reads these to decide which papers answer."""
        dense_rank = _paper_ranks(q.dense)
        lexical_rank = _paper_ranks(h.id for h in q.lexical)
        weights = topic_weights(q.text, term_weights(q.text, q.index))
        q.sources = [
            replace(
                s,
                dense_rank=dense_rank.get(s.paper_id),
                lexical_rank=lexical_rank.get(s.paper_id),
                coverage=weighted_coverage(weights, s.title + " " + s.abstract),
            )
            for s in q.sources
        ]

    def gate(self, q: Query) -> None:
        """Refuse unless `dense_top + w * match >= t`: the best chunk's cosine and
        the best papers' coverage of the question in meaning (`rag.answer.match`). Set
        questions are read by their topic, over the top papers together."""
        cfg = self.settings
        sources = q.sources
        coverage = max((s.coverage for s in sources[:3]), default=0.0)
        if not sources:
            q.gate = {
                "passed": False,
                "reason": "nothing retrieved",
                "near": False,
                "dense_top": None,
                "match": 0.0,
                "coverage": 0.0,
            }
            return
        dense_top = q.dense_top
        dense_part = 0.0 if math.isnan(dense_top) else dense_top
        match = 0.0
        if cfg.gate:
            is_set = intent(q.text) == "set"
            match = self.matcher.coverage(
                topic(q.text) if is_set else q.text, sources[:3], union=is_set
            )
        score = dense_part + cfg.gate_match_weight * match
        passed = score >= cfg.gate_threshold
        reason = None
        if not passed:
            reason = (
                f"nothing relevant: relevance {score:.3f} < {cfg.gate_threshold:.3f} "
                f"(best passage similarity {dense_part:.3f}, question said by the best "
                f"papers {match:.3f})"
            )
        q.gate = {
            "passed": passed,
            "reason": reason,
            # Refused, but close to passing: the refusal names the nearest papers.
            "near": not passed and score >= cfg.gate_threshold - cfg.gate_near_margin,
            "score": round(score, 4),
            "dense_top": None if math.isnan(dense_top) else round(dense_top, 4),
            "match": round(match, 4),
            "coverage": round(coverage, 4),
        }

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    def _sources(window: list[PaperCandidate], chunks: dict[str, ChunkHit]) -> list[Source]:
        """The window's papers as sources, each read against its chunk 0, which every
        write of a paper carries: a paper whose chunk 0 is gone (being deleted) is
        skipped, and chunks left from an older version (another content hash, while
        an update is between its upsert and the removal of its stale chunks) are
        not used, so a paper is only ever shown as one whole version."""
        sources: list[Source] = []
        for paper in window:
            pid, all_cids, score = paper.paper_id, paper.chunk_ids, paper.score
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


def _paper_ranks(chunk_ids: Any) -> dict[str, int]:
    """Each paper's place (0 = first) in a ranking of chunk ids, by its best chunk."""
    ranks: dict[str, int] = {}
    for cid in chunk_ids:
        ranks.setdefault(split_chunk_id(cid)[0], len(ranks))
    return ranks


def term_weights(query: str, index: LexicalIndex) -> dict[str, float]:
    """The query's distinct terms with their IDF: terms the corpus has never seen
    weigh the most, so a question about something absent from the corpus scores
    low even when its generic words match."""
    return {t: index.idf(t) for t in set(terms(query))}


def topic_weights(query: str, idf: dict[str, float]) -> dict[str, float]:
    """Question-term weights for coverage (the answerability model's):
    IDF times how rare the word is in English at large
    (`rag.text.specificity`), so the words that name the question's topic
    ("oversmoothing", "warmup") count most, and rare-here but everyday words that
    only frame it ("resolve", "deal with") count little."""
    rare = specificity(query)
    return {t: w * rare.get(t, GENERAL_ZIPF) for t, w in idf.items()}


def weighted_coverage(weights: dict[str, float], text: str) -> float:
    """The IDF-weighted share of the query's terms that `text` holds."""
    total = sum(weights.values())
    if not total:
        return 0.0
    have = term_set(text)  # cached: the same abstracts come back query after query
    return sum(w for t, w in weights.items() if t in have) / total


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
    return paper_search(query, retriever, k, filters, mode).hits


@dataclass
class PaperSearch:
    hits: list[PaperHit]
    partial: str | None = None
    """Set when the ranking covers BM25's candidates alone because the dense search
    missed `search_dense_timeout_ms` (see `Retrieval.partial`)."""


def paper_search(
    query: str,
    retriever: Retriever,
    k: int = 5,
    filters: Filters | None = None,
    mode: Mode = "hybrid",
) -> PaperSearch:
    """`search_papers`, with whether the ranking is partial."""
    result = retriever.retrieve(
        query,
        k=k,
        filters=filters,
        mode=mode,
        mmr=False,
        dense_deadline_ms=retriever.settings.search_dense_timeout_ms,
    )
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
    return PaperSearch(hits, result.partial)

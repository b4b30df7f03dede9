"""How well a passage supports a sentence: embedding similarity plus term overlap.

Shared by the extractive generator (which sentences answer the question) and
citation verification (does the cited paper say what the sentence claims).
Sentence vectors are cached: abstracts repeat across questions, so after the
first few questions almost nothing is embedded twice.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from rag.text import sentence_spans, terms
from rag.types import Source

# Weight of embedding similarity against term overlap in `support`.
DENSE_WEIGHT = 0.6
PAIR_PENALTY = 0.03


class SentenceEncoder:
    """Unit vectors for sentences, with an LRU cache keyed by the text."""

    def __init__(self, embeddings: Embeddings, capacity: int = 50_000) -> None:
        self.embeddings = embeddings
        self.capacity = capacity
        self._cache: LRUCache[str, np.ndarray] = LRUCache(capacity)
        # Query texts embedded here (a set question's topic): the answerability step
        # and the extractive summary both read the same question.
        self._queries: LRUCache[str, np.ndarray] = LRUCache(1024)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        with self._lock:
            found = {t: v for t in texts if (v := self._cache.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = np.asarray(self.embeddings.embed_documents(missing), dtype=np.float32)
            fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
            found.update(zip(missing, fresh, strict=True))
            with self._lock:
                for text, vec in zip(missing, fresh, strict=True):
                    self._cache[text] = vec
        return np.vstack([found[t] for t in texts])

    def encode_query(self, text: str, vector: Sequence[float] | None = None) -> np.ndarray:
        """The query's unit vector; `vector` is its embedding when one was made already
        (else the one made here for the same text last time, or a new one)."""
        if vector is None:
            with self._lock:
                cached = self._queries.get(text)
            if cached is not None:
                return cached
        raw = self.embeddings.embed_query(text) if vector is None else vector
        vec = np.asarray(raw, dtype=np.float32)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        if vector is None:
            with self._lock:
                self._queries[text] = vec
        return vec


@dataclass(frozen=True)
class SourceSentence:
    source: Source
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.source.abstract[self.start : self.end]


def source_sentences(source: Source) -> list[SourceSentence]:
    return [SourceSentence(source, a, b) for a, b in sentence_spans(source.abstract)]


def source_windows(source: Source) -> list[SourceSentence]:
    """Single sentences and adjacent pairs: a claim often rests on a sentence whose
    subject ("them", "this method") is named in the one before."""
    spans = sentence_spans(source.abstract)
    singles = [SourceSentence(source, a, b) for a, b in spans]
    pairs = [SourceSentence(source, a, d) for (a, _), (_, d) in zip(spans, spans[1:], strict=False)]
    return singles + pairs


@lru_cache(maxsize=65_536)
def term_set(text: str) -> frozenset[str]:
    """`terms(text)` as a set, cached: abstracts' sentences recur across questions."""
    return frozenset(terms(text))


# "The authors show ..." reports an abstract's "We show ...": the attribution is not
# part of the claim (the source's "we" is a stopword), so it is never counted.
ATTRIBUTION = term_set("the authors")


def claim_terms(claim: str) -> frozenset[str]:
    """The content terms a claim must find in its source (attribution left out)."""
    return term_set(claim) - ATTRIBUTION


def lexical_support(claim_terms: frozenset[str], source: Source) -> Support:
    """The single sentence of `source` that holds the most of the claim's terms (the
    paper's title counts with every sentence: a claim may name the paper)."""
    title = term_set(source.title)
    best = Support(0.0, None)
    for sentence in source_sentences(source):
        score = overlap(claim_terms, term_set(sentence.text) | title)
        if score > best.score:
            best = Support(score, sentence)
    return best


def overlap(claim_terms: AbstractSet[str], passage_terms: AbstractSet[str]) -> float:
    """Share of the claim's terms that the passage contains."""
    if not claim_terms:
        return 0.0
    return len(claim_terms & passage_terms) / len(claim_terms)


@dataclass(frozen=True)
class Support:
    score: float
    sentence: SourceSentence | None


def best_support(
    claim: str,
    source: Source,
    encoder: SentenceEncoder,
    claim_vec: np.ndarray | None = None,
    shortlist: int = 4,
) -> Support:
    """The sentence of `source` that best supports `claim`, and how well.

    Term overlap is cheap and picks a shortlist; only the shortlisted sentences
    are embedded (most are cached already), which keeps a cold question fast.
    """
    sentences = source_windows(source)
    n_single = len(sentence_spans(source.abstract))
    if not sentences:
        return Support(0.0, None)
    wanted = claim_terms(claim)
    lex = [overlap(wanted, term_set(s.text)) for s in sentences]
    order = sorted(range(len(sentences)), key=lex.__getitem__, reverse=True)[:shortlist]
    if claim_vec is None:
        claim_vec = encoder.encode([claim])[0]
    vecs = encoder.encode([sentences[i].text for i in order])
    best = Support(0.0, None)
    for row, i in enumerate(order):
        score = DENSE_WEIGHT * float(vecs[row] @ claim_vec) + (1 - DENSE_WEIGHT) * lex[i]
        if i >= n_single:
            score -= PAIR_PENALTY  # prefer quoting one sentence when one suffices
        if score > best.score:
            best = Support(score, sentences[i])
    return best

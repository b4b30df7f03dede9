"""Which retrieved papers answer the question: a small fitted model.

Retrieval finds papers *near* a question; only some of them answer it. A
"which paper ..." question about one diffusion paper retrieves three diffusion
papers, and citing all three is wrong; a "which papers ..." question about a
theme five papers share must cite all five. The decision is made per paper
from signals the pipeline already has, each relative to the other papers of
the same question so that it carries over between corpora and fields:

- the paper's best sentence: its similarity to the question (embedding cosine
  and term overlap; for a set question, cosine to its `topic`, the question
  without "which papers"), and that value over the best paper's;
- its question-term coverage (each term weighted by its IDF times its rarity in
  English, so the words that name the topic weigh most), and that
  over the best paper's;
- where dense search and BM25 each put it, and its place after fusion;
- whether the question asks about one paper or a set ("which papers ...").

The weights are a logistic regression fitted on the dev questions of both dev
corpora by `python -m evals.answerability --fit` (which also reports held-out
figures); they live in `answerable.json` beside this module, so refitting
changes no code. Nothing here names a corpus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer import fitted
from rag.answer.fitted import LinearModel
from rag.check.support import SentenceEncoder, SourceSentence, overlap, source_sentences, term_set
from rag.text import terms
from rag.types import Source

WEIGHTS = Path(__file__).with_name("answerable.json")

# What a field calls its papers: "papers" in one, "studies" or "trials" in another.
_PAPERS = r"(papers|works?|studies|articles|publications|trials|reports|reviews|analyses)"
_MEANS = r"(approaches|methods|techniques)"
# "Which papers ...", "what works/methods/approaches ...", "what do the papers say ...":
# the answer is every paper that answers, not the one that answers best.
_SET = re.compile(
    rf"^\W*(which|what)\s+(other\s+)?({_PAPERS}|{_MEANS})\b"
    rf"|\b(the|these|several|other|which|any) {_PAPERS}\b"
    rf"|^\W*(which|what) (\w+ ){{0,3}}({_MEANS}|{_PAPERS})\b",
    re.I,
)
# The words of a set question that frame it ("Which papers study", "What do the
# papers here say about"): about papers, not about the topic. "Which Bayesian
# optimization methods" keeps its words: they are the topic.
_FRAME = re.compile(
    rf"^\W*(what (do|did|have) (the|these) {_PAPERS}( here)? (say|find|found|report|reported|"
    rf"show|shown)( about)?"
    rf"|(which|what)\s+((other|proposed|new|recent|existing)\s+)?({_PAPERS}|{_MEANS})\s+(here\s+)?"
    rf"((do|does|did|have)\s+)?)\s*",
    re.I,
)


def intent(question: str) -> str:
    """'set' for a question about a set of papers, else 'single' (one paper or a fact)."""
    return "set" if _SET.search(question) else "single"


def topic(question: str) -> str:
    """A set question without its frame: "Which papers study learning with noisy
    labels?" -> "study learning with noisy labels?". Each paper's sentences are
    compared with this, so that "which papers" pulls no sentence up."""
    return _FRAME.sub("", question, count=1).strip() or question


@dataclass(frozen=True)
class Evidence:
    """One retrieved paper's evidence for one question."""

    source: Source
    best: float
    """Its best sentence's similarity to the question (cosine and term overlap)."""


SHORTLIST_PER_PAPER = 6  # sentences embedded per paper
CLOSING_SHORTLIST = 0.2  # the closing sentences are embedded even with few shared words
CLOSING_SENTENCES = 2  # an abstract's last sentences, where it states what it found
# Sentences that say where the code is or where a trial was registered: never an answer.
_BOILERPLATE = re.compile(
    r"(https?://|\bcode (is|are|will be)\b.*\bavailable\b|\bavailable at\b|\bgithub\b|"
    r"\b(trial )?registration\b|\bregistered (at|with|in|as)\b)",
    re.I,
)


@dataclass(frozen=True)
class Reading:
    """The sources' candidate sentences, each with its similarity to the question."""

    sentences: list[SourceSentence]
    topical: list[float]
    """0.7 * cosine + 0.3 * term overlap with the question, whatever the sentence's role."""
    vectors: np.ndarray
    closing: list[bool]
    """Whether the sentence is one of its abstract's last `CLOSING_SENTENCES` (boilerplate
    aside): where abstracts in every field state their conclusion."""

    def evidence(self, sources: list[Source]) -> list[Evidence]:
        best: dict[str, float] = {}
        for s, t in zip(self.sentences, self.topical, strict=True):
            pid = s.source.paper_id
            best[pid] = max(best.get(pid, -1.0), t)
        return [Evidence(src, best[src.paper_id]) for src in sources if src.paper_id in best]


def read_sentences(
    question: str,
    sources: list[Source],
    encoder: SentenceEncoder,
    query_vector: Sequence[float] | None = None,
    per_paper: int | None = SHORTLIST_PER_PAPER,
) -> Reading:
    """Each source's candidate sentences, scored against the question.

    Only a shortlist is embedded: each paper's sentences that share the most of
    the question's terms or sit in a passage retrieval matched, and its closing
    sentences (usually the conclusion). Keeps a cold question fast while every
    paper gets a fair hearing. Embeddings are cached, so reading the same
    sources twice (the chain, then the extractive summary) costs little.
    """
    q_terms = set(terms(question))
    matched = {(src.paper_id, p.start, p.end) for src in sources for p in src.passages[:2]}

    closing: set[tuple[str, int]] = set()  # (paper id, sentence start)

    def cheap(c: SourceSentence) -> float:
        in_passage = any(
            pid == c.source.paper_id and a <= c.start and c.end <= b for pid, a, b in matched
        )
        return (
            overlap(q_terms, term_set(c.text))
            + (0.3 if in_passage else 0.0)
            + (CLOSING_SHORTLIST if (c.source.paper_id, c.start) in closing else 0.0)
        )

    cands: list[SourceSentence] = []
    for src in sources:
        own = [
            s
            for s in source_sentences(src)
            if len(s.text) >= 30 and not _BOILERPLATE.search(s.text)
        ]
        closing.update((s.source.paper_id, s.start) for s in own[-CLOSING_SENTENCES:])
        cands.extend(sorted(own, key=cheap, reverse=True)[:per_paper])
    if not cands:
        return Reading([], [], np.zeros((0, 0), dtype=np.float32), [])
    if intent(question) == "set":
        # Compared with the topic alone; the question's own vector (retrieval's) has the frame.
        q_vec = encoder.encode_query(topic(question))
    else:
        q_vec = encoder.encode_query(question, query_vector)
    vecs = encoder.encode([c.text for c in cands])
    topical = [
        0.7 * float(vecs[i] @ q_vec) + 0.3 * overlap(q_terms, term_set(c.text))
        for i, c in enumerate(cands)
    ]
    return Reading(cands, topical, vecs, [(c.source.paper_id, c.start) in closing for c in cands])


def _inverse_rank(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / (1.0 + rank)


def features(evidence: list[Evidence], question_intent: str) -> list[dict[str, float]]:
    """The model's inputs for each paper, relative to the question's best paper."""
    top_best = max((e.best for e in evidence), default=0.0) or 1e-9
    top_cov = max((e.source.coverage for e in evidence), default=0.0) or 1e-9
    dense = [0.0 if math.isnan(e.source.dense) else e.source.dense for e in evidence]
    top_dense = max(dense, default=0.0) or 1e-9
    is_set = 1.0 if question_intent == "set" else 0.0
    rows = []
    for i, e in enumerate(evidence):
        s = e.source
        rel_best = e.best / top_best
        rows.append(
            {
                "best": e.best,
                "rel_best": rel_best,
                "gap_best": top_best - e.best,
                "dense": dense[i],
                "rel_dense": dense[i] / top_dense,
                "coverage": s.coverage,
                "rel_coverage": s.coverage / top_cov,
                "dense_rank": _inverse_rank(s.dense_rank),
                "lexical_rank": _inverse_rank(s.lexical_rank),
                "agree": 1.0
                if s.dense_rank is not None
                and s.lexical_rank is not None
                and max(s.dense_rank, s.lexical_rank) < 3
                else 0.0,
                "fused_rank": _inverse_rank(i),
                "is_set": is_set,
                "set_rel_best": is_set * rel_best,
                "set_rel_coverage": is_set * s.coverage / top_cov,
                "set_best": is_set * e.best,
                "set_dense": is_set * dense[i],
            }
        )
    return rows


FEATURES = tuple(features([Evidence(Source(1, "p", "", "", None, 0.0, 0.0), 1.0)], "single")[0])


def model(path: Path = WEIGHTS) -> LinearModel:
    """Does this paper answer the question?"""
    return fitted.load(path)


def answering(evidence: list[Evidence], question: str, m: LinearModel | None = None) -> list[str]:
    """The ids of the papers that answer, most likely first. The best paper always
    stays (the gate already decided the corpus covers the question)."""
    if not evidence:
        return []
    m = m or model()
    rows = features(evidence, intent(question))
    probs = m.probabilities(rows)
    order = sorted(range(len(evidence)), key=lambda i: probs[i], reverse=True)
    threshold = 0.5 if m.threshold is None else m.threshold
    kept = [i for i in order if probs[i] >= threshold] or order[:1]
    return [evidence[i].source.paper_id for i in kept]


def answering_sources(
    question: str,
    sources: list[Source],
    encoder: SentenceEncoder,
    query_vector: Sequence[float] | None = None,
) -> list[Source]:
    """The sources that answer the question, most likely first (at least one)."""
    evidence = read_sentences(question, sources, encoder, query_vector).evidence(sources)
    by_id = {s.paper_id: s for s in sources}
    return [by_id[pid] for pid in answering(evidence, question)]


def scored_sources(
    question: str,
    sources: list[Source],
    encoder: SentenceEncoder,
    query_vector: Sequence[float] | None = None,
    m: LinearModel | None = None,
) -> tuple[list[tuple[Source, float]], float]:
    """Each source with its probability of answering, most likely first, and the
    model's threshold: what the reader looks at to find the papers the model is
    unsure of (`answering_sources` keeps those at or above the threshold)."""
    evidence = read_sentences(question, sources, encoder, query_vector).evidence(sources)
    m = m or model()
    threshold = 0.5 if m.threshold is None else m.threshold
    if not evidence:
        return [], threshold
    probs = m.probabilities(features(evidence, intent(question)))
    scored = sorted(
        ((e.source, float(p)) for e, p in zip(evidence, probs, strict=True)),
        key=lambda sp: sp[1],
        reverse=True,
    )
    return scored, threshold

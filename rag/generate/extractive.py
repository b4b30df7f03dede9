"""The offline generator: a query-focused extractive summary with citations.

Candidate sentences come from the retrieved abstracts. Each is scored by
embedding similarity to the question plus IDF-free term overlap, then picked
by maximal marginal relevance (relevant, not redundant, at most a few per
paper). The summary groups the picked sentences by paper, in each paper's
own order, names the paper once, turns the authors' "we" into "the authors",
and ends each sentence with its paper's marker.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rag.mmr import mmr_select
from rag.settings import Settings
from rag.support import SentenceEncoder, SourceSentence, overlap, source_sentences, term_set
from rag.text import place_markers, terms
from rag.types import Source

MAX_SENTENCES = 6
MAX_PER_PAPER = 2
MAX_PAPERS = 4
MAX_SOURCES = 5  # sources whose sentences are candidates
SHORTLIST = 24  # candidate sentences embedded per question
PAPER_FLOOR = 0.9  # a paper is kept if its best sentence reaches this share of the best
SET_FLOOR = 0.8  # the same for a question about a set of papers ("which papers ...")
SET_MAX_PAPERS = 5
REDUNDANT = 0.85  # cosine above which a sentence repeats one already picked
RELATIVE_FLOOR = 0.7  # keep sentences scoring at least this share of the best one
LAMBDA = 0.75
_BOILERPLATE = re.compile(
    r"(https?://|\bcode (is|are|will be)\b.*\bavailable\b|\bavailable at\b|\bgithub\b)", re.I
)


# "Which papers ...", "what works/methods/approaches ...", "what do the papers say ...":
# the answer is every paper that answers, not the one that answers best.
_SET = re.compile(
    r"^\W*(which|what)\s+(other\s+)?(papers|works?|studies|articles|approaches|methods|"
    r"techniques)\b|\b(the|these|several|other|which) (papers|works|studies|articles)\b",
    re.I,
)


def intent(question: str) -> str:
    """'set' for a question about a set of papers, else 'single' (one paper or a fact)."""
    return "set" if _SET.search(question) else "single"


@dataclass
class _Candidate:
    sentence: SourceSentence
    relevance: float
    """How well it answers: topical relevance weighted by its rhetorical role."""
    topical: float
    """How close it is to the question, whatever its role: decides which papers stay."""


class ExtractiveGenerator:
    name: ClassVar[str] = "extractive"
    uses_model: ClassVar[bool] = False

    def __init__(self, settings: Settings | None, encoder: SentenceEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        return {"ok": True}

    def rewrite(
        self, history: list[tuple[str, str]], question: str, cancel: threading.Event | None = None
    ) -> str | None:
        return None  # no model: the chain's heuristic rewrite applies

    def select(
        self, question: str, sources: list[Source], query_vector: Sequence[float] | None = None
    ) -> list[SourceSentence]:
        """The sentences that answer `question`; `query_vector` is its embedding when
        retrieval already made one (saves embedding the question twice)."""
        q_terms = set(terms(question))
        cands = [
            s
            for src in sources[:MAX_SOURCES]
            for s in source_sentences(src)
            if len(s.text) >= 30 and not _BOILERPLATE.search(s.text)
        ]
        if not cands:
            return []
        # Embed a shortlist only: sentences that share the question's terms or sit
        # in a passage retrieval matched. Keeps a cold question well under a second.
        matched = {(src.paper_id, p.start, p.end) for src in sources for p in src.passages[:2]}

        def cheap(c: SourceSentence) -> float:
            in_passage = any(
                pid == c.source.paper_id and a <= c.start and c.end <= b for pid, a, b in matched
            )
            closing = not c.source.abstract[c.end :].strip()  # usually the conclusion
            return (
                overlap(q_terms, term_set(c.text))
                + (0.3 if in_passage else 0.0)
                + (CLOSING_SHORTLIST if closing else 0.0)
            )

        cands = sorted(cands, key=cheap, reverse=True)[:SHORTLIST]
        q_vec = self.encoder.encode_query(question, query_vector)
        vecs = self.encoder.encode([c.text for c in cands])
        rank_prior = {src.paper_id: 1.0 - 0.04 * i for i, src in enumerate(sources)}
        scored = []
        for i, c in enumerate(cands):
            rel = 0.7 * float(vecs[i] @ q_vec) + 0.3 * overlap(q_terms, term_set(c.text))
            topical = rel * rank_prior[c.source.paper_id]
            scored.append(_Candidate(c, topical * rhetoric(c), topical))
        # Papers whose best sentence is far below the best paper's add noise, not answers.
        # Which papers answer is a question of topic; which of their sentences to quote,
        # of role (a finding over its motivation).
        paper_best: dict[str, float] = {}
        for c in scored:
            pid = c.sentence.source.paper_id
            paper_best[pid] = max(paper_best.get(pid, 0.0), c.topical)
        top_paper = max(paper_best.values())
        is_set = intent(question) == "set"
        floor, most = (SET_FLOOR, SET_MAX_PAPERS) if is_set else (PAPER_FLOOR, MAX_PAPERS)
        kept = sorted(
            (p for p, v in paper_best.items() if v >= floor * top_paper),
            key=paper_best.__getitem__,
            reverse=True,
        )[:most]
        scored = [c for c in scored if c.sentence.source.paper_id in kept]
        vecs = vecs[[i for i, c in enumerate(cands) if c.source.paper_id in kept]]
        # Each kept paper answers: its sentences compete with its own best, not with
        # another paper's, and a set question gets one sentence from each paper first.
        own_top: dict[str, float] = {}
        for c in scored:
            pid = c.sentence.source.paper_id
            own_top[pid] = max(own_top.get(pid, 0.0), c.relevance)
        per_paper: dict[str, int] = {}
        cap = 1 if is_set and len(kept) >= 3 else MAX_PER_PAPER

        def admit(i: int, sim: float) -> bool:
            pid = scored[i].sentence.source.paper_id
            return (
                scored[i].relevance >= RELATIVE_FLOOR * own_top[pid]
                and per_paper.get(pid, 0) < cap
                and sim <= REDUNDANT
            )

        def picked(i: int) -> None:
            pid = scored[i].sentence.source.paper_id
            per_paper[pid] = per_paper.get(pid, 0) + 1

        chosen = mmr_select(
            vecs @ vecs.T,
            [c.relevance for c in scored],
            MAX_SENTENCES,
            LAMBDA,
            admit=admit,
            on_pick=picked,
        )
        return [scored[i].sentence for i in chosen]

    def compose(self, picked: list[SourceSentence]) -> str:
        groups: dict[int, list[SourceSentence]] = {}
        for s in picked:  # papers in order of their most relevant sentence
            groups.setdefault(s.source.n, []).append(s)
        paragraphs = []
        for n, sents in groups.items():
            src = sents[0].source
            body = " ".join(
                cite(third_person(s.text), n) for s in sorted(sents, key=lambda s: s.start)
            )
            paragraphs.append(f"{paper_label(src)}: {body}")
        return "\n\n".join(paragraphs)

    def answer(
        self, question: str, sources: list[Source], query_vector: Sequence[float] | None = None
    ) -> str:
        return self.compose(self.select(question, sources, query_vector))

    def stream(
        self,
        question: str,
        sources: list[Source],
        *,
        query_vector: Sequence[float] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        text = self.answer(question, sources, query_vector)
        # Sentence-sized pieces, so a streaming client sees the answer build up.
        for piece in re.split(r"(?<=\]\.)\s", text):
            yield piece + " "


_FINDING = re.compile(
    r"\b(we (show|find|found|prove|demonstrate|observe|establish|argue)|results (show|indicate|"
    r"suggest|demonstrate)|experiments (show|demonstrate)|(this|which) (suggests|shows|explains)|"
    r"outperform|achiev|improv|reduc|we propose|we introduce|we present)",
    re.I,
)
_BACKGROUND = re.compile(
    r"^(despite|however|although|while|recent|in recent years)|\b(remains? (largely )?"
    r"(unexplored|unclear|open|elusive|poorly understood)|little is known|not (yet )?(fully )?"
    r"understood|long-standing|challenge)",
    re.I,
)
# What a study set out to do, and how: the setting of a finding, not the finding.
_AIM = re.compile(
    r"\b(the (aims?|purposes?|objectives?|goals?) of (this|the present|our|the) (study|work|"
    r"paper|review|trial)|we (aimed|sought|set out)|(this|the present) study (aimed|sought|was "
    r"designed)|was (to|designed to) (investigate|evaluate|assess|determine|examine|compare))",
    re.I,
)
_METHOD = re.compile(
    r"\b((were|was) (enrolled|recruited|randomi[sz]ed|performed|conducted|carried out|"
    r"undertaken)|retrospective(ly)? review|we (retrospectively )?(reviewed|enrolled|recruited))",
    re.I,
)
# How abstracts in most fields state what they concluded.
_CONCLUSION = re.compile(
    r"^(in conclusion|in summary|to conclude|overall|taken together|together,)|\b(we conclude|"
    r"(these|our) (results|findings|data) (suggest|indicate|show|demonstrate|support)|"
    r"(suggests?|indicates?) that|appears? to be|should be (considered|used))",
    re.I,
)
FINDING, BACKGROUND, OPENING = 1.08, 0.9, 0.95
AIM, METHOD, CONCLUSION, CLOSING = 0.85, 0.9, 1.08, 1.25
CLOSING_SHORTLIST = 0.2  # the closing sentence is embedded even with few shared words


def rhetoric(c: SourceSentence) -> float:
    """Findings, conclusions and contributions answer questions; background,
    motivation, aims and methods rarely do. An abstract's closing sentence is
    usually its conclusion, in every field."""
    factor = 1.0
    text = c.text
    if _FINDING.search(text):
        factor *= FINDING
    if _BACKGROUND.search(text):
        factor *= BACKGROUND
    if _AIM.search(text):
        factor *= AIM
    if _METHOD.search(text):
        factor *= METHOD
    if _CONCLUSION.search(text):
        factor *= CONCLUSION
    if c.start == 0:
        factor *= OPENING  # the opening sentence is usually the field's setting
    elif not c.source.abstract[c.end :].strip():
        factor *= CLOSING
    return factor


def paper_label(source: Source) -> str:
    """A short name for the paper: the acronym before a colon, else the title."""
    title = source.title
    head, sep, _ = title.partition(":")
    if sep and len(head) <= 40 and len(head.split()) <= 4:
        return head.strip()
    return f"“{title}”" if len(title) <= 90 else f"“{title[:87].rstrip()}…”"


_WE = [
    (
        re.compile(r"^(In|Through|With) (this|our) (paper|work|study|article), we\b", re.I),
        "The authors",
    ),
    (re.compile(r"^(Here|Herein|Hence|Thus|Therefore), we\b"), "The authors"),
    (re.compile(r"^We\b"), "The authors"),
    (re.compile(r"^Our\b"), "Their"),
    (re.compile(r"\bwe\b"), "the authors"),
    (re.compile(r"\bour\b"), "their"),
    (re.compile(r"\bus\b"), "them"),
]


def third_person(sentence: str) -> str:
    """Report the abstract's claims as the authors' ("We show" -> "The authors show")."""
    out = sentence
    for pattern, repl in _WE:
        out = pattern.sub(repl, out)
    return out


def cite(sentence: str, n: int) -> str:
    """Put the marker before the sentence's final punctuation: "... views [1]."."""
    return place_markers(sentence, [n], end=".")

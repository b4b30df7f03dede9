"""The offline generator: a query-focused extractive summary with citations.

The chain gives it only the papers that answer (rag/answerable.py). Their
candidate sentences are scored by embedding similarity to the question plus
term overlap, weighted by rhetorical role (findings and conclusions over aims,
methods and background); each paper's best sentence is taken first, then more
by maximal marginal relevance (relevant, not redundant, at most two per paper,
one when three or more papers answer). When one or two papers answer, each
one's conclusion (the closer to the question of its last two sentences, where
abstracts in every field state what they found) joins its best sentence unless
it is far off the question. The summary groups the picked sentences
by paper, each paper's best sentence first (what it found, not its setting)
and the rest in the abstract's order, names the paper once, turns the authors'
"we" into "the authors", and ends each sentence with its paper's marker.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rag.answerable import read_sentences
from rag.mmr import mmr_select
from rag.settings import Settings
from rag.support import SentenceEncoder, SourceSentence
from rag.text import place_markers
from rag.types import Source

MAX_SENTENCES = 6
MAX_PER_PAPER = 2
SOLE_PAPER = 3  # sentences when one paper answers: its finding and its conclusion
CLOSING_FLOOR = 0.5  # a conclusion at least this share as close as the paper's best sentence
REDUNDANT = 0.85  # cosine above which a sentence repeats one already picked
RELATIVE_FLOOR = 0.7  # keep sentences scoring at least this share of the best one
LAMBDA = 0.75


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
        read = read_sentences(question, sources, self.encoder, query_vector)
        if not read.sentences:
            return []
        # The chain passes only the papers that answer (rag/answerable.py decides, by
        # topic); which of their sentences to quote is a question of role (a finding
        # over its motivation).
        kept = [
            src.paper_id
            for src in sources
            if src.paper_id in {s.source.paper_id for s in read.sentences}
        ]
        scored = [
            _Candidate(s, t * rhetoric(s), t)
            for s, t in zip(read.sentences, read.topical, strict=True)
        ]
        vecs = read.vectors
        # Each kept paper answers: its sentences compete with its own best, not with
        # another paper's, and a set question gets one sentence from each paper first.
        own_top: dict[str, float] = {}
        for c in scored:
            pid = c.sentence.source.paper_id
            own_top[pid] = max(own_top.get(pid, 0.0), c.relevance)
        per_paper: dict[str, int] = {}
        cap = 1 if len(kept) >= 3 else MAX_PER_PAPER if len(kept) == 2 else SOLE_PAPER
        rank = {pid: i for i, pid in enumerate(kept)}

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

        # Every answering paper gets its best sentence before any gets a second.
        firsts = [
            max(
                (i for i, c in enumerate(scored) if c.sentence.source.paper_id == pid),
                key=lambda i: scored[i].relevance,
            )
            for pid in kept
        ]
        if cap >= MAX_PER_PAPER:
            firsts += self._conclusions(scored, read.closing, kept, firsts)
        for i in firsts:
            picked(i)
        chosen = mmr_select(
            vecs @ vecs.T,
            [c.relevance for c in scored],
            MAX_SENTENCES,
            LAMBDA,
            admit=admit,
            on_pick=picked,
            chosen=firsts,
        )
        chosen.sort(key=lambda i: rank[scored[i].sentence.source.paper_id])
        return [scored[i].sentence for i in chosen]

    @staticmethod
    def _conclusions(
        scored: list[_Candidate], closing: list[bool], kept: list[str], firsts: list[int]
    ) -> list[int]:
        """Each paper's conclusion: the closest of its closing sentences to the question,
        unless it is far off the question or the paper's best sentence already."""
        best: dict[str, float] = {}
        for c in scored:
            pid = c.sentence.source.paper_id
            best[pid] = max(best.get(pid, 0.0), c.topical)
        out: dict[str, int] = {}
        for i, c in enumerate(scored):
            pid = c.sentence.source.paper_id
            if closing[i] and pid in kept and c.topical >= CLOSING_FLOOR * best[pid]:
                if pid not in out or c.topical > scored[out[pid]].topical:
                    out[pid] = i
        return [i for i in out.values() if i not in firsts]

    def compose(self, picked: list[SourceSentence]) -> str:
        groups: dict[int, list[SourceSentence]] = {}
        for s in picked:  # papers in order of their most relevant sentence
            groups.setdefault(s.source.n, []).append(s)
        paragraphs = []
        for n, sents in groups.items():
            src = sents[0].source
            body = " ".join(cite(third_person(s.text), n) for s in lead_with_best(sents))
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


# A sentence that leans on the one before it ("This shows ...", "However, ...",
# "Third, ...", "Based on this, ...").
_LEANS_BACK = re.compile(
    r"^(this|these|that|those|it|its|they|their|such|thus|hence|therefore|however|moreover|"
    r"furthermore|in addition|additionally|also|then|next|consequently|as a result|second|"
    r"secondly|third|thirdly|fourth|fifth|finally|lastly|to this end|based on|building on|"
    r"under (this|these)|with (this|these)|in (this|such) (case|cases|setting|way))\b",
    re.I,
)


def lead_with_best(sents: list[SourceSentence]) -> list[SourceSentence]:
    """One paper's picked sentences as its paragraph reads them: the one that answers
    best (picked first) leads, with the picked sentences that follow it in the
    abstract and lean on it ("This property ..."), so the answer opens on what the
    paper found rather than on its setting; the others follow in the abstract's
    order. A best sentence that leans on the one before it keeps the abstract's
    order."""
    ordered = sorted(sents, key=lambda s: s.start)
    b = ordered.index(sents[0])
    if b == 0 or _LEANS_BACK.match(sents[0].text):
        return ordered
    end = b + 1
    abstract = sents[0].source.abstract
    while (
        end < len(ordered)
        and _LEANS_BACK.match(ordered[end].text)
        and not abstract[ordered[end - 1].end : ordered[end].start].strip()  # next in it
    ):
        end += 1
    return ordered[b:end] + ordered[:b] + ordered[end:]


_FINDING = re.compile(
    r"\b(we (show|find|found|prove|demonstrate|observe|establish|argue)|results (show|indicate|"
    r"suggest|demonstrate)|experiments (show|demonstrate)|(this|which) (suggests|shows|explains)|"
    r"outperform|achiev|improv|reduc|we propose|we introduce|we present)",
    re.I,
)
_BACKGROUND = re.compile(
    r"^(despite|however|although|while|recent|in recent years)|\b(remains? (largely )?"
    r"(unexplored|unclear|open|elusive|poorly understood)|little is known|not (yet )?(fully )?"
    r"understood|long-standing|challenge)|\b(has|have) (been (considered|proposed|widely|"
    r"extensively|increasingly|commonly|traditionally)|(attracted|received|gained) )",
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
    r"undertaken)|(was|were) used to|retrospective(ly)? review|we (retrospectively )?(reviewed|"
    r"enrolled|recruited))",
    re.I,
)
# What is left for later work: said where a finding would be, but not a finding.
_FUTURE = re.compile(
    r"\b(further|future|more|additional|larger) (\w+ ){0,3}(studies|research|work|trials|"
    r"investigations?)\b[^.;]{0,80}\b(needed|required|warranted|recommended|necessary|should|"
    r"will be|would be)\b|\bremains? to be (determined|established|seen|elucidated)\b",
    re.I,
)
# How abstracts in most fields state what they concluded.
_CONCLUSION = re.compile(
    r"^(in conclusion|in summary|to conclude|overall|taken together|together,)|\b(we conclude|"
    r"(these|our) (results|findings|data) (suggest|indicate|show|demonstrate|support)|"
    r"(suggests?|indicates?) that|appears? to be|should be (considered|used))",
    re.I,
)
FINDING, BACKGROUND, OPENING = 1.08, 0.8, 0.9
AIM, METHOD, FUTURE, CONCLUSION, CLOSING = 0.75, 0.9, 0.75, 1.08, 1.25


def rhetoric(c: SourceSentence) -> float:
    """Findings, conclusions and contributions answer questions; background,
    motivation, aims, methods and calls for further study rarely do. An abstract's
    closing sentence is usually its conclusion, in every field."""
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
    if _FUTURE.search(text):
        factor *= FUTURE
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

"""The offline generator: a query-focused extractive summary with citations.

The chain gives it only the papers that answer (rag/answer/answerable.py). All their
sentences are scored by embedding similarity to the question plus term
overlap, weighted by the chance that the sentence states a finding rather than
its setting (rag/answer/roles.py: a fitted model; motivation, aims and design count
down to `ROLE_FLOOR` of their closeness); each paper's best sentence is taken
first, then more by maximal marginal relevance (relevant, not redundant, at
most two per paper, one when three or more papers answer). When one or two
papers answer, each one's sentence closest to the question (whatever its role:
it holds the fact a question of fact asks for) and its conclusion (the closer
to the question of its last two sentences, where abstracts in every field
state what they found) join its best sentence unless the conclusion is far off
the question. The summary groups the picked sentences by paper, each paper's
best sentence first (what it found, not its setting) and the rest in the
abstract's order, names the paper once, turns the authors' "we" into "the
authors", and ends each sentence with its paper's marker. A picked sentence whose
subject is named in the sentence before it ("This decomposition provides ...")
brings that sentence along, so no quote reads as a riddle.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rag.answer.answerable import read_sentences
from rag.answer.roles import finding_probability, place
from rag.check.support import SentenceEncoder, SourceSentence
from rag.retrieval.mmr import mmr_select
from rag.settings import Settings
from rag.text import place_markers, sentence_spans
from rag.types import Source

MAX_SENTENCES = 6
MAX_PER_PAPER = 2
SOLE_PAPER = 3  # one paper answers: its finding, the closest sentence, its conclusion
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
        # Every sentence of the few papers that answer: a finding that shares few of
        # the question's words is still a candidate (the gate's pass over the top
        # papers has pooled most of their vectors already).
        read = read_sentences(question, sources, self.encoder, query_vector, per_paper=None)
        if not read.sentences:
            return []
        # The chain passes only the papers that answer (rag/answer/answerable.py decides, by
        # topic); which of their sentences to quote is a question of role (a finding
        # over its motivation).
        kept = [
            src.paper_id
            for src in sources
            if src.paper_id in {s.source.paper_id for s in read.sentences}
        ]
        scored = [
            _Candidate(s, t * r, t)
            for s, t, r in zip(read.sentences, read.topical, rhetoric(read.sentences), strict=True)
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
            # The sentence closest to the question joins the paper's best finding, whatever
            # its role: it holds the fact a question of fact asks for ("at what rate ..."),
            # and the answer still opens on the finding. Then the paper's conclusion.
            firsts += self._closest(scored, kept, firsts)
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
        chosen = with_antecedents(scored, chosen)
        chosen.sort(key=lambda i: rank[scored[i].sentence.source.paper_id])
        return [scored[i].sentence for i in chosen]

    @staticmethod
    def _closest(scored: list[_Candidate], kept: list[str], firsts: list[int]) -> list[int]:
        """Each paper's sentence closest to the question, unless already picked."""
        out = []
        for pid in kept:
            i = max(
                (i for i, c in enumerate(scored) if c.sentence.source.paper_id == pid),
                key=lambda i: scored[i].topical,
            )
            if i not in firsts and i not in out:
                out.append(i)
        return out

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


# A sentence whose subject is something named in the sentence before it ("This
# decomposition provides ...", "It also ...", "Such models ..."): quoted alone, it
# reads as a riddle. A paper speaking of itself ("This study ...") is not one.
# Narrower than `_LEANS_BACK`, which orders a paragraph: a connective ("However,
# ...", "Third, ...") reads well alone; a subject named only before it does not.
_REFERS_BACK = re.compile(
    r"^(this|these|those|that|such|it|its|they|their|them|the latter|the former)\b"
    r"(?!( [\w,-]+){0,3}? (paper|study|studies|work|article|trial|review|analysis|report|"
    r"survey|research|letter|investigation|thesis|chapter)\b)",
    re.I,
)
# "It is concluded that ...", "It remains unclear whether ...": an "it" that stands
# for what follows, not for anything before.
_EXPLETIVE = re.compile(
    r"^it (is|was|has been|had been|seems|seemed|appears|appeared|remains|remained|can|could|"
    r"may|might|should|must|would|will)( not)?( be| have been)?( \w+){0,2}? "
    r"(that|to|whether|if|how|why|what)\b",
    re.I,
)
# A sentence brought back for one that refers to it may itself point further back
# ("We analyze it for both ...").
_POINTS_BACK = re.compile(r"^(\S+ ){1,3}(it|them)\b", re.I)


def _refers_back(text: str, further: bool = False) -> bool:
    return bool(
        (_REFERS_BACK.match(text) or (further and _POINTS_BACK.match(text)))
        and not _EXPLETIVE.match(text)
    )


ANTECEDENTS = 2  # at most this many sentences brought back for one picked sentence


def with_antecedents(scored: list[_Candidate], chosen: list[int]) -> list[int]:
    """`chosen` plus, for each picked sentence whose subject refers back to the
    sentence before it in its abstract, that sentence (and the one before that, if
    it points back too), so every quoted sentence reads with what it refers to."""
    at = {(c.sentence.source.paper_id, c.sentence.start): i for i, c in enumerate(scored)}
    out = list(chosen)
    for i in chosen:
        s = scored[i].sentence
        for step in range(ANTECEDENTS):
            if not _refers_back(s.text, further=step > 0):
                break
            k, _ = place(s.source.abstract, s.start)
            before = sentence_spans(s.source.abstract)[k - 1][0] if k > 0 else None
            j = at.get((s.source.paper_id, before)) if before is not None else None
            if j is None:
                break
            if j not in out:
                out.append(j)
            s = scored[j].sentence
    return out


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


ROLE_FLOOR = 0.4  # a sentence surely not a finding counts this share of its closeness


def rhetoric(sentences: Sequence[SourceSentence]) -> list[float]:
    """Findings, conclusions and contributions answer questions; background,
    motivation, aims, methods and calls for further study rarely do: each
    sentence's closeness to the question is weighted by the chance that it states
    a finding (rag/answer/roles.py), from `ROLE_FLOOR` to 1."""
    p = finding_probability(sentences)
    return [ROLE_FLOOR + (1.0 - ROLE_FLOOR) * float(v) for v in p]


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

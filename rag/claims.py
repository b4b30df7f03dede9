"""Claim verification: does the corpus support or contradict a claim, and who says so?

A chat answer cites the papers that match a question, whether they agree with
each other or not. `verify_claim` asks the other question of the corpus: for
each retrieved paper that bears on a claim, whether it supports or contradicts
it, with the sentences that say so (its rationale, cited with offsets like an
answer's citations), and a verdict over all of them.

Two fitted decisions (rag/answer/fitted.py), both in `claims.json` beside this module,
written by `python -m evals.claims --fit`:

- `rationale`: is this sentence evidence on the claim? Per sentence, from its
  similarity to the claim (cosine and term overlap, absolute and against the
  paper's best sentence), its place in the abstract and the paper's retrieval
  rank. A paper bears on the claim when its best sentence reaches the threshold;
  its rationale is its sentences that do (at most `MAX_RATIONALE`).
- `contradicts`: given a paper's rationale, does it contradict the claim rather
  than support it? From cues of direction and negation that the claim and the
  rationale each carry (not / no / fails to, increases / reduces, no effect,
  numbers the claim states that the paper does not), whether they agree, and
  their similarity.

Nothing here names a corpus; the weights are fitted on training claims by
cross-validation grouped by the papers the claims were written from.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from rag.answer.fitted import LinearModel
from rag.check.support import SentenceEncoder, overlap, term_set
from rag.retrieval.retrieve import Retriever
from rag.text import sentence_spans, terms
from rag.types import Citation, Filters, Source

WEIGHTS = Path(__file__).with_name("claims.json")
MAX_RATIONALE = 3  # sentences quoted per paper (SciFact's own limit)
Label = Literal["supports", "contradicts", "not enough information"]
SUPPORTS: Label = "supports"
CONTRADICTS: Label = "contradicts"
NEI: Label = "not enough information"

# -- cues ---------------------------------------------------------------------------

_NEG = re.compile(
    r"\b(not|no|never|none|neither|nor|cannot|without|lacks?|lacking|absen(t|ce)|fail(s|ed)?"
    r"|unable|inability|insufficient|unaffected|unchanged|unrelated|independent(ly)? of"
    r"|non-?significant(ly)?|ineffective|incapable)\b|n't\b",
    re.I,
)
# A finding of no effect: what a paper says when it contradicts a claim of one.
_NULL = re.compile(
    r"\bno (statistically )?(significant |clear |detectable |measurable )?(effect|difference|"
    r"association|change|correlation|relationship|impact|benefit|increase|decrease|"
    r"reduction|improvement|evidence|role|link)s?\b"
    r"|\bnot (statistically )?significant(ly)?\b|\b(did|does|do|was|were|is|are) not\b"
    r"|\b(similar|comparable|unchanged|unaffected|non-?significant)\b",
    re.I,
)
_UP = re.compile(
    r"\b(increas\w*|higher|greater|more|elevat\w*|enhanc\w*|promot\w*|improv\w*|activat\w*"
    r"|induc\w*|up-?regulat\w*|rais\w*|stimulat\w*|accelerat\w*|augment\w*|boost\w*|gain\w*"
    r"|rise|rises|rising|exacerbat\w*|worsen\w*|potentiat\w*|amplif\w*|facilitat\w*"
    r"|longer|larger|faster|excess\w*|overexpress\w*|positive(ly)?|benefi\w*|protect\w*"
    r"|efficac\w*|effective|sufficient|required|necessary|essential|causes?|caused)\b",
    re.I,
)
_DOWN = re.compile(
    r"\b(decreas\w*|lower\w*|less|reduc\w*|inhibit\w*|suppress\w*|impair\w*|attenuat\w*"
    r"|down-?regulat\w*|diminish\w*|declin\w*|prevent\w*|block\w*|loss|lose|loses|lost"
    r"|slow\w*|abolish\w*|fewer|deplet\w*|shorter|smaller|deficien\w*|negative(ly)?"
    r"|harm\w*|detriment\w*|risk|impede\w*|imped\w*|hinder\w*|antagoni\w*|abrogat\w*"
    r"|limit\w*|weak\w*|poor\w*|delay\w*)\b",
    re.I,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Cues:
    negation: float
    null: float
    direction: float
    """+1 when the text's words of increase outnumber those of decrease, -1 the other
    way, 0 when even or none."""
    numbers: frozenset[str]


@cache
def cues(text: str) -> Cues:
    up, down = len(_UP.findall(text)), len(_DOWN.findall(text))
    return Cues(
        negation=float(bool(_NEG.search(text))),
        null=float(bool(_NULL.search(text))),
        direction=float(np.sign(up - down)),
        numbers=frozenset(_NUMBER.findall(text)),
    )


# -- sentences ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One sentence of a paper's abstract: `source.abstract[start:end]`."""

    source: Source
    start: int
    end: int
    index: int
    """Its place in the abstract (0 = first)."""

    @property
    def text(self) -> str:
        return self.source.abstract[self.start : self.end]


def sentences_of(source: Source) -> list[Sentence]:
    return [Sentence(source, a, b, i) for i, (a, b) in enumerate(sentence_spans(source.abstract))]


def rationale_features(
    claim: str, sentences: Sequence[Sentence], sims: np.ndarray, paper_rank: int
) -> list[dict[str, float]]:
    """The rationale model's inputs for each sentence of one paper (`sims`: each
    sentence's cosine to the claim)."""
    if not sentences:
        return []
    wanted = term_set(claim)
    lex = [overlap(wanted, term_set(s.text)) for s in sentences]
    best_sim, best_lex = float(sims.max()), max(lex)
    order = np.argsort(-sims, kind="stable")
    rank = np.empty(len(sentences), dtype=int)
    rank[order] = np.arange(len(sentences))
    n = len(sentences)
    rows = []
    for i, s in enumerate(sentences):
        c = cues(s.text)
        rows.append(
            {
                "cos": float(sims[i]),
                "overlap": lex[i],
                "gap_cos": best_sim - float(sims[i]),
                "gap_overlap": best_lex - lex[i],
                "sent_rank": 1.0 / (1.0 + rank[i]),
                "paper_best_cos": best_sim,
                "paper_rank": 1.0 / (1.0 + paper_rank),
                "position": s.index / max(1, n - 1),
                "closing": 1.0 if s.index >= n - 2 else 0.0,
                "first": 1.0 if s.index == 0 else 0.0,
                "has_number": 1.0 if c.numbers else 0.0,
                "directional": abs(c.direction),
                "length": min(len(s.text), 400) / 400,
            }
        )
    return rows


_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?|n't")


@cache
def cue_words(text: str) -> dict[str, float]:
    """The text's cue words (stemmed) with their direction: +1 up, -1 down, 0 negation."""
    from rag.text import stemmer

    out: dict[str, float] = {}
    for w in _WORD.findall(text.lower()):
        if _NEG.fullmatch(w):
            out["not"] = 0.0
        elif _UP.fullmatch(w):
            out[stemmer().stemWord(w)] = 1.0
        elif _DOWN.fullmatch(w):
            out[stemmer().stemWord(w)] = -1.0
    return out


def label_features(claim: str, rationale: Sequence[str], sim: float) -> dict[str, float]:
    """The contradiction model's inputs: the claim's cues against its rationale's
    (`sim`: the rationale's best cosine to the claim)."""
    c = cues(claim)
    r = [cues(t) for t in rationale]
    neg = max((x.negation for x in r), default=0.0)
    null = max((x.null for x in r), default=0.0)
    direction = float(np.sign(sum(x.direction for x in r)))
    numbers = frozenset().union(*(x.numbers for x in r)) if r else frozenset()
    joined = " ".join(rationale)
    lex = overlap(term_set(claim), term_set(joined))
    missing = len(c.numbers - numbers) / len(c.numbers) if c.numbers else 0.0
    cw = cue_words(claim)
    rw: dict[str, float] = {}
    for t in rationale:
        rw.update(cue_words(t))
    claim_only = float(np.sign(sum(v for w, v in cw.items() if w not in rw)))
    sent_only = float(np.sign(sum(v for w, v in rw.items() if w not in cw)))
    neg_claim_only = float("not" in cw and "not" not in rw)
    neg_sent_only = float("not" in rw and "not" not in cw)
    shared = [v for w, v in cw.items() if w in rw and v]
    return {
        "dir_claim_only": claim_only,
        "dir_sent_only": sent_only,
        "dir_only_clash": float(claim_only * sent_only < 0),
        "dir_only_agree": float(claim_only * sent_only > 0),
        "neg_claim_only": neg_claim_only,
        "neg_sent_only": neg_sent_only,
        "shared_dir_words": min(len(shared), 3) / 3,
        "neg_flip_shared": (neg_claim_only + neg_sent_only) * float(bool(shared)),
        "claim_neg": c.negation,
        "sent_neg": neg,
        "neg_xor": float(c.negation != neg),
        "neg_both": c.negation * neg,
        "claim_null": c.null,
        "sent_null": null,
        "null_claim_effect": null * (1.0 - c.negation) * (1.0 - c.null),
        "claim_dir": c.direction,
        "sent_dir": direction,
        "dir_agree": float(c.direction * direction > 0),
        "dir_clash": float(c.direction * direction < 0),
        "dir_clash_neg": float(c.direction * direction < 0) * c.negation,
        "numbers_missing": missing,
        "cos": sim,
        "overlap": lex,
        "claim_terms_new": 1.0 - overlap(term_set(claim), term_set(joined)),
        "claim_len": min(len(terms(claim)), 30) / 30,
    }


RATIONALE_FEATURES = tuple(
    rationale_features(
        "x", [Sentence(Source(1, "p", "", "x", None, 0.0, 0.0), 0, 1, 0)], np.zeros(1), 0
    )[0]
)
LABEL_FEATURES = tuple(label_features("x", ["x"], 0.0))


# -- the models ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimModels:
    rationale: LinearModel
    """P(a sentence is evidence on the claim); its threshold decides."""
    contradicts: LinearModel
    """P(a paper's rationale contradicts the claim rather than supports it)."""
    sure: Mapping[str, float] | None = None
    """Where `contradicts` is sure of a label, held out: `supports_below` (a P below it
    is a support) and `contradicts_from` (a P from it is a contradiction), each right
    at least `precision` of the time in cross-validation. None: never sure (a chat
    answer then never says its papers disagree)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rationale": self.rationale.to_json(),
            "contradicts": self.contradicts.to_json(),
        }
        if self.sure is not None:
            out["sure"] = dict(self.sure)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClaimModels:
        return cls(
            LinearModel.from_json(data["rationale"]),
            LinearModel.from_json(data["contradicts"]),
            data.get("sure"),
        )


@cache
def load_models(path: Path = WEIGHTS) -> ClaimModels:
    import json

    return ClaimModels.from_json(json.loads(path.read_text()))


# -- verification -------------------------------------------------------------------


@dataclass(frozen=True)
class PaperJudgement:
    source: Source
    label: Label
    probability: float
    """P(contradicts) for a paper that bears on the claim; P(bears) otherwise."""
    rationale: tuple[Sentence, ...]


def judge_papers(
    claim: str,
    sources: Sequence[Source],
    encoder: SentenceEncoder,
    models: ClaimModels | None = None,
) -> list[PaperJudgement]:
    """Each source's label on the claim, with its rationale, in retrieval order."""
    models = models or load_models()
    per = [sentences_of(s) for s in sources]
    flat = [s for group in per for s in group]
    if not flat:
        return [PaperJudgement(s, NEI, 0.0, ()) for s in sources]
    claim_vec = encoder.encode_query(claim)
    vecs = encoder.encode([s.text for s in flat])
    sims_all = vecs @ claim_vec
    out: list[PaperJudgement] = []
    offset = 0
    threshold = models.rationale.threshold or 0.5
    for rank, (source, group) in enumerate(zip(sources, per, strict=True)):
        sims = sims_all[offset : offset + len(group)]
        offset += len(group)
        if not group:
            out.append(PaperJudgement(source, NEI, 0.0, ()))
            continue
        probs = models.rationale.probabilities(rationale_features(claim, group, sims, rank))
        order = [i for i in np.argsort(-probs, kind="stable") if probs[i] >= threshold]
        if not order:
            out.append(PaperJudgement(source, NEI, float(probs.max()), ()))
            continue
        picked = sorted(order[:MAX_RATIONALE])
        out.append(
            label_paper(
                claim, source, [group[i] for i in picked], float(sims[picked].max()), models
            )
        )
    return out


def label_paper(
    claim: str,
    source: Source,
    rationale: Sequence[Sentence],
    sim: float,
    models: ClaimModels | None = None,
) -> PaperJudgement:
    """The label of a paper whose rationale is known (chosen, or given as gold)."""
    models = models or load_models()
    p = models.contradicts.probability(label_features(claim, [s.text for s in rationale], sim))
    threshold = models.contradicts.threshold or 0.5
    return PaperJudgement(source, CONTRADICTS if p >= threshold else SUPPORTS, p, tuple(rationale))


def verdict(judgements: Sequence[PaperJudgement]) -> str:
    """'3 papers support it, 1 contradicts it', or that the corpus says nothing."""
    n_sup = sum(j.label == SUPPORTS for j in judgements)
    n_con = sum(j.label == CONTRADICTS for j in judgements)
    if not n_sup and not n_con:
        return "Not enough information: no retrieved paper supports or contradicts it."
    parts = []
    if n_sup:
        parts.append(
            f"{n_sup} paper{'s' if n_sup > 1 else ''} support{'' if n_sup > 1 else 's'} it"
        )
    if n_con:
        parts.append(
            f"{n_con} paper{'s' if n_con > 1 else ''} contradict{'' if n_con > 1 else 's'} it"
        )
    return ", ".join(parts) + "."


def citations_of(judgements: Sequence[PaperJudgement]) -> list[list[Citation]]:
    """Each judgement's rationale as citations, numbered across all of them."""
    n = 0
    out = []
    for j in judgements:
        cites = []
        if j.rationale:
            n += 1
            for s in j.rationale:
                cites.append(
                    Citation(
                        n=n,
                        paper_id=j.source.paper_id,
                        title=j.source.title,
                        url=j.source.url,
                        quote=s.text,
                        start=s.start,
                        end=s.end,
                    )
                )
        out.append(cites)
    return out


# -- the capability: a claim in, papers with their labels and rationale out -----------

REFUSAL = "The corpus does not cover this claim."


class PaperVerdict(BaseModel):
    """One paper that bears on the claim, its label and the sentences that say so."""

    paper_id: str
    title: str
    url: str | None
    label: Label
    probability: float = Field(
        description="The model's P(contradicts) given the rationale (supports below the "
        "threshold, contradicts from it)."
    )
    citations: list[Citation] = Field(
        description="The rationale: `quote == abstract[start:end]` of the paper, each "
        "numbered as the paper [n]."
    )


class ClaimCheck(BaseModel):
    """What `POST /v1/verify`, `citeqa verify --json` and the stream's `done` event return."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    verdict: str = Field(description="'2 papers support it, 1 paper contradicts it.', or why not.")
    label: Literal["supports", "contradicts", "mixed", "not enough information"]
    supports: int = 0
    contradicts: int = 0
    papers: list[PaperVerdict] = Field(
        default_factory=list,
        description="The papers that support or contradict the claim, in retrieval order.",
    )
    refused: bool = Field(
        False,
        description="True when no paper bears on the claim (outside the corpus, or nothing "
        "retrieved supports or contradicts it).",
    )
    sources: list[dict[str, Any]] = Field(
        default_factory=list, description="Every paper retrieved and judged."
    )
    gate: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

    @field_serializer("timings")
    def _round(self, timings: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in timings.items()}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def overall(n_sup: int, n_con: int) -> str:
    if n_sup and n_con:
        return "mixed"
    return SUPPORTS if n_sup else CONTRADICTS if n_con else NEI


def check_claim(
    claim: str,
    retriever: Retriever,
    encoder: SentenceEncoder,
    *,
    k: int | None = None,
    filters: Filters | None = None,
    models: ClaimModels | None = None,
) -> ClaimCheck:
    """`stream_claim` drained: the whole check."""
    result = None
    for event in stream_claim(claim, retriever, encoder, k=k, filters=filters, models=models):
        if event["type"] == "done":
            result = event["check"]
    assert result is not None
    return result


def stream_claim(
    claim: str,
    retriever: Retriever,
    encoder: SentenceEncoder,
    *,
    k: int | None = None,
    filters: Filters | None = None,
    models: ClaimModels | None = None,
) -> Iterator[dict[str, Any]]:
    """Events: `paper` {PaperVerdict} for each paper that bears on the claim, as it is
    judged, then `done` {ClaimCheck}. Retrieval runs before the first event."""
    t0 = time.perf_counter()
    r = retriever.retrieve(claim, k=k, filters=filters, mmr=False)
    timings = {"retrieve": time.perf_counter() - t0}
    sources = [s.summary() for s in r.sources]
    if not r.relevant or not r.sources:
        timings["total"] = time.perf_counter() - t0
        yield {
            "type": "done",
            "check": ClaimCheck(
                claim=claim,
                verdict=REFUSAL,
                label=NEI,
                refused=True,
                sources=sources,
                gate=r.gate,
                timings=timings,
            ),
        }
        return
    t1 = time.perf_counter()
    judged = [j for j in judge_papers(claim, r.sources, encoder, models) if j.label != NEI]
    papers = []
    for j, cites in zip(judged, citations_of(judged), strict=True):
        paper = PaperVerdict(
            paper_id=j.source.paper_id,
            title=j.source.title,
            url=j.source.url,
            label=j.label,
            probability=round(j.probability, 4),
            citations=cites,
        )
        papers.append(paper)
        yield {"type": "paper", "paper": paper}
    timings["judge"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    n_sup = sum(p.label == SUPPORTS for p in papers)
    n_con = sum(p.label == CONTRADICTS for p in papers)
    yield {
        "type": "done",
        "check": ClaimCheck(
            claim=claim,
            verdict=verdict(judged),
            label=overall(n_sup, n_con),  # type: ignore[arg-type]
            supports=n_sup,
            contradicts=n_con,
            papers=papers,
            refused=not papers,
            sources=sources,
            gate=r.gate,
            timings=timings,
        ),
    }

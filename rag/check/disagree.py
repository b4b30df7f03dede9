"""Do the papers an answer cites disagree on its point?

An answer cites the papers that answer its question, whether they agree or not.
Here the question is read as a claim (its point: a yes/no question or a
statement; a "what / how / which" question has no side to take) and each cited
paper is judged on it by the claim check's two fitted decisions
(`rag.claims.judge_papers`: which of its sentences bear on the point, then
whether they support or contradict it). When at least one cited paper surely
supports the point and another surely contradicts it, the answer closes with a
note naming both sides by their markers, and `Answer.disagreement` says the
same. "Surely" is the claim model's held-out bounds (`ClaimModels.sure`, right
at least 90% of the time on SciFact's training claims); without them, or with
any doubt, there is no note: a false "the papers disagree" is worse than none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.check.support import SentenceEncoder
from rag.claims import CONTRADICTS, NEI, SUPPORTS, ClaimModels, judge_papers, load_models
from rag.types import Citation, Disagreement, Side, Source

# Questions that ask for a description, not a verdict: nothing to support or contradict.
_OPEN = re.compile(
    r"^\W*(what|which|how|why|when|where|who|whom|whose|list|name|describe|explain|"
    r"compare|summari[sz]e|give|tell|show|find)\b",
    re.I,
)


def point_of(question: str) -> str | None:
    """The claim a question puts forward: a yes/no question or a statement, without
    its question mark; None for an open question."""
    q = question.strip()
    if not q or _OPEN.match(q):
        return None
    return q.rstrip(" ?!.") or None


def sides(
    question: str,
    citations: Sequence[Citation],
    sources: Sequence[Source],
    encoder: SentenceEncoder,
    models: ClaimModels | None = None,
) -> Disagreement | None:
    """The cited papers on each side of the question's point, when both sides have
    one that is sure; None otherwise."""
    models = models or load_models()
    point = point_of(question)
    if point is None or models.sure is None:
        return None
    below, above = models.sure["supports_below"], models.sure["contradicts_from"]
    if below <= 0.0 or above > 1.0:  # no probability is sure of a side: judge nothing
        return None
    marker = {c.paper_id: c.n for c in citations}
    cited = [s for s in sources if s.paper_id in marker]
    if len(cited) < 2:
        return None
    papers = []
    for j in judge_papers(point, cited, encoder, models):
        if j.label == NEI:
            continue
        if j.label == SUPPORTS and j.probability < below:
            side = SUPPORTS
        elif j.label == CONTRADICTS and j.probability >= above:
            side = CONTRADICTS
        else:
            continue
        papers.append(
            Side(
                n=marker[j.source.paper_id],
                paper_id=j.source.paper_id,
                label=side,  # type: ignore[arg-type]
                probability=round(j.probability, 4),
            )
        )
    sup = sorted(p.n for p in papers if p.label == SUPPORTS)
    con = sorted(p.n for p in papers if p.label == CONTRADICTS)
    if not sup or not con:
        return None
    return Disagreement(
        point=point, supports=sup, contradicts=con, papers=sorted(papers, key=lambda p: p.n)
    )


def _markers(ns: Sequence[int]) -> str:
    marks = [f"[{n}]" for n in ns]
    return marks[0] if len(marks) == 1 else ", ".join(marks[:-1]) + " and " + marks[-1]


def note(d: Disagreement) -> str:
    """The line that closes an answer whose cited papers disagree."""
    sup = f"{_markers(d.supports)} support{'s' if len(d.supports) == 1 else ''} it"
    con = f"{_markers(d.contradicts)} contradict{'s' if len(d.contradicts) == 1 else ''} it"
    return f"Note: the cited papers disagree on this: {sup}; {con}."

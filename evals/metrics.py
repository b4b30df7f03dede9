"""Evaluation metrics, as plain functions of plain data.

Retrieval metrics work on ranked paper ids against a set of gold ids (binary
relevance, paper level). Answer metrics work on the answer text, its
citations and the retrieved sources. A metric that does not apply to a
question (recall with no gold papers, precision with no citations) returns
None and is left out of the mean, never counted as 0 or 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

MARKER = re.compile(r"\[(\d+)\]")


def _dedupe(ranked: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ranked))


def recall_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float | None:
    gold = set(gold)
    if not gold:
        return None
    return len(set(_dedupe(ranked)[:k]) & gold) / len(gold)


def mrr_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float | None:
    gold = set(gold)
    if not gold:
        return None
    for i, pid in enumerate(_dedupe(ranked)[:k], 1):
        if pid in gold:
            return 1.0 / i
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float | None:
    gold = set(gold)
    if not gold:
        return None
    dcg = sum(1.0 / math.log2(i + 1) for i, pid in enumerate(_dedupe(ranked)[:k], 1) if pid in gold)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def markers(text: str) -> list[int]:
    """Every [n] in the text, in order, repeats included."""
    return [int(n) for n in MARKER.findall(text)]


def citation_validity(text: str, cited: dict[int, str], retrieved: Iterable[str]) -> float | None:
    """Share of markers in the text that resolve: the number has a citation entry
    and that entry's paper is among the retrieved sources. None without markers."""
    found = markers(text)
    if not found:
        return None
    retrieved = set(retrieved)
    ok = sum(1 for n in found if n in cited and cited[n] in retrieved)
    return ok / len(found)


def citation_precision(cited_papers: Iterable[str], gold: Iterable[str]) -> float | None:
    """Share of distinct cited papers that are gold. None when nothing is cited
    or the question has no gold papers."""
    cited, gold = set(cited_papers), set(gold)
    if not cited or not gold:
        return None
    return len(cited & gold) / len(cited)


def citation_recall(cited_papers: Iterable[str], gold: Iterable[str]) -> float | None:
    cited, gold = set(cited_papers), set(gold)
    if not gold:
        return None
    return len(cited & gold) / len(gold)


def gold_cited(cited_papers: Iterable[str], gold: Iterable[str]) -> float | None:
    """1.0 if the answer cites a gold paper, else 0 (also when it cites nothing).
    None for a question without gold papers."""
    gold = set(gold)
    if not gold:
        return None
    return 1.0 if set(cited_papers) & gold else 0.0


_WORD = re.compile(r"[^\W_]+")


def content_words(text: str) -> list[str]:
    """Lower-cased words of 3+ characters (letters and digits), markers left out."""
    return [w for w in _WORD.findall(MARKER.sub(" ", text).lower()) if len(w) >= 3]


def conclusion_in_answer(
    sentences: Iterable[str],
    conclusion: str | None,
    min_words: int = 5,
    min_share: float = 0.6,
) -> float | None:
    """1.0 if some sentence of the answer, of `min_words`+ words, has at least
    `min_share` of its words among the conclusion's (words: `content_words`, so
    lower-cased and 3+ characters; repeats count each time), else 0. None when
    the question has no gold conclusion."""
    if not conclusion or not conclusion.strip():
        return None
    vocabulary = set(content_words(conclusion))
    for sentence in sentences:
        ws = content_words(sentence)
        if len(ws) >= min_words and sum(w in vocabulary for w in ws) >= min_share * len(ws) - 1e-9:
            return 1.0
    return 0.0


def share(flags: Sequence[bool]) -> float | None:
    """The share of true flags (refused foreign questions, say); None when empty."""
    return sum(map(bool, flags)) / len(flags) if flags else None


def refusal_scores(
    refused: Sequence[bool], should_refuse: Sequence[bool]
) -> dict[str, float | None]:
    """Precision: refusals that were right; recall: uncovered questions refused."""
    tp = sum(1 for r, s in zip(refused, should_refuse, strict=True) if r and s)
    n_refused = sum(refused)
    n_should = sum(should_refuse)
    return {
        "refusal_precision": tp / n_refused if n_refused else None,
        "refusal_recall": tp / n_should if n_should else None,
        "wrong_refusals": sum(
            1 for r, s in zip(refused, should_refuse, strict=True) if r and not s
        ),
    }


def contains(text: str, expected: str | None) -> float | None:
    """1.0 if the expected string is in the answer (case and spacing ignored), else 0."""
    if not expected:
        return None
    norm = lambda s: re.sub(r"\s+", " ", s).strip().lower()  # noqa: E731
    return 1.0 if norm(expected) in norm(text) else 0.0


def words(text: str) -> int:
    """Words of the answer, citation markers and punctuation left out."""
    return sum(1 for w in MARKER.sub(" ", text).split() if re.search(r"\w", w))


def mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), p in [0, 100]; None when empty."""
    if not values:
        return None
    return float(np.percentile(values, p))


# The roles of an abstract's sentences (evals/data/roles-*.jsonl) that state what a
# paper found or built: what an answer should quote, rather than its motivation.
ROLES = ("background", "aim", "design", "contribution", "result", "conclusion", "other")
FINDING_ROLES = frozenset({"contribution", "result", "conclusion"})
# Words the extractive summary adds when it reports a sentence ("We" -> "The authors").
_REPORTING = frozenset({"the", "authors", "their", "them", "our"})
Roles = dict[str, list[tuple[str, str]]]
"""paper id -> its abstract's labelled sentences, (text, role), in order."""


def quoted_index(
    sentence: str, labelled: Sequence[tuple[str, str]], min_share: float = 0.8
) -> int | None:
    """Which labelled abstract sentence `sentence` quotes (its index): the one with
    the largest share of its words in `sentence` (at least `min_share`; the summary
    adds a paper's name and "the authors"), ties to the one with the larger share of
    the two sentences' words in common (Jaccard).
    None when it quotes none of them (a model's paraphrase, say)."""
    words = set(content_words(sentence)) - _REPORTING
    best, found = (0.0, 0.0), None
    for i, (text, _) in enumerate(labelled):
        own = set(content_words(text)) - _REPORTING
        if not own:
            continue
        score = (len(own & words) / len(own), len(own & words) / len(own | words))
        if score > best:
            best, found = score, i
    return found if best[0] >= min_share - 1e-9 else None


def quoted_role(
    sentence: str, labelled: Sequence[tuple[str, str]], min_share: float = 0.8
) -> str | None:
    """The role of the labelled abstract sentence that `sentence` quotes (None: none)."""
    i = quoted_index(sentence, labelled, min_share)
    return None if i is None else labelled[i][1]


# An abstract sentence whose subject is named in the sentence before it ("This
# decomposition ...", "It also ...", "These data ..."), not the paper itself ("This
# study ...") nor an "it" standing for what follows ("It is concluded that ...").
_BACK = re.compile(
    r"^(this|these|those|such|it|its|they|their|them)\b"
    r"(?!( [\w,-]+){0,3}? (paper|study|studies|work|article|trial|review|analysis|report)\b)",
    re.I,
)
_IT_FORWARD = re.compile(r"^it (\w+ ){0,3}(that|to|whether)\b", re.I)


def dangling(quotes: Sequence[tuple[str, int] | None], roles: Roles) -> float | None:
    """1.0 when the answer quotes a sentence that refers back to one it does not give
    just before it, else 0.0. `quotes`: the answer's quotes in order, each (paper id,
    index among that paper's labelled sentences), None where not found."""
    found = False
    for k, q in enumerate(quotes):
        if q is None:
            continue
        found = True
        pid, i = q
        text = roles[pid][i][0]
        if i > 0 and _BACK.match(text) and not _IT_FORWARD.match(text):
            if k == 0 or quotes[k - 1] != (pid, i - 1):
                return 1.0
    return 0.0 if found else None


def role_scores(roles: Sequence[str | None]) -> dict[str, float | None]:
    """One answer's quoted roles (in answer order; None: quote not found): the share
    of its found quotes that state findings, the share that is motivation, and
    whether its first found quote states a finding."""
    found = [r for r in roles if r is not None]
    if not found:
        return {"finding_share": None, "background_share": None, "opens_with_finding": None}
    return {
        "finding_share": sum(r in FINDING_ROLES for r in found) / len(found),
        "background_share": sum(r == "background" for r in found) / len(found),
        "opens_with_finding": 1.0 if found[0] in FINDING_ROLES else 0.0,
    }

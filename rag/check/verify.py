"""Citation verification, whatever the generator wrote.

For each sentence of the draft: markers that point at no source are removed;
each remaining marker is checked against the cited paper (embedding plus term
support of its best sentence); an unsupported marker moves to the source that
does support the sentence, or is dropped. An uncited sentence that one source
clearly supports gets that marker. Markers are then renumbered by first
appearance, and each citation carries the passage that supports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.check.support import SentenceEncoder, Support, best_support, claim_terms, lexical_support
from rag.text import place_markers, sentence_spans
from rag.types import Citation, Source

SUPPORTED = 0.55  # least support score for a citation to stand
ADD_CITATION = 0.65  # least support to add a marker to an uncited sentence
# A claim whose content words nearly all stand in one sentence of the cited paper
# (with its title) is supported without asking the embedder: an extractive
# summary's sentences, or a model quoting closely. Anything less takes the full check.
LEXICAL_SURE = 0.9
MIN_CLAIM_TERMS = 4  # shorter sentences ("In short:") are not claims

# [1], [1, 2], [1][2], [Source 1], [^1], 【1】
_MARKER = re.compile(r"\s*(?:\[\^?(?:source\s*)?(\d+(?:\s*[,;]\s*\d+)*)\]|【(\d+)】)", re.I)


@dataclass
class Verified:
    text: str
    citations: list[Citation]
    counts: dict[str, int] = field(default_factory=dict)


def _markers(sentence: str) -> list[int]:
    found: list[int] = []
    for m in _MARKER.finditer(sentence):
        group = m.group(1) or m.group(2)
        found.extend(int(x) for x in re.split(r"\s*[,;]\s*", group))
    return found


def strip_markers(sentence: str) -> str:
    return _MARKER.sub("", sentence).strip()


def verify(draft: str, sources: list[Source], encoder: SentenceEncoder) -> Verified:
    by_n = {s.n: s for s in sources}
    counts = {"kept": 0, "moved": 0, "dropped": 0, "added": 0, "invalid": 0}
    # paper n -> best support seen for any sentence citing it, for the quote
    quotes: dict[int, Support] = {}
    out_paragraphs = []
    for paragraph in draft.split("\n"):
        spans = sentence_spans(paragraph) if paragraph.strip() else ()
        cursor = 0
        rebuilt = []
        for a, b in spans:
            rebuilt.append(paragraph[cursor:a])
            cursor = b
            raw = paragraph[a:b]
            claim = strip_markers(raw)
            wanted = list(dict.fromkeys(_markers(raw)))
            valid = [n for n in wanted if n in by_n]
            counts["invalid"] += len(wanted) - len(valid)
            counts["dropped"] += len(wanted) - len(valid)
            final: list[int] = []
            wanted = claim_terms(claim)
            is_claim = len(wanted) >= MIN_CLAIM_TERMS
            sure = (
                {n: lexical_support(wanted, by_n[n]) for n in valid} if is_claim and valid else {}
            )
            if sure and all(sup.score >= LEXICAL_SURE for sup in sure.values()):
                final = list(valid)
                counts["kept"] += len(final)
                for n in final:
                    if n not in quotes or sure[n].score > quotes[n].score:
                        quotes[n] = sure[n]
            elif is_claim and sources:
                claim_vec = encoder.encode([claim])[0]
                support = {s.n: best_support(claim, s, encoder, claim_vec) for s in sources}
                best_n = max(support, key=lambda n: support[n].score)
                for n in valid:
                    if support[n].score >= SUPPORTED:
                        final.append(n)
                        counts["kept"] += 1
                    elif support[best_n].score >= SUPPORTED and best_n not in valid:
                        final.append(best_n)
                        counts["moved"] += 1
                    else:
                        counts["dropped"] += 1
                if not valid and support[best_n].score >= ADD_CITATION:
                    final.append(best_n)
                    counts["added"] += 1
                final = list(dict.fromkeys(final))
                for n in final:
                    if n not in quotes or support[n].score > quotes[n].score:
                        quotes[n] = support[n]
            else:
                counts["dropped"] += len(valid)  # a marker on a non-claim supports nothing
            rebuilt.append(place_markers(claim, final))
        rebuilt.append(paragraph[cursor:])
        out_paragraphs.append("".join(rebuilt))
    text = "\n".join(out_paragraphs).strip()
    return _renumber(text, by_n, quotes, counts)


def _renumber(
    text: str, by_n: dict[int, Source], quotes: dict[int, Support], counts: dict[str, int]
) -> Verified:
    order: dict[int, int] = {}
    for m in re.finditer(r"\[(\d+)\]", text):
        n = int(m.group(1))
        if n in by_n and n not in order:
            order[n] = len(order) + 1
    text = re.sub(r"\[(\d+)\]", lambda m: f"[{order.get(int(m.group(1)), 0)}]", text)
    citations = []
    for old, new in order.items():
        src = by_n[old]
        sent = quotes[old].sentence if old in quotes else None
        start, end = (sent.start, sent.end) if sent else (0, min(len(src.abstract), 300))
        citations.append(
            Citation(
                n=new,
                paper_id=src.paper_id,
                title=src.title,
                url=src.url,
                quote=src.abstract[start:end],
                start=start,
                end=end,
            )
        )
    return Verified(text, citations, counts)

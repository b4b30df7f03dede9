"""A Zotero-like reference library, made by the tests (never downloaded).

`library()` builds a few hundred entries the way a researcher's Zotero holds them:
the sample corpus's papers as arXiv preprints (arXiv DOIs and abs links), journal
articles with DOIs, PubMed records with a PMID in Extra, entries known only by
their citation key or Zotero item URI, and entries with no abstract, some with a
PDF attachment or a note. `to_csljson` and `to_ris` write it as Zotero's
"CSL JSON" and "RIS" exports do: these writers are the fixture's own, not
citeqa's exporter, so a round trip through citeqa is tested against Zotero's
shape and not against itself.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from ingest.loaders import load
from rag.settings import SAMPLE_CORPUS as SAMPLE

_WORDS = (
    "protein folding cortex neurons climate aerosol graphene lattice tumour immune "
    "response catalyst enzyme soil microbiome bayesian inference sparse coding "
    "spectroscopy galaxy cluster vaccine cohort randomized trial drought crop yield "
    "polymer membrane battery cathode seismic fault quantum dot photonic crystal"
).split()


@dataclass
class Entry:
    key: str  # Zotero's 8-character item key
    kind: str  # arxiv, doi, pmid, citekey, uri
    title: str
    abstract: str | None
    authors: list[tuple[str, str]]  # (family, given)
    year: int
    doi: str | None = None
    pmid: str | None = None
    arxiv: str | None = None
    citekey: str | None = None
    url: str | None = None
    journal: str | None = None
    keywords: list[str] = field(default_factory=list)
    note: str | None = None
    attachment: str | None = None

    @property
    def expected_id(self) -> str:
        """The id citeqa should give it (ingest/loaders/refs.py)."""
        if self.arxiv:
            return self.arxiv
        if self.doi:
            return self.doi
        if self.pmid:
            return f"pmid{self.pmid}"
        return self.citekey or self.key


def _key(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNPQRSTUVWXYZ23456789") for _ in range(8))


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


def library(n: int = 300, seed: int = 7) -> list[Entry]:
    rng = random.Random(seed)
    entries: list[Entry] = []
    sample = [p for _, p in load(str(SAMPLE)) if hasattr(p, "paper_id")]
    for i, paper in enumerate(sample):
        arxiv = f"2{i % 10}{(i * 7) % 10}{(i * 3) % 10}.{10000 + i}"  # unique, arXiv-shaped
        family = paper.authors[0].split()[-1] if paper.authors else f"Author{i}"
        entries.append(
            Entry(
                key=_key(rng),
                kind="arxiv",
                title=paper.title,
                abstract=paper.abstract,
                authors=[(family, "A.")],
                year=2023,
                doi=f"10.48550/arXiv.{arxiv}",
                arxiv=arxiv,
                url=f"http://arxiv.org/abs/{arxiv}",
                journal="arXiv",
                keywords=["Computer Science - Machine Learning"],
                note=f"arXiv:{arxiv} [cs]",
            )
        )
    kinds = ["doi", "doi", "pmid", "citekey", "uri"]
    i = 0
    while len(entries) < n:
        kind = kinds[i % len(kinds)]
        title = f"{_sentence(rng)[:-1]} ({i})"
        abstract = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
        entry = Entry(
            key=_key(rng),
            kind=kind,
            title=title,
            abstract=abstract,
            authors=[(f"Family{rng.randint(1, 999)}", "B."), (f"Other{i}", "C. D.")],
            year=rng.randint(1995, 2025),
            journal=rng.choice(["Nature", "Cell", "PLoS ONE", "J. Chem. Phys."]),
            keywords=rng.sample(_WORDS, 2),
        )
        if kind == "doi":
            entry.doi = f"10.{1000 + i % 50}/j.x.{2000 + i}"
            entry.url = f"https://doi.org/{entry.doi}"
        elif kind == "pmid":
            entry.pmid = str(10_000_000 + i)
            entry.note = f"PMID: {entry.pmid}"
        elif kind == "citekey":
            entry.citekey = f"family{i}{entry.year}"
        if i % 12 == 5:  # no abstract: the full text is in a PDF, a note, or nowhere
            entry.abstract = None
            if i % 36 == 5:
                entry.attachment = f"files/{i}/{entry.key}.pdf"
            elif i % 36 == 17:
                entry.note = (entry.note + "; " if entry.note else "") + "Read: see my summary"
        entries.append(entry)
        i += 1
    return entries


def to_csljson(entries: list[Entry]) -> str:
    items = []
    for e in entries:
        item: dict = {
            "id": e.citekey or f"http://zotero.org/users/local/kdW3pQ/items/{e.key}",
            "type": "article" if e.arxiv else "article-journal",
            "title": e.title,
            "container-title": e.journal,
            "author": [{"family": f, "given": g} for f, g in e.authors],
            "issued": {"date-parts": [[str(e.year), 6, 1]]},
        }
        if e.citekey:
            item["citation-key"] = e.citekey
        if e.abstract:
            item["abstract"] = e.abstract
        if e.doi:
            item["DOI"] = e.doi
        if e.url:
            item["URL"] = e.url
        if e.arxiv:
            item["number"] = f"arXiv:{e.arxiv}"
        if e.note:
            item["note"] = e.note
        if e.keywords:
            item["keyword"] = ", ".join(e.keywords)
        items.append(item)
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"


def to_ris(entries: list[Entry]) -> str:
    out = []
    for e in entries:
        lines = [f"TY  - {'PREP' if e.arxiv else 'JOUR'}", f"TI  - {e.title}"]
        lines += [f"AU  - {f}, {g}" for f, g in e.authors]
        if e.journal:
            lines.append(f"T2  - {e.journal}")
        if e.abstract:
            lines.append(f"AB  - {e.abstract}")
        lines += [f"DA  - {e.year}/06/01/", f"PY  - {e.year}"]
        if e.doi:
            lines.append(f"DO  - {e.doi}")
        if e.citekey:
            lines.append(f"ID  - {e.citekey}")
        elif not (e.doi or e.pmid or e.arxiv):
            lines.append(f"ID  - {e.key}")
        if e.pmid:
            lines.append(f"AN  - {e.pmid}")
        if e.url:
            lines.append(f"UR  - {e.url}")
        lines += [f"KW  - {k}" for k in e.keywords]
        if e.attachment:
            lines.append(f"L1  - {e.attachment}")
        if e.note:
            lines.append(f"N1  - {e.note}")
        lines.append("ER  - ")
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)

"""Papers as references a reference manager imports: BibTeX, RIS, CSL-JSON.

One module for every way out (`GET /v1/papers/{id}?format=`, `citeqa ask
--cite-format`, the page's cite menu, the MCP server): `export(records, fmt)`.
A record is a stored paper's metadata (`record_of(meta)`). Each identifier the
paper came with (DOI, PMID, arXiv id, in `extra`) is written where the format
keeps it, and the paper's id where the format keeps an entry's own id (BibTeX
key, RIS `ID`, CSL-JSON `id`), so importing the export into citeqa again gives the
same ids (ingest/loaders/refs.py reads them in that order).

The writers are the libraries citeqa reads with: bibtexparser (values escaped by
`latex_text` so the loader's LaTeX decoding reads them back unchanged) and rispy;
CSL-JSON is plain JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_BIBTEX_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_:./+\-]")
_CSL_TYPES = {"article", "article-journal", "paper-conference", "book", "chapter", "report"}
_RIS_TYPES = {"JOUR", "PREP", "CONF", "CPAPER", "BOOK", "CHAP", "RPRT", "THES", "GEN", "ELEC"}
_BIBTEX_TYPES = {"article", "inproceedings", "misc", "book", "incollection", "techreport"}


class UnknownCiteFormat(ValueError):
    """A format name `export` does not know."""


@dataclass(frozen=True)
class CiteRecord:
    paper_id: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str | None = None
    keywords: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def arxiv(self) -> str | None:
        if self.extra.get("arxiv"):
            return self.extra["arxiv"]
        return self.paper_id if _looks_arxiv(self.paper_id) else None


_ARXIV = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})$", re.IGNORECASE)


def _looks_arxiv(value: str) -> bool:
    return bool(_ARXIV.match(value))


def record_of(meta: Mapping[str, Any]) -> CiteRecord:
    """A stored paper's metadata (`Store.paper`) as a record to export."""
    extra = meta.get("extra")
    if isinstance(extra, str):
        extra = json.loads(extra) if extra else {}
    return CiteRecord(
        paper_id=str(meta["paper_id"]),
        title=str(meta.get("title", "")),
        abstract=str(meta.get("abstract") or ""),
        authors=tuple(str(a) for a in meta.get("authors") or ()),
        year=meta.get("year") if isinstance(meta.get("year"), int) else None,
        url=meta.get("url") or None,
        keywords=tuple(str(c) for c in meta.get("categories") or ()),
        extra={str(k): str(v) for k, v in (extra or {}).items()},
    )


# Where each format keeps what a paper came with beyond its id (`CiteRecord.extra`).
_KEPT = ("journal", "doi", "pmid")
_CSL_KEYS = {"journal": "container-title", "doi": "DOI", "pmid": "PMID"}
_RIS_KEYS = {"journal": "secondary_title", "doi": "doi", "pmid": "accession_number"}
_BIBTEX_KEYS = {"journal": "journal", "doi": "doi", "pmid": "pmid"}


def _kept(r: CiteRecord, keys: Mapping[str, str]) -> dict[str, str]:
    """The record's journal, DOI and PMID that it has, under the format's names."""
    return {keys[k]: r.extra[k] for k in _KEPT if r.extra.get(k)}


def _family_given(name: str) -> dict[str, str]:
    if "," in name:
        family, given = (p.strip() for p in name.split(",", 1))
        return {"family": family, "given": given} if given else {"family": family}
    parts = name.split()
    if len(parts) == 1:
        return {"literal": name}
    return {"family": parts[-1], "given": " ".join(parts[:-1])}


def to_csljson(records: Sequence[CiteRecord]) -> str:
    items = []
    for r in records:
        kind = r.extra.get("entry_type", "")
        item: dict[str, Any] = {
            "id": r.paper_id,
            "type": kind if kind in _CSL_TYPES else ("article" if r.arxiv else "article-journal"),
            "title": r.title,
        }
        if r.authors:
            item["author"] = [_family_given(a) for a in r.authors]
        if r.year is not None:
            item["issued"] = {"date-parts": [[r.year]]}
        if r.abstract:
            item["abstract"] = r.abstract
        item.update(_kept(r, _CSL_KEYS))
        if r.arxiv:
            item["number"] = f"arXiv:{r.arxiv}"
        if r.url:
            item["URL"] = r.url
        if r.keywords:
            item["keyword"] = ", ".join(r.keywords)
        items.append(item)
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"


def to_ris(records: Sequence[CiteRecord]) -> str:
    import rispy

    refs = []
    for r in records:
        kind = r.extra.get("entry_type", "")
        ref: dict[str, Any] = {
            "type_of_reference": kind if kind in _RIS_TYPES else ("PREP" if r.arxiv else "JOUR"),
            "title": r.title,
            "id": r.paper_id,
        }
        if r.authors:
            ref["authors"] = list(r.authors)
        if r.year is not None:
            ref["year"] = str(r.year)
        if r.abstract:
            ref["abstract"] = r.abstract
        ref.update(_kept(r, _RIS_KEYS))
        urls = [u for u in (r.url,) if u]
        if r.arxiv and f"https://arxiv.org/abs/{r.arxiv}" not in urls:
            urls.append(f"https://arxiv.org/abs/{r.arxiv}")
        if urls:
            ref["urls"] = urls
        if r.keywords:
            ref["keywords"] = list(r.keywords)
        refs.append(ref)
    return rispy.dumps(refs, implementation=_ris_writer(), skip_unknown_tags=True)


def _ris_writer() -> type:
    import rispy

    class Writer(rispy.RisWriter):
        def set_header(self, count: int) -> str:
            return ""  # no "1." counter line above each entry: Zotero writes none

    return Writer


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "_": r"\_",
    "$": r"\$",
    "~": r"\textasciitilde{}",
}
# Left bare: '^' outside math (its decoder reads \textasciicircum as U+02C6).
# Pairs LaTeX reads as one character ("--" an en dash, "``" a quote): kept apart by {}.
_LIGATURE = re.compile(r"(?<=-)(?=-)|(?<=`)(?=`)|(?<=')(?=')|(?<=[?!])(?=`)")


def latex_text(text: str) -> str:
    """`text` as a BibTeX value that the loader's LaTeX decoding (bibtexparser's
    LatexDecodingMiddleware) reads back as `text`. Unicode stays Unicode (BibLaTeX and
    every reference manager read UTF-8); only what LaTeX would read as markup is
    escaped. bibtexparser's LatexEncodingMiddleware does not round-trip: it writes
    '"' as '' and keeps "--", which its decoder reads as ” and –."""
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return _LIGATURE.sub("{}", escaped)


def bibtex_key(paper_id: str) -> str:
    """The paper's id as a BibTeX key: characters a key cannot hold become '_'."""
    return _BIBTEX_KEY_UNSAFE.sub("_", paper_id)


def to_bibtex(records: Sequence[CiteRecord]) -> str:
    import bibtexparser
    from bibtexparser.model import Entry, Field

    library = bibtexparser.Library()
    for r in records:
        kind = r.extra.get("entry_type", "").lower()
        fields = [Field("title", latex_text(r.title))]
        if r.authors:
            fields.append(Field("author", " and ".join(latex_text(a) for a in r.authors)))
        if r.year is not None:
            fields.append(Field("year", str(r.year)))
        fields += [
            Field(k, latex_text(v) if k == "journal" else v)
            for k, v in _kept(r, _BIBTEX_KEYS).items()
        ]
        if r.arxiv:
            fields += [Field("eprint", r.arxiv), Field("archiveprefix", "arXiv")]
        if r.url:
            fields.append(Field("url", r.url))
        if r.keywords:
            fields.append(Field("keywords", latex_text(", ".join(r.keywords))))
        if r.abstract:
            fields.append(Field("abstract", latex_text(r.abstract)))
        entry_type = kind if kind in _BIBTEX_TYPES else ("misc" if r.arxiv else "article")
        library.add(Entry(entry_type, bibtex_key(r.paper_id), fields))
    return bibtexparser.write_string(library)


@dataclass(frozen=True)
class CiteFormat:
    name: str
    write: Callable[[Sequence[CiteRecord]], str]
    media_type: str
    suffix: str


FORMATS: dict[str, CiteFormat] = {
    f.name: f
    for f in (
        CiteFormat("bibtex", to_bibtex, "application/x-bibtex", ".bib"),
        CiteFormat("ris", to_ris, "application/x-research-info-systems", ".ris"),
        CiteFormat("csljson", to_csljson, "application/vnd.citationstyles.csl+json", ".json"),
    )
}


def cite_format(name: str) -> CiteFormat:
    if name not in FORMATS:
        raise UnknownCiteFormat(f"unknown citation format '{name}' ({', '.join(FORMATS)})")
    return FORMATS[name]


def export(records: Sequence[CiteRecord], fmt: str) -> str:
    """`records` as one file in `fmt` (bibtex, ris or csljson)."""
    return cite_format(fmt).write(records)

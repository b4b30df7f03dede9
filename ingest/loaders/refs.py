"""What the reference-manager formats (RIS, CSL-JSON) share: the identifiers a
library keeps (DOI, PMID, arXiv id) and how an entry becomes a paper.

A paper's id is the identifier its owner already uses: the arXiv id, else the
DOI, else the PMID (as `pmid<digits>`, the form the PubMedQA corpus uses), else
the entry's own id (a RIS `ID`, a CSL-JSON `id` or citation key), else a slug of
the title. Each identifier is also kept in `extra` (doi, pmid, arxiv), so an
export writes it back (rag/cite.py) and a re-import finds the same id.
"""

from __future__ import annotations

import re

from ingest.loaders.common import (
    RecordError,
    _kind,
    make_paper,
    normalise_arxiv_id,
)
from rag.types import Paper

_DOI = re.compile(r"10\.\d{4,9}/\S+")
_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)
# arXiv's own DOIs (10.48550/arXiv.2301.01234) name an arXiv paper.
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(.+)$", re.IGNORECASE)
_PMID = re.compile(r"^(?:pmid:?\s*)?(\d{1,9})$", re.IGNORECASE)
_PMID_IN_TEXT = re.compile(r"\bPMID:?\s*(\d{1,9})\b", re.IGNORECASE)


def text_or_none(name: str, value: object) -> str | None:
    """A field that must be text when present; a number, list or object is a bad
    entry (its printed form is never stored)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    raise RecordError(f"{name} is {_kind(value)}, not text")


def clean_doi(value: str | None) -> str | None:
    """A DOI without its resolver prefix, or None when `value` holds none."""
    if not value:
        return None
    text = _DOI_PREFIX.sub("", value.strip())
    match = _DOI.match(text)
    return match.group(0).rstrip(".") if match else None


def clean_pmid(value: str | None) -> str | None:
    if not value:
        return None
    match = _PMID.match(value.strip())
    return match.group(1) if match else None


def pmid_in(texts: list[str]) -> str | None:
    """A PMID written into a free-text field ('PMID: 12345', as Zotero's Extra holds it)."""
    for text in texts:
        match = _PMID_IN_TEXT.search(text)
        if match:
            return match.group(1)
    return None


def arxiv_in(candidates: list[str | None]) -> str | None:
    for value in candidates:
        if not value:
            continue
        match = _ARXIV_DOI.match(value.strip())
        found = normalise_arxiv_id(match.group(1) if match else value)
        if found:
            return found
    return None


# A note that only names the entry ("PMID: 123", "arXiv:2106.09685 [cs]", as Zotero's
# Extra field and its RIS notes hold them) is not text to read.
_ID_NOTE = re.compile(
    r"^\s*(?:pmid|pmcid|arxiv|doi|isbn|issn)\s*:?\s*\S+(?:\s*\[[^\]]*\])?\s*$", re.IGNORECASE
)


def has_note(notes: list[str]) -> bool:
    """True when a note holds more than identifiers."""
    parts = (p for n in notes for p in re.split(r"[\n;]", n))
    return any(p.strip() and not _ID_NOTE.match(p) for p in parts)


def no_abstract_reason(*, notes: bool, files: list[str]) -> str:
    """Why an entry is skipped when it has no abstract, saying where its text may be."""
    reason = "no abstract"
    where = []
    if files:
        where.append(f"a file attachment ({files[0]}{', ...' if len(files) > 1 else ''})")
    if notes:
        where.append("a note")
    if where:
        reason += f"; it has {' and '.join(where)}, which citeqa does not read: add the abstract"
    return reason


def reference_paper(
    *,
    title: object,
    abstract: object,
    entry_id: str | None,
    doi: str | None,
    pmid: str | None,
    arxiv: str | None,
    authors: tuple[str, ...],
    year: object,
    url: str | None,
    keywords: tuple[str, ...],
    extra: dict[str, str],
    notes: bool = False,
    files: list[str] | None = None,
) -> Paper:
    """One entry as a paper, or RecordError with the reason."""
    if isinstance(abstract, str) and not abstract.strip() or abstract is None:
        if title is None or isinstance(title, str):
            raise RecordError(no_abstract_reason(notes=notes, files=files or []))
    kept = dict(extra)
    for key, value in (("doi", doi), ("pmid", pmid), ("arxiv", arxiv)):
        if value:
            kept[key] = value
    if entry_id:
        kept["entry_id"] = entry_id
    given = doi or (f"pmid{pmid}" if pmid else None) or entry_id
    return make_paper(
        title=title,
        abstract=abstract,
        paper_id=given,
        arxiv_id=arxiv,
        authors=authors,
        year=year,
        url=url,
        categories=keywords,
        extra=kept,
    )

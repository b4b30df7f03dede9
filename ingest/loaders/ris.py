"""RIS, as Zotero, Mendeley, EndNote and PubMed export it (tags read by rispy).

The file is cut into entries here, `TY  -` to `ER  -`, so each entry keeps the line
it starts on and an entry that is never closed (a truncated file) is reported
rather than dropped in silence, as rispy's own reader does. Each entry's tags are
then read by rispy. Ids: see ingest/loaders/refs.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import rispy

from ingest.loaders.common import RecordError, Skipped, open_text
from ingest.loaders.refs import (
    arxiv_in,
    clean_doi,
    clean_pmid,
    has_note,
    pmid_in,
    reference_paper,
)
from rag.types import Paper

# rispy's writer puts a counter line ("12.") above each entry.
_COUNTER = re.compile(r"^\s*\d+\.\s*$")
_STRAY = "text outside an entry (no 'TY  -' before it)"


def _tag(line: str) -> str | None:
    # rispy's own test for a tag line: two upper-case characters, two spaces, a dash.
    if line[2:5] == "  -" and line[:2].isupper() and line[:1].isalpha():
        return line[:2]
    return None


def _list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in (str(x).strip() for x in value) if v]
    return [str(value).strip()] if str(value).strip() else []


def _first(record: dict, *keys: str) -> str | None:
    for key in keys:
        values = _list(record.get(key))
        if values:
            return " ".join(values) if key in ("title", "primary_title") else values[0]
    return None


def entry_to_paper(record: dict) -> Paper:
    urls = _list(record.get("urls"))
    notes = _list(record.get("notes")) + _list(record.get("research_notes"))
    files = _list(record.get("file_attachments1")) + _list(record.get("file_attachments2"))
    doi_field = _first(record, "doi")
    accession = _first(record, "accession_number")
    arxiv = arxiv_in([doi_field, *urls, *notes, _first(record, "secondary_title", "journal_name")])
    extra = {
        "entry_type": _first(record, "type_of_reference") or "",
        "journal": _first(record, "secondary_title", "journal_name", "alternate_title3") or "",
    }
    return reference_paper(
        title=_first(record, "title", "primary_title"),
        abstract=_first(record, "abstract", "notes_abstract"),
        entry_id=_first(record, "id"),
        doi=clean_doi(doi_field),
        pmid=clean_pmid(accession) or pmid_in(notes),
        arxiv=arxiv,
        authors=tuple(_list(record.get("authors")) or _list(record.get("first_authors"))),
        year=_first(record, "year", "publication_year", "date"),
        url=next((u for u in urls if u.startswith(("http://", "https://"))), None),
        keywords=tuple(_list(record.get("keywords"))),
        extra=extra,
        notes=has_note(notes),
        files=files,
    )


def _parse(path: str, start: int, lines: list[str]) -> Paper | Skipped:
    try:
        records = rispy.loads("\n".join(lines))
    except Exception as exc:  # rispy raises plain errors on odd input; one entry pays
        return Skipped(path, start, f"malformed RIS entry ({exc})")
    if len(records) != 1:
        return Skipped(path, start, "malformed RIS entry")
    try:
        return entry_to_paper(records[0])
    except RecordError as exc:
        title = _first(records[0], "title", "primary_title")
        name = f"entry '{title[:60]}'" if title else "entry"
        return Skipped(path, start, f"{name}: {exc}")


def load_ris(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    start = 0
    lines: list[str] | None = None
    stray: int | None = None  # first line of a run of text outside any entry
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            tag = _tag(line)
            if tag == "TY":
                if stray is not None:
                    yield stray, Skipped(path, stray, _STRAY)
                    stray = None
                if lines is not None:
                    yield start, Skipped(
                        path, start, "entry not closed: no 'ER  -' line before the next 'TY  -'"
                    )
                start, lines = number, [line]
            elif tag == "ER":
                if lines is None:
                    yield number, Skipped(path, number, "'ER  -' line with no entry open")
                    continue
                lines.append(line)
                yield start, _parse(path, start, lines)
                lines = None
            elif lines is not None:
                lines.append(line)
            elif line.strip() and stray is None and not _COUNTER.match(line):
                stray = number
    if stray is not None:
        yield stray, Skipped(path, stray, _STRAY)
    if lines is not None:
        yield start, Skipped(
            path, start, "entry not closed: the file ends before its 'ER  -' line (truncated?)"
        )

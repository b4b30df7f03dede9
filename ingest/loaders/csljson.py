"""CSL-JSON: a list of entries, as Zotero ("CSL JSON") and Better BibTeX export it.

The list is read one entry at a time (`JSONDecoder.raw_decode`), so each entry
keeps its line and index, a bad entry costs only itself, and a file cut off
part-way keeps the entries before the cut. Ids: see ingest/loaders/refs.py.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator

from ingest.loaders.common import RecordError, Skipped, _kind, open_text
from ingest.loaders.refs import (
    arxiv_in,
    clean_doi,
    clean_pmid,
    has_note,
    pmid_in,
    reference_paper,
    text_or_none,
)
from rag.types import Paper

_WS = " \t\r\n"


def _what(value: object) -> str:
    return "text" if isinstance(value, str) else _kind(value)


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(f"author is {_what(value)}, not a list of names")
    names = []
    for person in value:
        if not isinstance(person, dict):
            raise RecordError(f"an author is {_what(person)}, not a name object")
        literal = text_or_none("author literal", person.get("literal"))
        given = text_or_none("author given", person.get("given"))
        family = text_or_none("author family", person.get("family"))
        name = literal or (f"{family}, {given}" if family and given else family or given)
        if name:
            names.append(name)
    return tuple(names)


def _year(value: object) -> object:
    """`issued` is {"date-parts": [[2021, 6, 17]]}, or {"raw"/"literal": "..."}."""
    if not isinstance(value, dict):
        return value if isinstance(value, str) else None
    parts = value.get("date-parts")
    if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
        return str(parts[0][0])
    raw = value.get("raw") or value.get("literal")
    return raw if isinstance(raw, str) else None


def _entry_id(value: object) -> str | None:
    """Its own id; a Zotero item URI (http://zotero.org/users/1/items/ABCD2345) gives
    its item key, since a URI's empty parts cannot make a paper id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = text_or_none("id", value)
    if text and "://" in text:
        return next((p for p in reversed(text.split("/")) if p), None)
    return text


def _keywords(value: object) -> tuple[str, ...]:
    text = text_or_none("keyword", value)
    return tuple(k.strip() for k in text.split(",") if k.strip()) if text else ()


def entry_to_paper(entry: dict) -> Paper:
    doi_field = text_or_none("DOI", entry.get("DOI"))
    url = text_or_none("URL", entry.get("URL"))
    note = text_or_none("note", entry.get("note"))
    number = text_or_none("number", entry.get("number"))
    pmid_field = entry.get("PMID")
    if isinstance(pmid_field, int) and not isinstance(pmid_field, bool):
        pmid_field = str(pmid_field)
    pmid = clean_pmid(text_or_none("PMID", pmid_field)) or pmid_in([note or ""])
    key = text_or_none("citation-key", entry.get("citation-key") or entry.get("citation_key"))
    container = text_or_none("container-title", entry.get("container-title"))
    entry_type = text_or_none("type", entry.get("type"))
    return reference_paper(
        title=entry.get("title"),
        abstract=entry.get("abstract"),
        entry_id=key or _entry_id(entry.get("id")),
        doi=clean_doi(doi_field),
        pmid=pmid,
        arxiv=arxiv_in([doi_field, url, number, note]),
        authors=_names(entry.get("author")),
        year=_year(entry.get("issued")),
        url=url,
        keywords=_keywords(entry.get("keyword")),
        extra={"entry_type": entry_type or "", "journal": container or ""},
        notes=has_note([note or ""]),
    )


class _Lines:
    """Line number (1-based) of a character offset."""

    def __init__(self, text: str) -> None:
        self.starts = [m.start() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> int:
        return bisect.bisect_left(self.starts, offset) + 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def load_csljson(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    with open_text(path) as fh:
        text = fh.read()
    line_of = _Lines(text)
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos == len(text):
        yield 1, Skipped(path, 1, "empty file: CSL-JSON is a list of entries")
        return
    if text[pos] != "[":
        try:
            value, _ = decoder.raw_decode(text, pos)
            what = _what(value)
        except (json.JSONDecodeError, RecursionError):
            what = "not JSON"
        line = line_of(pos)
        yield line, Skipped(
            path,
            line,
            f"CSL-JSON must be a list of entries ([{{...}}, ...]); this file holds {what}",
        )
        return
    pos = _skip_ws(text, pos + 1)
    index = 0
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line = line_of(pos)
        try:
            entry, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = getattr(exc, "pos", pos)
            line = line_of(where)
            msg = getattr(exc, "msg", "nesting too deep")
            yield line, Skipped(
                path, line, f"entry [{index}]: not valid JSON ({msg}); entries after it not read"
            )
            return
        yield line, _entry(path, line, index, entry)
        index += 1
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        line = line_of(pos)
        reason = (
            "the file ends before the list's ']'" if pos >= len(text) else "expected ',' or ']'"
        )
        yield line, Skipped(path, line, f"after entry [{index - 1}]: {reason} (truncated?)")
        return


def _entry(path: str, line: int, index: int, entry: object) -> Paper | Skipped:
    if not isinstance(entry, dict):
        return Skipped(path, line, f"entry [{index}] is {_what(entry)}, not an object")
    label = f"entry [{index}]"
    if isinstance(entry.get("id"), str | int):
        label += f" '{str(entry['id'])[:80]}'"
    try:
        return entry_to_paper(entry)
    except RecordError as exc:
        return Skipped(path, line, f"{label}: {exc}")

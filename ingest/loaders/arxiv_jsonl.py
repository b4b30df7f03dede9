"""JSON Lines in the shape of the arXiv metadata snapshot, streamed line by line.

Fields used: id (or paper_id), title, abstract, authors (or authors_parsed),
categories, update_date (or year), doi, url. Anything else stays out of the store.
The id, title and abstract must be strings (or absent): a record holding a number,
a list or an object there is reported, never stored as its printed form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from ingest.loaders.common import RecordError, Skipped, make_paper, open_text, split_names
from rag.types import Paper


def _authors(record: dict) -> tuple[str, ...]:
    parsed = record.get("authors_parsed")
    if isinstance(parsed, list) and parsed:
        names = []
        for item in parsed:
            if isinstance(item, list) and item:
                last, first = str(item[0]), str(item[1]) if len(item) > 1 else ""
                names.append(f"{first} {last}".strip())
        if names:
            return tuple(names)
    authors = record.get("authors")
    if isinstance(authors, list):
        return split_names(authors)
    if isinstance(authors, str):
        return tuple(n for part in split_names(authors, ",") for n in split_names(part, " and "))
    return ()


def record_to_paper(record: object) -> Paper:
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    categories = record.get("categories") or ()
    if isinstance(categories, str):
        categories = tuple(categories.split())
    extra = {}
    if record.get("doi"):
        extra["doi"] = str(record["doi"])
    return make_paper(
        title=record.get("title"),
        abstract=record.get("abstract"),
        paper_id=record["id"] if record.get("id") is not None else record.get("paper_id"),
        authors=_authors(record),
        year=record.get("year") or record.get("update_date"),
        url=record.get("url") if isinstance(record.get("url"), str) else None,
        categories=tuple(str(c) for c in categories)
        if isinstance(categories, list | tuple)
        else (),
        extra=extra,
    )


JSON_WHITESPACE = " \t\r\n"


def parse_jsonl_line(path: str, number: int, line: str) -> Paper | Skipped | None:
    """One JSON Lines record: a paper, a skipped record, or None for a blank line.
    The one per-line parser, shared by the whole-file loader and the byte-range reader
    (ingest/loaders/ranges.py) that Ray's ingestion reads large files with."""
    # Blank means JSON whitespace only: a line holding a control character
    # that str.strip() would also remove (\x1c, \x85) is a broken record.
    if not line.strip(JSON_WHITESPACE):
        return None
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Skipped(path, number, f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})")
    try:
        return record_to_paper(record)
    except RecordError as exc:
        return Skipped(path, number, str(exc))


def load_jsonl(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            item = parse_jsonl_line(path, number, line)
            if item is not None:
                yield number, item

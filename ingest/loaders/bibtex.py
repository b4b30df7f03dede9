"""BibTeX entries that carry an `abstract` field (LaTeX decoded by bibtexparser).

A paper's id is its arXiv id when the entry has one (eprint, or an arXiv url/doi),
else the entry's key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import bibtexparser
from bibtexparser.middlewares import LatexDecodingMiddleware

from ingest.loaders.common import RecordError, Skipped, make_paper, open_text, split_names
from rag.types import Paper

_USED = {
    "title",
    "abstract",
    "author",
    "year",
    "date",
    "url",
    "eprint",
    "archiveprefix",
    "doi",
    "keywords",
    "primaryclass",
}


def _arxiv_id(fields: dict[str, str]) -> str | None:
    prefix = fields.get("archiveprefix", "").lower()
    if fields.get("eprint") and (prefix in ("", "arxiv")):
        return fields["eprint"]
    for key in ("url", "doi", "journal"):
        if "arxiv" in fields.get(key, "").lower():
            return fields[key]
    return None


def load_bibtex(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    with open_text(path) as fh:
        text = fh.read()
    # bibtexparser logs each failed block itself; we report them as skipped records instead.
    logger = logging.getLogger("bibtexparser")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    finally:
        logger.setLevel(level)
    items: list[tuple[int, Paper | Skipped]] = []
    for block in library.failed_blocks:
        line = (block.start_line or 0) + 1
        items.append((line, Skipped(path, line, "malformed BibTeX entry")))
    for entry in library.entries:
        line = entry.start_line + 1
        # bibtexparser gives strings; anything else is left out here and, for the
        # title and abstract, reported by make_paper rather than printed into them.
        raw = {f.key.lower(): f.value for f in entry.fields}
        fields = {
            k: v.replace("{", "").replace("}", "") for k, v in raw.items() if isinstance(v, str)
        }
        try:
            paper = make_paper(
                title=fields.get("title", raw.get("title")),
                abstract=fields.get("abstract", raw.get("abstract")),
                paper_id=entry.key,
                arxiv_id=_arxiv_id(fields),
                authors=split_names(fields.get("author"), " and "),
                year=fields.get("year") or fields.get("date"),
                url=fields.get("url"),
                categories=split_names(fields.get("primaryclass") or fields.get("keywords"), ","),
                extra={"bibtex_key": entry.key, "entry_type": entry.entry_type}
                | ({"doi": fields["doi"]} if fields.get("doi") else {})
                | {k: v for k, v in fields.items() if k not in _USED and len(v) < 500},
            )
        except RecordError as exc:
            items.append((line, Skipped(path, line, f"entry '{entry.key}': {exc}")))
            continue
        items.append((line, paper))
    yield from sorted(items, key=lambda pair: pair[0])

"""Loaders turn one source file into papers, and records they cannot use into `Skipped`.

A loader never raises for a bad record: it yields `Skipped(file, line, reason)`
and goes on, so one malformed record cannot cost the rest of the batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

from ingest.loaders.arxiv_jsonl import load_jsonl
from ingest.loaders.bibtex import load_bibtex
from ingest.loaders.common import RecordError, Skipped
from ingest.loaders.csljson import load_csljson
from ingest.loaders.csv import load_csv
from ingest.loaders.listing import load_listing
from ingest.loaders.ris import load_ris
from rag.types import Paper

FORMATS: dict[str, Callable[[str], Iterator[tuple[int, Paper | Skipped]]]] = {
    "listing": load_listing,
    "jsonl": load_jsonl,
    "csv": load_csv,
    "bibtex": load_bibtex,
    "ris": load_ris,
    "csljson": load_csljson,
}
_BY_SUFFIX = {
    ".txt": "listing",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".bib": "bibtex",
    ".bibtex": "bibtex",
    ".ris": "ris",
    ".csljson": "csljson",
}
_WHOLE_JSON_SNIFF = 64 << 20  # most bytes read to tell one pretty-printed object from JSONL


class SourceError(Exception):
    """A whole source cannot be read (missing, unreadable, unknown format)."""


def _sniff_json(path: str) -> str:
    """A .json file is CSL-JSON (a list, '[') or JSON Lines (objects, '{'). One JSON
    object over several lines is no JSON Lines: read as CSL-JSON it is reported as one
    clear error ('must be a list'), not as a broken record per line. JSON Lines when
    the file cannot be read yet (an upload's name is checked before its bytes arrive)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            head = fh.read(4096).lstrip()
            if head[:1] == "[":
                return "csljson"
            if head[:1] != "{":
                return "jsonl"
            fh.seek(0)
            first = fh.readline(_WHOLE_JSON_SNIFF)
            try:
                json.loads(first)
                return "jsonl"  # a whole object on its first line
            except ValueError:
                pass
            if os.path.getsize(path) > _WHOLE_JSON_SNIFF:
                return "jsonl"
            fh.seek(0)
            json.loads(fh.read())
            return "csljson"  # one object over many lines
    except (OSError, ValueError, RecursionError):
        return "jsonl"


def detect_format(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if path.lower().endswith(".csl.json"):
        return "csljson"
    if suffix == ".json":
        return _sniff_json(path)
    if suffix not in _BY_SUFFIX:
        raise SourceError(
            f"{path}: cannot tell the format from '{suffix or 'no extension'}'; "
            f"use --format ({', '.join(FORMATS)})"
        )
    return _BY_SUFFIX[suffix]


def check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file")
    if os.path.isdir(path):
        raise SourceError(f"{path}: is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: not readable (permission denied)")


def load(path: str, fmt: str | None = None) -> Iterator[tuple[int, Paper | Skipped]]:
    """(line, paper or skipped record) from one file, in file order."""
    check_readable(path)
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise SourceError(f"unknown format '{name}' (known: {', '.join(FORMATS)})")
    return FORMATS[name](path)


__all__ = [
    "FORMATS",
    "RecordError",
    "Skipped",
    "SourceError",
    "check_readable",
    "detect_format",
    "load",
]

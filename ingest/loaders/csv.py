"""CSV with `title` and `abstract` columns; every other column is kept as metadata.

Recognised optional columns: id / paper_id (the paper's id), arxiv_id (used as the
id when it holds an arXiv id), authors, year / date, url, categories. Column names
are matched case-insensitively.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator

from ingest.loaders.common import RecordError, Skipped, make_paper, open_text, split_names
from rag.types import Paper

_KNOWN = {
    "title",
    "abstract",
    "id",
    "paper_id",
    "arxiv_id",
    "authors",
    "year",
    "date",
    "url",
    "categories",
}


def _field_limit() -> None:
    # Abstracts can be long; the csv module's default cap is 128 KiB per field.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def load_csv(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    _field_limit()
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield 1, Skipped(path, 1, f"unreadable header ({exc})")
            return
        names = [h.strip().lower() for h in header]
        if "title" not in names or "abstract" not in names:
            yield 1, Skipped(path, 1, "header needs 'title' and 'abstract' columns")
            return
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield start, Skipped(path, start, f"malformed CSV ({exc})")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                yield line, Skipped(path, line, f"expected {len(names)} columns, found {len(row)}")
                continue
            rec = dict(zip(names, row, strict=True))
            try:
                yield (
                    line,
                    make_paper(
                        title=rec.get("title"),
                        abstract=rec.get("abstract"),
                        paper_id=rec.get("id") or rec.get("paper_id"),
                        arxiv_id=rec.get("arxiv_id"),
                        authors=split_names(
                            rec.get("authors"), ";" if ";" in rec.get("authors", "") else ","
                        ),
                        year=rec.get("year") or rec.get("date"),
                        url=rec.get("url"),
                        categories=split_names(rec.get("categories"), " "),
                        extra={k: v for k, v in rec.items() if k not in _KNOWN},
                    ),
                )
            except RecordError as exc:
                yield line, Skipped(path, line, str(exc))

"""The saved listing-page text of the sample corpus.

Page chrome at the top, then for each paper a title line, a blank line and
the abstract paragraph. A title is a short single line followed by a long
paragraph; anything before the first such pair is page chrome.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.loaders.common import RecordError, Skipped, make_paper, open_text
from rag.types import Paper

MAX_TITLE_LINE = 300
MIN_ABSTRACT = 200


def _blocks(path: str) -> Iterator[tuple[int, list[str]]]:
    """Paragraphs separated by blank lines, with the line number they start on."""
    start, lines = 0, []
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line:
                if not lines:
                    start = number
                lines.append(line)
            elif lines:
                yield start, lines
                lines = []
    if lines:
        yield start, lines


def _is_title(block: list[str]) -> bool:
    return len(block) == 1 and 0 < len(block[0]) <= MAX_TITLE_LINE


def _is_abstract(block: list[str]) -> bool:
    return len(" ".join(block)) >= MIN_ABSTRACT


def load_listing(path: str) -> Iterator[tuple[int, Paper | Skipped]]:
    blocks = list(_blocks(path))
    in_body = False
    i = 0
    while i < len(blocks):
        line, block = blocks[i]
        following = blocks[i + 1][1] if i + 1 < len(blocks) else None
        if _is_title(block) and following is not None and _is_abstract(following):
            in_body = True
            try:
                yield line, make_paper(title=block[0], abstract=" ".join(following))
            except RecordError as exc:
                yield line, Skipped(path, line, str(exc))
            i += 2
            continue
        if in_body:
            kind = (
                "title with no abstract after it" if _is_title(block) else "paragraph with no title"
            )
            yield line, Skipped(path, line, kind)
        i += 1
